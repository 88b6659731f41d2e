"""TLS 1.2 renegotiation: seed statements 6-11 of SSL_key_update(3), each over the
in-memory pair and over a socket pair, and the renegotiation pitfalls of issue 2."""
import socket
import threading
import time

import pytest

import tlsrekey

from conftest import TIMEOUT, catch, socket_link

TLS12 = {"max_version": "TLSv1.2"}
METHODS = ["renegotiate", "renegotiate_abbreviated"]


def counts(conn):
    st = conn.stats
    return {k: st[k] for k in ("renegotiations", "handshakes", "hello_requests_sent",
                               "hello_requests_received")}


def client_renegotiates(link):
    """The client's next write carries the new handshake; the server follows
    inside its read."""
    written, got = link.both(lambda: link.client.write(b"ping"), link.server.read)
    assert (written, got) == (4, b"ping")


def server_renegotiates(link):
    """The server's HelloRequest goes out with its write; the client handles it
    inside its ordinary read and write."""
    link.server.write(b"hello")

    def client_side():
        data = link.client.read()
        link.client.write(b"ping")
        return data

    assert link.both(client_side, link.server.read) == (b"hello", b"ping")


def assert_still_flows(link):
    link.client.write(b"more")
    assert link.server.read() == b"more"
    link.server.write(b"back")
    assert link.client.read() == b"back"


# -- 6 ------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_renegotiate_on_tls13_is_state_error(make_link, method):
    link = make_link()
    assert link.client.version == "TLSv1.3"
    for conn in (link.client, link.server):
        with pytest.raises(tlsrekey.StateError, match="TLSv1.3") as info:
            getattr(conn, method)()
        assert info.value.reason == "wrong ssl version"
        assert conn.renegotiate_pending() is False
    assert_still_flows(link)


# -- 7 ------------------------------------------------------------------------

def test_client_renegotiate_is_a_full_handshake_without_resumption(make_link):
    link = make_link(allow_client_renegotiation=True, **TLS12)
    c, s = link.client, link.server
    c.renegotiate()
    assert c.renegotiate_pending() is True
    assert c.stats["renegotiations"] == 0          # scheduled, nothing happened yet
    client_renegotiates(link)
    assert c.session_reused is False and s.session_reused is False
    assert counts(c)["renegotiations"] == 1 and counts(c)["handshakes"] == 2
    assert counts(s)["renegotiations"] == 1 and counts(s)["handshakes"] == 2
    assert c.renegotiate_pending() is False
    assert c.state == "established"
    assert_still_flows(link)


# -- 8 ------------------------------------------------------------------------

def test_client_renegotiate_abbreviated_resumes_the_session(make_link):
    link = make_link(allow_client_renegotiation=True, **TLS12)
    c, s = link.client, link.server
    assert c.session_reused is False
    c.renegotiate_abbreviated()
    assert c.renegotiate_pending() is True
    client_renegotiates(link)
    assert c.session_reused is True and s.session_reused is True
    assert c.stats["renegotiations"] == 1 and s.stats["renegotiations"] == 1
    assert_still_flows(link)


# -- 9 ------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_server_renegotiate_sends_hello_request_and_client_resumes(make_link, method):
    link = make_link(**TLS12)          # the default server policy is fine here
    c, s = link.client, link.server
    getattr(s, method)()
    assert s.renegotiate_pending() is True
    assert s.stats["hello_requests_sent"] == 0
    server_renegotiates(link)
    assert counts(s) == {"renegotiations": 1, "handshakes": 2,
                         "hello_requests_sent": 1, "hello_requests_received": 0}
    assert counts(c) == {"renegotiations": 1, "handshakes": 2,
                         "hello_requests_sent": 0, "hello_requests_received": 1}
    assert c.session_reused is True      # an OpenSSL TLS client resumes
    assert s.renegotiate_pending() is False and c.renegotiate_pending() is False
    assert_still_flows(link)


def test_server_renegotiate_twice(make_link):
    link = make_link(**TLS12)
    for n in (1, 2):
        link.server.renegotiate()
        server_renegotiates(link)
        assert link.client.stats["renegotiations"] == n
        assert link.server.stats["renegotiations"] == n


# -- 10 -----------------------------------------------------------------------

def test_server_refuses_client_renegotiation_by_default(make_link):
    link = make_link(**TLS12)
    c, s = link.client, link.server
    c.renegotiate()
    client_error, server_error = link.both(catch(c.write, b"x"), catch(s.read))
    # A clear error on the client, not a hang: OpenSSL's client turns the server's
    # no_renegotiation warning into a fatal handshake failure.
    assert isinstance(client_error, tlsrekey.ProtocolError)
    assert client_error.reason == "no renegotiation"
    assert client_error.library == "SSL routines"
    assert isinstance(server_error, tlsrekey.ProtocolError)
    assert c.state == "failed"
    # Nothing was completed, so nothing is counted.
    assert c.stats["renegotiations"] == 0 and s.stats["renegotiations"] == 0
    # The failure is remembered.
    with pytest.raises(tlsrekey.ProtocolError, match="no renegotiation"):
        c.write(b"y")


def test_server_accepts_client_renegotiation_when_allowed(make_link):
    link = make_link(allow_client_renegotiation=True, **TLS12)
    link.client.renegotiate()
    client_renegotiates(link)
    assert link.server.stats["renegotiations"] == 1


# -- 11 -----------------------------------------------------------------------

@pytest.mark.parametrize("side", ["client", "server"])
def test_renegotiate_pending_true_after_scheduling_false_once_done(make_link, side):
    link = make_link(allow_client_renegotiation=True, **TLS12)
    conn = getattr(link, side)
    assert conn.renegotiate_pending() is False
    conn.renegotiate()
    assert conn.renegotiate_pending() is True
    assert "renegotiate_pending" in repr(conn)
    conn.renegotiate()                       # a second call while pending is fine
    assert conn.renegotiate_pending() is True
    if side == "client":
        client_renegotiates(link)
    else:
        server_renegotiates(link)
    assert conn.renegotiate_pending() is False
    assert "renegotiate_pending" not in repr(conn)


# -- pitfalls and policy ------------------------------------------------------

def test_renegotiation_counters_count_completed_handshakes_on_both_sides(make_link):
    link = make_link(allow_client_renegotiation=True, **TLS12)
    c, s = link.client, link.server
    c.renegotiate()
    client_renegotiates(link)
    s.renegotiate_abbreviated()
    server_renegotiates(link)
    c.renegotiate_abbreviated()
    client_renegotiates(link)
    for conn in (c, s):
        assert conn.stats["renegotiations"] == 3
        assert conn.stats["handshakes"] == 4


def test_no_renegotiation_refuses_at_once(make_link):
    link = make_link(no_renegotiation=True, **TLS12)
    for conn in (link.client, link.server):
        for method in METHODS:
            with pytest.raises(tlsrekey.StateError) as info:
                getattr(conn, method)()
            assert info.value.reason == "no renegotiation"
    assert_still_flows(link)


def test_client_with_no_renegotiation_refuses_hello_request(test_cert):
    # Only the client forbids renegotiation: it answers the HelloRequest with a
    # no_renegotiation alert, which an OpenSSL server makes fatal.
    server_ctx = tlsrekey.Context.server(*test_cert, max_version="TLSv1.2")
    client_ctx = tlsrekey.Context.client(test_cert[0], no_renegotiation=True)
    client, server = tlsrekey._tlsrekey._pair(client_ctx, server_ctx, "localhost")
    server.renegotiate()
    server.write(b"hello")
    assert client.read() == b"hello"
    with pytest.raises(tlsrekey.ProtocolError) as info:
        server.read()
    assert client.stats["hello_requests_received"] == 1
    assert client.stats["renegotiations"] == 0
    # the advice fits the server's side: the client refused what the server asked
    # for; a server setting (allow_client_renegotiation) would not help
    message = str(info.value)
    assert "allow_client_renegotiation" not in message
    assert "client refused" in message and "HelloRequest" in message


def test_a_renegotiation_answered_with_a_close_says_it_was_refused(test_cert):
    """Some servers (lighttpd with GnuTLS) answer a client's renegotiation with
    close_notify: the client's call says its renegotiation was refused, not merely
    that the peer closed (issue 15, item 9)."""
    link = socket_link(*test_cert, max_version="TLSv1.2", allow_client_renegotiation=True)
    client, server = link.client, link.server
    try:
        client.renegotiate()
        closer = threading.Thread(target=server.shutdown)
        closer.start()
        with pytest.raises(tlsrekey.Error) as info:
            client.do_handshake()
        closer.join(TIMEOUT)
        assert "renegotiation" in str(info.value) and "refused" in str(info.value)
    finally:
        link.close()


def test_renegotiate_before_handshake_is_state_error(test_cert):
    conn = tlsrekey.Context.client(test_cert[0]).memory("localhost")
    for method in METHODS:
        with pytest.raises(tlsrekey.StateError, match="handshake"):
            getattr(conn, method)()


def test_set_verify_client_then_full_renegotiation_gets_the_certificate():
    client_cert, client_key = tlsrekey.make_test_cert("client.example")
    client, server = tlsrekey.pair(client_cert=client_cert, client_key=client_key,
                                   allow_client_renegotiation=True, **TLS12)
    assert server.peer_certificate is None         # not asked at first
    server.set_verify_client(required=True)
    client.renegotiate()                           # full handshake, no resumption
    client.write(b"ping")
    assert server.read() == b"ping"
    cert = server.peer_certificate
    assert cert is not None and cert["subject"] == "CN=client.example"


def test_set_verify_client_is_server_only(make_link):
    link = make_link(**TLS12)
    with pytest.raises(tlsrekey.StateError, match="server"):
        link.client.set_verify_client()


def test_server_asks_for_a_client_certificate_when_renegotiating():
    client_cert, client_key = tlsrekey.make_test_cert("client.example")
    client, server = tlsrekey.pair(client_cert=client_cert, client_key=client_key,
                                   **TLS12)
    server.set_verify_client(required=True)
    server.renegotiate()
    server.write(b"hello")
    assert client.read() == b"hello"
    client.write(b"ping")
    assert server.read() == b"ping"
    cert = server.peer_certificate
    assert cert is not None and cert["subject"] == "CN=client.example"


def test_renegotiation_events_are_reported(make_link):
    link = make_link(**TLS12)
    names = []
    link.client.set_event_callback(lambda ev: names.append("c:" + ev["name"]))
    link.server.set_event_callback(lambda ev: names.append("s:" + ev["name"]))
    link.server.renegotiate()
    server_renegotiates(link)
    assert "s:hello_request_sent" in names
    assert "c:hello_request_received" in names
    assert "c:renegotiation_done" in names and "s:renegotiation_done" in names
    assert names.index("s:hello_request_sent") < names.index("c:hello_request_received")


def test_client_renegotiation_over_blocking_sockets(test_cert):
    """Blocking sockets (no timeout): the write that drives the renegotiation
    returns once the handshake is done instead of waiting for data that never comes
    (the core reads the handshake through with the socket briefly non-blocking)."""
    import threading
    cert, key = test_cert
    a, b = socket.socketpair()
    try:
        server = tlsrekey.Context.server(cert, key, max_version="TLSv1.2",
                                         allow_client_renegotiation=True).wrap(b)
        client = tlsrekey.Context.client(cert, max_version="TLSv1.2").wrap(
            a, server_hostname="localhost")
        assert a.gettimeout() is None and b.gettimeout() is None
        t = threading.Thread(target=server.do_handshake)
        t.start()
        client.do_handshake()
        t.join(TIMEOUT)
        got = []
        t = threading.Thread(target=lambda: (got.append(server.read(1)),
                                             server.write(b"d")), daemon=True)
        t.start()
        a.settimeout(None)
        client.renegotiate()
        assert client.write(b"x") == 1
        assert client.read(1) == b"d"
        t.join(TIMEOUT)
        assert got == [b"x"]
        assert client.stats["renegotiations"] == 1 and server.stats["renegotiations"] == 1
        assert a.getblocking()                  # left as it was found
    finally:
        a.close()
        b.close()


def test_a_peer_streaming_during_its_own_renegotiation_cannot_make_a_write_hoard(
        test_cert):
    """A server sends a HelloRequest, then streams data and never completes the
    handshake it asked for. Our client's write must first finish that renegotiation
    by reading, keeping the data for later reads: it keeps at most 1 MiB, then
    asks the caller to read, and the whole write keeps to its one timeout."""
    link = socket_link(*test_cert, max_version="TLSv1.2")
    client, server = link.client, link.server
    try:
        stop = threading.Event()

        def stream():
            server.renegotiate()
            server.settimeout(0.5)
            chunk = b"s" * 16384
            while not stop.is_set():
                try:
                    server.write(chunk)
                except (tlsrekey.TimeoutError, tlsrekey.Error):
                    pass
        streamer = threading.Thread(target=stream)
        streamer.start()
        try:
            client.settimeout(1.0)
            assert client.read()              # the HelloRequest is read: a new
            assert client.renegotiate_pending()   # handshake is under way
            start = time.monotonic()
            with pytest.raises((tlsrekey.StateError, tlsrekey.TimeoutError)) as info:
                client.write(b"x")
            took = time.monotonic() - start
        finally:
            stop.set()
            streamer.join(TIMEOUT)
        assert took < 1.5, "the write ran %.1f s past a 1 s timeout" % took
        assert client.pending() <= (1 << 20) + 16384
        if isinstance(info.value, tlsrekey.StateError):
            assert "read" in str(info.value)
        assert client.state != "failed"        # a harmless error: read, then retry
    finally:
        link.close()
