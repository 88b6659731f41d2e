"""Long runs against the stacks of stacks.py, for `make soak` only (marker soak;
collected with TLSREKEY_INTEROP_SOAK=1, see conftest.py). The short cases of the
same peers are in test_interop_stacks_*.py and test_interop_servers.py; these
repeat them thousands of times, every byte checked. SOAK_INTEROP_SCALE (default 1)
multiplies the counts."""
import hashlib
import os
import time

import pytest

import tlsrekey

from test_interop_matrix_tls12 import roundtrip_until_renegotiated
from test_interop_servers import curl_download, lighttpd_client, respond

pytestmark = pytest.mark.soak

SCALE = float(os.environ.get("SOAK_INTEROP_SCALE", "1"))
NOT_REQUESTED = tlsrekey.KEY_UPDATE_NOT_REQUESTED
REQUESTED = tlsrekey.KEY_UPDATE_REQUESTED


def n(count):
    return max(1, int(count * SCALE))


@pytest.mark.parametrize("peer,role", [("go", "client"), ("go", "server"),
                                       ("wolfssl", "client"), ("jsse", "server")])
def test_many_key_updates_with_data(interop, peer, role):
    """Thousands of our updates of alternating type, data both ways after each."""
    s = interop.as_client(peer) if role == "client" else interop.as_server(peer)
    count = n(3000)
    for i in range(count):
        s.ours.key_update(REQUESTED if i % 2 else NOT_REQUESTED)
        s.roundtrip(64 + i % 2000)
    st = s.ours.stats
    assert st["key_updates_sent"] == count + st["key_update_requests_received"]
    assert st["key_updates_received"] == count // 2


@pytest.mark.parametrize("peer", ["wolfssl", "jsse"])
def test_many_peer_key_updates(interop, peer):
    """The peer's own updates (each asking for ours), a thousand, each answered
    before the next: while its previous request is unanswered, wolfSSL's next
    update goes out as update_not_requested (seen with wolfSSL 5.5)."""
    s = interop.as_server(peer)
    count = n(1000)
    for _ in range(count):
        s.peer_initiated(lambda: s.peer.key_update(True))
        s.roundtrip(100)            # our write carries the answer
    st = s.ours.stats
    assert st["key_updates_received"] == st["key_update_requests_received"] == count
    assert st["key_updates_sent"] == count


def test_jsse_key_limits_over_64_mib(interop):
    """JSSE's automatic updates (jdk.tls.keyLimits 2^16) over 64 MiB echoed."""
    s = interop.as_client("jsse", interop.spec(extra={"keylimit": "2^16"}))
    total = n(64 << 20)
    sent = 0
    while sent < total:
        sent += len(s.roundtrip(16384))
    s.ours.write(b"")
    st = s.ours.stats
    assert st["key_updates_received"] >= total >> 16
    assert st["key_updates_sent"] == st["key_update_requests_received"]


@pytest.mark.parametrize("who", ["ours", "peer's"])
def test_mbedtls_many_renegotiations(interop, who):
    """Hundreds of renegotiations with Mbed TLS, ours (client) or its HelloRequests."""
    s = interop.as_client("mbedtls", interop.spec(version="1.2"))
    count = n(300)
    for i in range(1, count + 1):
        if who == "ours":
            s.ours.renegotiate()
            roundtrip_until_renegotiated(s, i)
        else:
            s.peer_initiated(s.peer.renegotiate)
            roundtrip_until_renegotiated(s, i)
    assert s.ours.stats["renegotiations"] == count


def test_curl_256_mib_across_key_updates(certs, stopper, tmp_path):
    """curl downloads 256 MiB while our server updates its keys after every MiB."""
    body = os.urandom(1 << 20) * n(256)

    def serve(conn):
        respond(conn, body, 1 << 20, lambda i: conn.key_update(NOT_REQUESTED))
    got, conn = curl_download(certs, stopper, "1.3", serve, tmp_path)
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    assert conn.stats["key_updates_sent"] == len(body) >> 20


def test_lighttpd_key_updates_paced_under_its_limit(certs, stopper, tmp_path):
    """GnuTLS's 8 per second, respected: 7 updates then a pause, many times over,
    a request after each update, and lighttpd follows them all."""
    server, conn = lighttpd_client(certs, stopper, tmp_path)
    count = n(70)
    for i in range(count):
        if i and i % 7 == 0:
            time.sleep(1.05)
        conn.key_update(REQUESTED if i % 2 else NOT_REQUESTED)
        assert server.get(conn) == server.body
    assert conn.stats["key_updates_sent"] == count
    assert conn.stats["key_updates_received"] == count // 2

