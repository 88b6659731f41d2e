"""TLS 1.3 key updates against the stacks of stacks.py: Go's crypto/tls, JSSE,
wolfSSL and NSS, each in both roles. Ours of both types must be followed (and a
request answered); the peer's own, where the stack can send one, must be counted
and answered by us. Data is checked byte for byte before and after every update.

What a stack cannot do is a '-' in the matrix and a line in docs/interop.md, in
the stack's own words: Go's crypto/tls answers a KeyUpdate request but has no call
that sends a KeyUpdate; NSS's selfserv/tstclnt follow them but start none."""
import hashlib


import tlsrekey
from tlsrekey import KeyUpdateType

from conftest import matrix
from test_interop_matrix_tls13 import peer_sends, start

NOT_REQUESTED = tlsrekey.KEY_UPDATE_NOT_REQUESTED
REQUESTED = tlsrekey.KEY_UPDATE_REQUESTED


def ours_both_types(s):
    """One update of each type, data both ways after each: the peer must follow both
    and answer the request with an update of its own (and only that one)."""
    s.ours.key_update(NOT_REQUESTED)
    s.roundtrip()
    s.ours.key_update(REQUESTED)
    s.roundtrip()                  # the peer's echo carries its answering update
    s.roundtrip()
    st = s.ours.stats
    assert (st["key_updates_sent"], st["key_update_requests_sent"]) == (2, 1)
    assert (st["key_updates_received"], st["key_update_requests_received"]) == (1, 0)
    assert s.ours.get_key_update_type() is KeyUpdateType.NONE


@matrix("1.3 our KUs (both types), we client", "go", "jsse", "wolfssl")
def test_our_key_updates_as_client(interop, peer):
    ours_both_types(start(interop, "client", peer))


@matrix("1.3 our KUs (both types), we server", "go", "jsse", "wolfssl", "nss")
def test_our_key_updates_as_server(interop, peer):
    ours_both_types(start(interop, "server", peer))


# wolfSSL_update_keys() and JSSE's startHandshake() on TLS 1.3 both send a KeyUpdate
# that asks for ours: neither has a call for one that does not.

@matrix("1.3 peer KU requested, we client", "jsse", "wolfssl")
def test_peer_key_update_as_client(interop, peer):
    peer_sends(interop, "client", peer, requested=True)


@matrix("1.3 peer KU requested, we server", "jsse", "wolfssl")
def test_peer_key_update_as_server(interop, peer):
    peer_sends(interop, "server", peer, requested=True)


# -- JSSE's own key updates: jdk.tls.keyLimits ------------------------------------

def jsse_key_limit(interop, role, limit_log2=10, total=64 * 1024):
    """With jdk.tls.keyLimits at 2^limit_log2 bytes, JSSE updates its keys by itself
    (a KeyUpdate asking for ours) as the echoed data crosses each limit: we count
    them, answer each, and every byte comes back intact. Returns the session."""
    spec = interop.spec(extra={"keylimit": "2^%d" % limit_log2})
    s = (interop.as_client("jsse", spec) if role == "client"
         else interop.as_server("jsse", spec))
    assert s.ours.version == "TLSv1.3"
    digest = hashlib.sha256()
    sent = 0
    while sent < total:
        data = s.roundtrip(4096)
        digest.update(data)
        sent += len(data)
    # The reply to a request that came with the last echo is owed until our next
    # write (OPENSSL-NOTES 4): write(b"") sends it.
    s.ours.write(b"")
    st = s.ours.stats
    # JSSE checks its limits after each record it sends or receives, so with 4 KiB
    # records over a 1 KiB limit at least one update per record it sent, each
    # asking for ours.
    assert st["key_updates_received"] >= total // 4096, st
    assert st["key_update_requests_received"] == st["key_updates_received"], st
    # Every request answered, once (OPENSSL-NOTES 7).
    assert st["key_updates_sent"] == st["key_update_requests_received"], st
    assert st["key_update_requests_sent"] == 0
    return s


@matrix("1.3 JSSE keyLimits KUs by itself, we client", "jsse")
def test_jsse_key_limit_updates_as_client(interop, peer):
    jsse_key_limit(interop, "client")


@matrix("1.3 JSSE keyLimits KUs by itself, we server", "jsse")
def test_jsse_key_limit_updates_as_server(interop, peer):
    jsse_key_limit(interop, "server")


# -- NSS's selfserv: one request, one response ------------------------------------

def http_exchange(conn, request):
    """Sends the request and reads the whole response (selfserv closes after it)."""
    conn.write(request)
    out = bytearray()
    while True:
        try:
            chunk = conn.read()
        except tlsrekey.SyscallError:
            break                   # selfserv may close without close_notify
        if not chunk:
            break
        out += chunk
    return bytes(out)


@matrix("1.3 our KUs (both types), we client", "nss")
def test_our_key_updates_against_selfserv(interop, peer):
    """selfserv answers one request and closes: both updates go out before the
    request, the request one is answered before the response, which must quote the
    request intact."""
    s = interop.as_client(peer)
    assert s.ours.version == "TLSv1.3"
    s.ours.key_update(NOT_REQUESTED, now=True)
    s.ours.key_update(REQUESTED, now=True)
    request = b"GET /tlsrekey-" + b"x" * 100 + b" HTTP/1.0\r\n\r\n"
    response = http_exchange(s.ours, request)
    assert response.startswith(b"HTTP/1.0 200"), response[:200]
    assert request in response, response[:600]
    st = s.ours.stats
    assert (st["key_updates_sent"], st["key_update_requests_sent"]) == (2, 1)
    assert (st["key_updates_received"], st["key_update_requests_received"]) == (1, 0)
