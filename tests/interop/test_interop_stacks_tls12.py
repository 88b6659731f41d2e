"""TLS 1.2 renegotiation against the stacks of stacks.py: Mbed TLS in every
direction, Go's client with and without tls.RenegotiateOnceAsClient and Go's server,
wolfSSL (built by Debian without secure renegotiation), NSS's selfserv and tstclnt.
A peer's refusal is an expected outcome, asserted on its meaning (the alert code,
no renegotiation counted, the connection's end); the peer's words are in the
comments and in docs/interop.md."""
import pytest

import tlsrekey

from conftest import matrix
from test_interop_matrix_tls12 import (NO_RENEGOTIATION_ALERT, assert_refused_by_peer,
                                       peer_renegotiates, record_alerts,
                                       roundtrip_until_renegotiated)
from test_interop_stacks_tls13 import http_exchange

UNEXPECTED_MESSAGE_ALERT = 10     # RFC 5246 7.2.2 unexpected_message (fatal)


def start(interop, role, peer, ours=None, secure=True, **extra):
    spec = interop.spec(version="1.2", extra=extra)
    ours = ours or {}
    s = (interop.as_client(peer, spec, **ours) if role == "client"
         else interop.as_server(peer, spec, **ours))
    assert s.ours.version == "TLSv1.2"
    assert s.ours.secure_renegotiation is secure
    s.roundtrip()
    return s


def server_renegotiates(s):
    """Our HelloRequest, then reads until the client's new handshake is complete (see
    test_interop_matrix_tls12.test_server_renegotiation), data checked after."""
    s.ours.renegotiate()
    s.ours.do_handshake()
    assert s.ours.stats["hello_requests_sent"] == 1
    s.settle(lambda: s.ours.stats["renegotiations"] == 1, "the client's new handshake")
    roundtrip_until_renegotiated(s)
    assert s.ours.stats["handshakes"] == 2


# -- Mbed TLS: renegotiation enabled on its side, both roles, both starters --------

@matrix("1.2 reneg full, we client", "mbedtls")
def test_client_renegotiation(interop, peer):
    s = start(interop, "client", peer)
    s.ours.renegotiate()
    roundtrip_until_renegotiated(s)
    assert s.ours.session_reused is False
    assert s.ours.stats["handshakes"] == 2


@matrix("1.2 reneg full, we client", "nss")
def test_client_renegotiation_against_selfserv(interop, peer):
    """selfserv answers one request and closes: our renegotiation (NSS's default,
    SSL_RENEGOTIATE_REQUIRES_XTN, allows it with RFC 5746) completes inside the
    write of the request, and the response quotes the request intact."""
    spec = interop.spec(version="1.2")
    s = interop.as_client(peer, spec)
    assert s.ours.secure_renegotiation is True
    s.ours.renegotiate()
    request = b"GET /tlsrekey-renegotiated HTTP/1.0\r\n\r\n"
    response = http_exchange(s.ours, request)
    assert response.startswith(b"HTTP/1.0 200"), response[:200]
    assert request in response, response[:600]
    assert s.ours.stats["renegotiations"] == 1
    assert s.ours.stats["handshakes"] == 2
    assert s.ours.session_reused is False


@matrix("1.2 reneg by HelloRequest, we server", "mbedtls", "go", "nss")
def test_server_renegotiation(interop, peer):
    # Go follows a HelloRequest only with tls.RenegotiateOnceAsClient (or Freely).
    s = start(interop, "server", peer, renegotiation="once")
    server_renegotiates(s)


# legacy="break" (MBEDTLS_SSL_LEGACY_BREAK_HANDSHAKE): Mbed TLS would refuse the very
# first handshake with a peer without RFC 5746, so these renegotiations are the
# secure kind on both sides.

@matrix("1.2 peer reneg (HelloRequest), we client", "mbedtls")
def test_peer_server_renegotiation(interop, peer):
    s = start(interop, "client", peer, legacy="break")
    peer_renegotiates(s)
    assert s.ours.stats["hello_requests_received"] == 1


@matrix("1.2 peer reneg, we server (allowed)", "mbedtls")
def test_peer_client_renegotiation(interop, peer):
    s = start(interop, "server", peer, ours={"allow_client_renegotiation": True},
              legacy="break")
    peer_renegotiates(s)
    assert s.ours.stats["hello_requests_sent"] == 0


@matrix("1.2 reneg refused by peer default, we client", "mbedtls")
def test_client_renegotiation_refused_by_mbedtls_default(interop, peer):
    # Mbed TLS's default is MBEDTLS_SSL_RENEGOTIATION_DISABLED: a ClientHello after
    # the handshake gets the no_renegotiation warning alert.
    s = start(interop, "client", peer, renegotiation="never")
    assert_refused_by_peer(s, record_alerts(s.ours))


@matrix("1.2 HelloRequest refused by peer default, we server", "mbedtls", "go")
def test_server_renegotiation_refused_by_peer_default(interop, peer):
    """Mbed TLS's default and Go's (tls.RenegotiateNever) answer our HelloRequest
    with the no_renegotiation warning alert, which OpenSSL's server makes fatal (as
    against OpenSSL's own clients, test_interop_matrix_tls12): a ProtocolError
    naming it, no renegotiation counted. Go also ends its side ("local error: tls:
    no renegotiation")."""
    s = start(interop, "server", peer, renegotiation="never")
    alerts = record_alerts(s.ours)
    s.ours.renegotiate()
    s.ours.do_handshake()
    with pytest.raises(tlsrekey.ProtocolError) as info:
        s.settle(lambda: False, "the client's answer")
    assert "no renegotiation" in info.value.reason
    assert ("alert_received", 1, NO_RENEGOTIATION_ALERT) in alerts, alerts
    assert s.ours.stats["renegotiations"] == 0
    assert s.ours.state == "failed"
    if peer == "go":
        assert "no renegotiation" in s.peer.ended()


# -- Go's server refuses every renegotiation ---------------------------------------

@matrix("1.2 reneg refused by peer default, we client", "go", "wolfssl")
def test_client_renegotiation_refused_unexpected_message(interop, peer):
    """Go's server (crypto/tls implements no server-side renegotiation) and wolfSSL's
    (built without it) answer our ClientHello with a fatal unexpected_message alert
    ("sslv3 alert unexpected message" in OpenSSL 3.0's words): the connection is
    lost with a ProtocolError carrying that alert, remembered afterwards."""
    s = start(interop, "client", peer)
    alerts = record_alerts(s.ours)
    s.ours.renegotiate()
    with pytest.raises(tlsrekey.ProtocolError) as info:
        s.roundtrip()
    assert info.value.alert == UNEXPECTED_MESSAGE_ALERT
    assert ("alert_received", 2, UNEXPECTED_MESSAGE_ALERT) in alerts, alerts
    assert s.ours.stats["renegotiations"] == 0
    assert s.ours.state == "failed"
    with pytest.raises(tlsrekey.ProtocolError):
        s.ours.write(b"after")


# -- wolfSSL's client has no RFC 5746 ----------------------------------------------

@matrix("1.2 HelloRequest to a client without RFC 5746, we server", "wolfssl")
def test_server_renegotiation_needs_secure_renegotiation(interop, peer):
    """Debian builds wolfSSL without HAVE_SECURE_RENEGOTIATION: its client offers
    neither the renegotiation_info extension nor the SCSV. Our renegotiate() refuses
    at once with a StateError saying why (an insecure renegotiation is what RFC
    5746 exists to prevent); the connection goes on untouched."""
    s = start(interop, "server", peer, secure=False)
    assert s.peer.secure_renegotiation is False
    with pytest.raises(tlsrekey.StateError):
        s.ours.renegotiate()
    assert s.ours.renegotiate_pending() is False
    s.roundtrip()
    st = s.ours.stats
    assert (st["hello_requests_sent"], st["renegotiations"], st["alerts_sent"]) == (0, 0, 0)


@matrix("1.2 roundtrip, we client", "wolfssl")
def test_tls12_data_as_client(interop, peer):
    s = start(interop, "client", peer)     # wolfSSL's server does send renegotiation_info
    s.roundtrip()


# -- Issue 15 item 8: a server that only writes under a renegotiation policy ---------

@matrix("1.2 policy reneg while only writing, we server", "mbedtls")
def test_policy_renegotiation_while_only_writing(interop, peer):
    """The limit must hold while the server only writes: 1 MiB under a 256 KiB
    policy is at least three renegotiations, and the client gets every byte."""
    s = interop.as_server(peer, interop.spec(version="1.2",
                                             extra={"echo": False, "debug": True}))
    assert s.ours.secure_renegotiation is True
    s.ours.set_rekey_policy(bytes=256 * 1024, use_renegotiation=True)
    total = 1 << 20
    for _ in range(total // 16384):
        s.ours.write(b"r" * 16384)
    s.ours.settimeout(2.0)
    s.ours.shutdown()
    end = s.peer.ended()
    assert s.peer.lines("READ") == [str(total)], s.peer.text()
    assert end == "CLOSED", s.peer.text()
    assert s.ours.stats["renegotiations"] >= 3
