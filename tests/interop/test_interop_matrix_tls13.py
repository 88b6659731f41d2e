"""TLS 1.3 key update against real peers: ours sent (not requested / requested) as
client and as server, the peer's own counted by us, and many in a row. Data is
checked byte for byte before and after every update."""
import time

import pytest

import tlsrekey
from tlsrekey import KeyUpdateType

from conftest import matrix

NOT_REQUESTED = tlsrekey.KEY_UPDATE_NOT_REQUESTED
REQUESTED = tlsrekey.KEY_UPDATE_REQUESTED


def start(interop, role, peer):
    s = interop.as_client(peer) if role == "client" else interop.as_server(peer)
    assert s.ours.version == "TLSv1.3"
    s.roundtrip()
    return s


def ours_not_requested(interop, role, peer):
    s = start(interop, role, peer)
    s.ours.key_update(NOT_REQUESTED)
    assert s.ours.get_key_update_type() is KeyUpdateType.NOT_REQUESTED
    s.roundtrip()                  # our write carries the update; the peer reads on
    s.roundtrip()
    st = s.ours.stats
    assert (st["key_updates_sent"], st["key_update_requests_sent"]) == (1, 0)
    # Not requested: the peer owes nothing and sends no update of its own.
    assert st["key_updates_received"] == 0
    assert s.ours.get_key_update_type() is KeyUpdateType.NONE
    if s.peer.key_updates_received() is not None:
        assert s.peer.key_updates_received() == 1


def ours_requested(interop, role, peer):
    s = start(interop, role, peer)
    s.ours.key_update(REQUESTED)
    s.roundtrip()                  # the peer's echo carries its answering update
    s.roundtrip()
    st = s.ours.stats
    assert (st["key_updates_sent"], st["key_update_requests_sent"]) == (1, 1)
    assert st["key_updates_received"] == 1
    assert st["key_update_requests_received"] == 0   # an answer asks for none
    assert s.ours.get_key_update_type() is KeyUpdateType.NONE
    if s.peer.key_updates_received() is not None:
        assert s.peer.key_updates_received() == 1


@matrix("1.3 KU not_requested, we client")
def test_key_update_not_requested_as_client(interop, peer):
    ours_not_requested(interop, "client", peer)


@matrix("1.3 KU requested, we client")
def test_key_update_requested_as_client(interop, peer):
    ours_requested(interop, "client", peer)


@matrix("1.3 KU not_requested, we server")
def test_key_update_not_requested_as_server(interop, peer):
    ours_not_requested(interop, "server", peer)


@matrix("1.3 KU requested, we server")
def test_key_update_requested_as_server(interop, peer):
    ours_requested(interop, "server", peer)


# GnuTLS accepts at most 8 KeyUpdates per second and answers the 9th with a fatal
# internal_error alert (lib/tls13/key_update.c, KEY_UPDATES_PER_WINDOW): against it
# the updates are paced, and the limit itself is a case of its own below.
GNUTLS_KU_PER_SECOND = 8


@matrix("1.3 KU x24 both types + data")
def test_many_key_updates_with_data(interop, peer):
    """Twenty-four updates of alternating type, data both ways after each; the peer
    must follow every one (a stale key would fail decryption at once)."""
    s = start(interop, "client", peer)
    for i in range(24):
        if peer == "gnutls" and i and i % GNUTLS_KU_PER_SECOND == 0:
            time.sleep(1.05)
        s.ours.key_update(REQUESTED if i % 2 else NOT_REQUESTED)
        s.roundtrip()
    st = s.ours.stats
    assert st["key_updates_sent"] == 24
    assert st["key_update_requests_sent"] == 12
    assert st["key_updates_received"] == 12


@matrix("1.3 KU burst over peer's rate limit", "gnutls")
def test_key_update_burst_over_peer_limit_is_a_clear_error(interop, peer):
    """A peer that limits key updates ends the connection with an alert: we report
    it as a ProtocolError naming the alert, remember it, and never hang."""
    s = start(interop, "client", peer)
    with pytest.raises(tlsrekey.ProtocolError) as info:
        for _ in range(GNUTLS_KU_PER_SECOND + 1):
            s.ours.key_update(NOT_REQUESTED)
            s.roundtrip()
    assert "internal error" in info.value.reason
    assert s.ours.state == "failed"
    assert s.ours.stats["alerts_received"] == 1
    assert s.ours.stats["key_updates_sent"] == GNUTLS_KU_PER_SECOND + 1
    with pytest.raises(tlsrekey.ProtocolError) as again:   # remembered, not SYSCALL
        s.ours.write(b"more")
    assert again.value.reason == info.value.reason


# -- the peer starts the update and we count it -------------------------------

def peer_sends(interop, role, peer, requested):
    s = start(interop, role, peer)
    s.peer_initiated(lambda: s.peer.key_update(requested))
    st = s.ours.stats
    assert st["key_updates_received"] == 1
    assert st["key_update_requests_received"] == (1 if requested else 0)
    if requested:
        # The answer is owed until our next write (an update we never asked for).
        assert s.ours.get_key_update_type() is KeyUpdateType.NOT_REQUESTED
        assert st["key_updates_sent"] == 0
    else:
        assert s.ours.get_key_update_type() is KeyUpdateType.NONE
    s.roundtrip()
    st = s.ours.stats
    assert st["key_updates_sent"] == (1 if requested else 0)
    assert st["key_update_requests_sent"] == 0
    assert s.ours.get_key_update_type() is KeyUpdateType.NONE
    if s.peer.key_updates_received() is not None:
        assert s.peer.key_updates_received() == (1 if requested else 0)
    s.roundtrip()


@matrix("1.3 peer KU not_requested, we client", "openssl")
def test_peer_key_update_not_requested_counted_as_client(interop, peer):
    peer_sends(interop, "client", peer, requested=False)


@matrix("1.3 peer KU requested, we client", "openssl")
def test_peer_key_update_requested_answered_as_client(interop, peer):
    peer_sends(interop, "client", peer, requested=True)


@matrix("1.3 peer KU not_requested, we server", "openssl", "gnutls")
def test_peer_key_update_not_requested_counted_as_server(interop, peer):
    peer_sends(interop, "server", peer, requested=False)


@matrix("1.3 peer KU requested, we server", "openssl", "gnutls")
def test_peer_key_update_requested_answered_as_server(interop, peer):
    peer_sends(interop, "server", peer, requested=True)


@matrix("1.3 KU on 1.2 / reneg on 1.3 refused", "openssl")
def test_wrong_version_calls_are_refused_and_harmless(interop, peer):
    """The misuse checks hold against a real peer too and cost the connection
    nothing: renegotiate on 1.3, then key_update on 1.2."""
    s = start(interop, "client", peer)
    with pytest.raises(tlsrekey.StateError) as info:
        s.ours.renegotiate()
    assert info.value.reason == "wrong ssl version"
    s.roundtrip()
    s12 = interop.as_client(peer, interop.spec(version="1.2"))
    assert s12.ours.version == "TLSv1.2"
    with pytest.raises(tlsrekey.StateError) as info:
        s12.ours.key_update()
    assert info.value.reason == "wrong ssl version"
    s12.roundtrip()
