"""TLS 1.2 renegotiation against real peers: client-initiated full and abbreviated
(ours), server-initiated (ours, a HelloRequest), the peer's own, and every refusal:
a peer that forbids renegotiation, and our no_renegotiation refusing a peer. Data is
checked byte for byte before and after."""
import pytest

import tlsrekey

import peers
from conftest import Concurrent, matrix

NO_RENEGOTIATION_ALERT = 100    # RFC 5246 7.2.2 no_renegotiation (a warning)


def start(interop, role, peer, ours=None, **spec):
    spec = interop.spec(version="1.2", **spec)
    ours = ours or {}
    s = (interop.as_client(peer, spec, **ours) if role == "client"
         else interop.as_server(peer, spec, **ours))
    assert s.ours.version == "TLSv1.2"
    assert s.ours.secure_renegotiation is True
    s.roundtrip()
    return s


def roundtrip_until_renegotiated(s, n=1, rounds=4):
    """Data both ways until our side has completed n renegotiations (a server's
    HelloRequest is answered by the client inside its ordinary I/O, and the new
    handshake may finish one exchange later)."""
    for _ in range(rounds):
        s.roundtrip()
        if s.ours.stats["renegotiations"] >= n and not s.ours.renegotiate_pending():
            break
    assert s.ours.stats["renegotiations"] == n
    assert s.ours.renegotiate_pending() is False
    s.roundtrip()


def record_alerts(conn):
    alerts = []

    def on_event(ev):
        if ev["name"] in ("alert_sent", "alert_received"):
            alerts.append((ev["name"], ev["alert_level"], ev["alert_description"]))
    conn.set_event_callback(on_event)
    return alerts


# -- ours: client-initiated --------------------------------------------------

@matrix("1.2 reneg full, we client")
def test_client_renegotiation_full(interop, peer):
    s = start(interop, "client", peer, allow_client_reneg=True)
    s.ours.renegotiate()
    assert s.ours.renegotiate_pending() is True
    roundtrip_until_renegotiated(s)
    assert s.ours.session_reused is False          # a full handshake, no resumption
    assert s.ours.stats["handshakes"] == 2
    if peer == "openssl":
        assert s.peer.proc.count(peers.MSG_RECV_CLIENT_HELLO) == 2


@matrix("1.2 reneg abbreviated, we client")
def test_client_renegotiation_abbreviated(interop, peer):
    # noticket: GnuTLS 3.7.9 cannot resume by ticket inside a renegotiation (see
    # peers.GnutlsServer); the session ID cache works everywhere.
    s = start(interop, "client", peer, allow_client_reneg=True, noticket=(peer == "gnutls"))
    s.ours.renegotiate_abbreviated()
    roundtrip_until_renegotiated(s)
    assert s.ours.session_reused is True           # the session was resumed
    s.ours.renegotiate_abbreviated()
    roundtrip_until_renegotiated(s, 2)
    assert s.ours.session_reused is True


# -- ours: server-initiated --------------------------------------------------

@matrix("1.2 reneg by HelloRequest, we server")
def test_server_renegotiation(interop, peer):
    """renegotiate() + do_handshake() sends the HelloRequest alone; our reads then
    carry the new handshake, and we write only once it is complete. (A server that
    writes at once puts application data behind its HelloRequest: OpenSSL clients
    accept it in the middle of their new handshake, GnuTLS clients fail with
    "TLS Application data were received, while expecting handshake data".)"""
    s = start(interop, "server", peer)
    s.ours.renegotiate()
    assert s.ours.renegotiate_pending() is True
    s.ours.do_handshake()
    assert s.ours.stats["hello_requests_sent"] == 1
    s.settle(lambda: s.ours.stats["renegotiations"] == 1, "the client's new handshake")
    roundtrip_until_renegotiated(s)
    st = s.ours.stats
    assert st["hello_requests_sent"] == 1
    assert st["handshakes"] == 2


# -- the peer's own -----------------------------------------------------------

def peer_renegotiates(s):
    # Asked now: while our read runs in a thread, every call on our connection
    # (even a getter) waits for that read to finish.
    we_are_client = s.ours.role == "client"

    def action():
        s.peer.renegotiate()
        if s.peer.name == "pyOpenSSL":
            s.peer.wait_renegotiation_done()
        elif s.peer.name == "openssl" and we_are_client:
            s.peer.renegotiation_done(2)
    s.peer_initiated(action)
    roundtrip_until_renegotiated(s)


@matrix("1.2 peer reneg (HelloRequest), we client", "openssl", "pyOpenSSL")
def test_peer_server_renegotiation_followed(interop, peer):
    s = start(interop, "client", peer)
    peer_renegotiates(s)
    assert s.ours.stats["hello_requests_received"] == 1


@matrix("1.2 peer reneg, we server (allowed)", "openssl", "gnutls", "pyOpenSSL")
def test_peer_client_renegotiation_accepted(interop, peer):
    s = start(interop, "server", peer, ours={"allow_client_renegotiation": True})
    peer_renegotiates(s)
    assert s.ours.stats["hello_requests_sent"] == 0


# -- refusals -------------------------------------------------------------------

def assert_refused_by_peer(s, alerts):
    """Notes 10/11: the peer answers our ClientHello with a warning
    no_renegotiation alert, which OpenSSL makes a fatal handshake failure: the
    connection is lost with a clear ProtocolError, remembered afterwards."""
    s.ours.renegotiate()
    with pytest.raises(tlsrekey.ProtocolError) as info:
        s.roundtrip()
    assert "no renegotiation" in info.value.reason
    assert ("alert_received", 1, NO_RENEGOTIATION_ALERT) in alerts
    assert s.ours.stats["renegotiations"] == 0
    assert s.ours.state == "failed"
    with pytest.raises(tlsrekey.ProtocolError):
        s.ours.write(b"after")


@matrix("1.2 reneg refused by peer default, we client",
        "openssl", "python-ssl", "pyOpenSSL", "LuaSec")
def test_client_renegotiation_refused_by_peer_default(interop, peer):
    s = start(interop, "client", peer)
    assert_refused_by_peer(s, record_alerts(s.ours))


@matrix("1.2 reneg refused by peer no_renegotiation, we client",
        "openssl", "python-ssl", "pyOpenSSL", "LuaSec")
def test_client_renegotiation_refused_by_peer_option(interop, peer):
    s = start(interop, "client", peer, no_renegotiation=True, allow_client_reneg=True)
    assert_refused_by_peer(s, record_alerts(s.ours))


@matrix("1.2 HelloRequest refused by peer no_renegotiation, we server",
        "openssl", "python-ssl", "pyOpenSSL", "LuaSec")
def test_server_renegotiation_refused_by_peer_option(interop, peer):
    s = start(interop, "server", peer, no_renegotiation=True)
    alerts = record_alerts(s.ours)
    s.ours.renegotiate()
    with pytest.raises(tlsrekey.ProtocolError) as info:
        for _ in range(3):
            s.roundtrip()
    assert "no renegotiation" in info.value.reason
    assert ("alert_received", 1, NO_RENEGOTIATION_ALERT) in alerts
    assert s.ours.stats["hello_requests_sent"] == 1
    assert s.ours.stats["renegotiations"] == 0


def assert_we_refused(s, alerts, outcome):
    """Our no_renegotiation answered the peer's attempt with the warning alert and
    completed no renegotiation; what the peer then does is its own business, but
    on our side it is a clear error or the connection goes on."""
    assert ("alert_sent", 1, NO_RENEGOTIATION_ALERT) in alerts, alerts
    assert s.ours.stats["renegotiations"] == 0
    assert outcome is None or isinstance(outcome, (tlsrekey.ProtocolError,
                                                   tlsrekey.SyscallError)), outcome


def peer_attempt(s, action):
    """The peer tries to renegotiate while we read: returns what our read ended
    with (an exception) or None if it returned data."""
    def read():
        try:
            return s.read_exact(1)
        except tlsrekey.Error as exc:
            return exc
    reader = Concurrent(read)
    try:
        action()
    finally:
        got = reader.result()
    return got if isinstance(got, Exception) else None


@matrix("1.2 our no_renegotiation refuses peer, we client", "openssl", "pyOpenSSL")
def test_our_no_renegotiation_refuses_hello_request(interop, peer):
    s = start(interop, "client", peer, ours={"no_renegotiation": True})
    alerts = record_alerts(s.ours)

    def action():
        try:
            s.peer.renegotiate()
            s.peer.send(b"x")          # something to end our read if all goes on
        except AssertionError:
            pass                       # the peer may already have given up
    outcome = peer_attempt(s, action)
    assert_we_refused(s, alerts, outcome)
    assert s.ours.stats["hello_requests_received"] == 1


@matrix("1.2 our no_renegotiation refuses peer, we server",
        "openssl", "gnutls", "pyOpenSSL")
def test_our_no_renegotiation_refuses_client_hello(interop, peer):
    s = start(interop, "server", peer, ours={"no_renegotiation": True})
    alerts = record_alerts(s.ours)

    def action():
        try:
            s.peer.renegotiate()
            s.peer.send(b"x")
        except AssertionError:
            pass
    outcome = peer_attempt(s, action)
    assert_we_refused(s, alerts, outcome)
