"""DTLS 1.2 (issue 8): contexts with dtls=True, the in-memory pair (pair(dtls=True)),
memory transports (one datagram per feed/drain), connected UDP sockets on 127.0.0.1
(non-blocking, with a timeout, and blocking with a thread for the other end),
message boundaries, key update refused, the renegotiation statements as OpenSSL 3.0
behaves on DTLS, timers (get_timeout/handle_timeout) with datagrams lost on purpose,
MTU, cookie exchange; interop with `openssl s_server -dtls1_2` and
`openssl s_client -dtls1_2`, through a UDP relay thread that drops chosen datagrams.

Case names are those of tests/lua/dtls_spec.lua (and tests/c/test_dtls.c) where they
test the same thing. Every socket, thread and process started here is closed,
joined or killed when its test ends; every wait has a deadline.
"""
import os
import re
import select
import shutil
import socket
import threading
import time

import pytest

import tlsrekey

from conftest import TIMEOUT, Concurrent
from test_interop_openssl import Peer

# Bounds every polling loop below.
DEADLINE = 10.0


def dtls_pair(**options):
    return tlsrekey.pair(dtls=True, **options)


def dtls_contexts(test_cert, client=(), server=(), **both):
    """(client_ctx, server_ctx): DTLS contexts, the client trusting the server's
    certificate. `both` goes to both; `client`/`server` (dicts) to one."""
    cert, key = test_cert
    server_ctx = tlsrekey.Context.server(cert, key, dtls=True, **both, **dict(server))
    client_ctx = tlsrekey.Context.client(cert, dtls=True, **both, **dict(client))
    return client_ctx, server_ctx


def memory_ends(test_cert, **options):
    """A client and a server over memory transports, not handshaken."""
    client_ctx, server_ctx = dtls_contexts(test_cert, **options)
    return client_ctx.memory("localhost"), server_ctx.memory()


def hs_type(datagram):
    """A datagram's handshake message type after the 13-byte DTLS record header
    (1 ClientHello, 3 HelloVerifyRequest), None if it is not a handshake record."""
    if len(datagram) > 13 and datagram[0] == 22:
        return datagram[13]
    return None


class Wire:
    """One direction between two memory transports: move() carries every waiting
    datagram from src to dst, losing those drop(index, datagram) picks (index counts
    the datagrams of this direction from 1)."""

    def __init__(self, src, dst, drop=None):
        self.src, self.dst, self.drop = src, dst, drop
        self.count = 0
        self.dropped = 0
        self.sizes = []

    def move(self):
        while True:
            datagram = self.src.drain()
            if not datagram:
                return
            self.count += 1
            self.sizes.append(len(datagram))
            if self.drop is not None and self.drop(self.count, datagram):
                self.dropped += 1
            else:
                self.dst.feed(datagram)


def both_ways(client, server, out=None, back=None):
    """Wires both ways and a step() moving everything waiting on each."""
    wires = (Wire(client, server, out), Wire(server, client, back))

    def step():
        for wire in wires:
            wire.move()
    return wires, step


def run_timers(conns):
    for conn in conns:
        if conn.get_timeout() == 0:
            conn.handle_timeout()


def drive(method, conns, step=None):
    """Calls method on each connection until none would block. Between rounds `step`
    (if given) moves datagrams and expired timers are handled (a lost flight)."""
    done = set()
    deadline = time.monotonic() + DEADLINE
    while True:
        for i, conn in enumerate(conns):
            if i not in done:
                try:
                    getattr(conn, method)()
                    done.add(i)
                except (tlsrekey.WantReadError, tlsrekey.WantWriteError):
                    pass
        if len(done) == len(conns):
            return
        if step is not None:
            step()
        run_timers(conns)
        assert time.monotonic() < deadline, "drive(%s) did not finish" % method
        time.sleep(0.001)


def read_datagram(conn, step=None):
    """One datagram's data on a non-blocking connection (running `step` meanwhile)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            data = conn.read()
            assert data, "the connection closed"
            return data
        except tlsrekey.WantReadError:
            pass
        if step is not None:
            step()
        run_timers([conn])
        assert time.monotonic() < deadline, "no datagram arrived"
        time.sleep(0.001)


def exchange(sender, receiver, data, step=None):
    """Non-blocking: writes data on sender while reading on receiver (either may
    wait for the other, e.g. during a renegotiation) until it has arrived."""
    written, got = False, b""
    deadline = time.monotonic() + DEADLINE
    while not (written and len(got) >= len(data)):
        if not written:
            try:
                assert sender.write(data) == len(data)
                written = True
            except (tlsrekey.WantReadError, tlsrekey.WantWriteError):
                pass
        if len(got) < len(data):
            try:
                chunk = receiver.read()
                assert chunk, "the connection closed during the exchange"
                got += chunk
            except tlsrekey.WantReadError:
                pass
        if step is not None:
            step()
        run_timers([sender, receiver])
        assert time.monotonic() < deadline, "the exchange did not finish"
        time.sleep(0.0002)
    return got


def read_until(conn, done, step=None):
    """Non-blocking: reads on conn (keeping the data) until done() is true, for
    protocol messages that carry no data."""
    got = b""
    deadline = time.monotonic() + DEADLINE
    while not done():
        try:
            got += conn.read()
        except tlsrekey.WantReadError:
            pass
        if step is not None:
            step()
        run_timers([conn])
        assert time.monotonic() < deadline, "read_until: the condition never came true"
        time.sleep(0.0002)
    return got


@pytest.fixture
def udp():
    """udp() -> (socket, port): a UDP socket bound to 127.0.0.1 on a free port,
    closed when the test ends."""
    socks = []

    def bound():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks.append(sock)
        sock.bind(("127.0.0.1", 0))
        return sock, sock.getsockname()[1]

    yield bound
    for sock in socks:
        sock.close()


def connect_pair(a, pa, b, pb):
    a.connect(("127.0.0.1", pb))
    b.connect(("127.0.0.1", pa))
    return a, b


def udp_pair(udp):
    """Two UDP sockets connected to each other."""
    a, pa = udp()
    b, pb = udp()
    return connect_pair(a, pa, b, pb)


class Relay:
    """A UDP relay thread: `left` is connected to one peer, `right` to the other;
    what arrives on one is sent on from the other, except the datagrams
    drop(direction, index, datagram) picks (direction "out": left to right, "back";
    index counts each direction's datagrams from 1)."""

    def __init__(self, left, right, drop=None):
        self.drop = drop
        self.counts = {"out": 0, "back": 0}
        self.dropped = {"out": 0, "back": 0}
        self._ways = {left: (right, "out"), right: (left, "back")}
        for sock in self._ways:
            sock.setblocking(False)
        self._stop = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(list(self._ways), [], [], 0.02)
                for sock in readable:
                    self._forward(sock)
        except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
            self._error = exc

    def _forward(self, sock):
        dst, way = self._ways[sock]
        try:
            datagram = sock.recv(65536)
        except (BlockingIOError, ConnectionRefusedError):
            return      # an ICMP error from a peer that has gone: that is UDP
        self.counts[way] += 1
        if self.drop is not None and self.drop(way, self.counts[way], datagram):
            self.dropped[way] += 1
            return
        try:
            dst.send(datagram)
        except ConnectionRefusedError:
            pass

    def stop(self):
        self._stop.set()
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "the relay thread did not stop"
        if self._error is not None:
            raise self._error


@pytest.fixture
def relay():
    """relay(left, right, drop) -> a running Relay, stopped when the test ends."""
    started = []

    def start(left, right, drop=None):
        r = Relay(left, right, drop)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


# -- contexts ----------------------------------------------------------------------

def test_dtls_option_makes_a_dtls_context(test_cert):
    ctx = tlsrekey.Context.server(*test_cert, dtls=True)
    assert ctx.is_dtls is True
    assert tlsrekey.Context.server(*test_cert).is_dtls is False
    assert tlsrekey.Context.client(dtls=True, verify=False).is_dtls is True
    assert tlsrekey.Context("client", dtls=True).is_dtls is True
    assert tlsrekey.Context("client").is_dtls is False
    assert ctx.memory().is_dtls is True


def test_dtls_versions_by_name(test_cert):
    ctx = tlsrekey.Context.client(dtls=True, verify=False, min_version="DTLSv1.2",
                                  max_version="DTLSv1.2")
    assert ctx.is_dtls
    # min_version's default is DTLS 1.2 on a DTLS context; a TLS name is refused
    with pytest.raises(ValueError, match="min_version"):
        tlsrekey.Context.client(dtls=True, verify=False, min_version="TLSv1.2")
    with pytest.raises(ValueError, match="max_version"):
        tlsrekey.Context.client(verify=False, max_version="DTLSv1.2")
    with pytest.raises(ValueError, match="min_version"):
        tlsrekey.Context.server(*test_cert, dtls=True, min_version="TLSv1.3")


def test_dtls_options_apply_to_dtls_servers_only(test_cert):
    tlsrekey.Context.server(*test_cert, dtls=True, cookie_exchange=False,
                            dtls_initial_timeout=0.2)
    tlsrekey.Context.client(dtls=True, verify=False, dtls_initial_timeout=0.2)
    with pytest.raises(TypeError):
        tlsrekey.Context.client(dtls=True, verify=False, cookie_exchange=True)
    with pytest.raises(ValueError, match="cookie_exchange"):
        tlsrekey.Context.server(*test_cert, cookie_exchange=False)
    tlsrekey.Context.server(*test_cert, cookie_exchange=True)   # the default: fine
    with pytest.raises(ValueError, match="dtls_initial_timeout"):
        tlsrekey.Context.server(*test_cert, dtls=True, dtls_initial_timeout=-1)
    with pytest.raises(ValueError, match="dtls_initial_timeout"):
        tlsrekey.Context.server(*test_cert, dtls_initial_timeout=1)
    with pytest.raises(TypeError, match="dtls_initial_timeout"):
        tlsrekey.Context.server(*test_cert, dtls=True, dtls_initial_timeout="1")
    client, server = tlsrekey.pair(dtls=True, cookie_exchange=False,
                                   dtls_initial_timeout=0.5)
    assert server.version == "DTLSv1.2"


# -- the in-memory pair ------------------------------------------------------------

def test_dtls_pair_handshake():
    client, server = dtls_pair()
    assert client.version == "DTLSv1.2" and server.version == "DTLSv1.2"
    assert client.is_dtls and server.is_dtls
    assert tlsrekey.pair()[0].is_dtls is False
    assert client.secure_renegotiation is True
    assert client.stats["handshakes"] == 1
    assert client.get_timeout() is None          # no flight in the air
    assert client.data_mtu > 1000
    assert "DTLSv1.2" in repr(client)
    # the TLS answers of the DTLS calls
    tls_client, _ = tlsrekey.pair()
    assert tls_client.get_timeout() is None and tls_client.data_mtu == 0


def test_dtls_pair_keeps_the_datagram_of_a_read_whose_callback_failed():
    """The datagram a read got when an event callback failed waits for the next
    read, also on an end that already keeps datagrams read on its behalf."""
    client, server = dtls_pair()
    server.write(b"first")
    with pytest.raises(tlsrekey.WantReadError):
        server.read()                    # moves the client: "first" kept for it
    assert client.read() == b"first"

    def boom(event):
        raise RuntimeError(event["name"])
    client.set_event_callback(boom)
    server.renegotiate()
    server.write(b"payload")
    with pytest.raises(RuntimeError, match="hello_request_received"):
        client.read()
    client.set_event_callback(None)
    assert client.pending() == 7
    assert client.read() == b"payload"
    assert client.pending() == 0


def test_dtls_pair_keeps_datagram_boundaries():
    client, server = dtls_pair()
    messages = [b"one", b"datagram", b"at", b"a", b"time"]
    for m in messages:
        client.write(m)
    assert [server.read() for _ in messages] == messages
    with pytest.raises(tlsrekey.WantReadError):
        server.read()
    # a smaller read: the rest of that datagram comes next, never the next datagram
    client.write(b"abcdef")
    client.write(b"XY")
    assert server.read(4) == b"abcd"
    assert server.pending() == 2
    assert server.read(4) == b"ef"
    assert server.read() == b"XY"
    # the largest datagram, and one byte more: refused, the connection unharmed
    assert client.write(b"z" * 16384) == 16384
    assert len(server.read(20000)) == 16384
    with pytest.raises(ValueError, match="at most 16384 bytes"):
        client.write(b"z" * 16385)
    assert client.write(b"") == 0                 # sends nothing
    with pytest.raises(tlsrekey.WantReadError):
        server.read()
    client.write(bytearray(b"fine"))
    assert server.read() == b"fine"


def test_dtls_key_update_is_refused():
    client, server = dtls_pair()
    with pytest.raises(tlsrekey.StateError) as info:
        client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    assert info.value.reason == "wrong ssl version"
    assert "DTLS 1.3 is not in OpenSSL 3.0" in str(info.value)
    with pytest.raises(tlsrekey.StateError):
        server.key_update()
    assert client.get_key_update_type() is tlsrekey.KeyUpdateType.NONE
    client.write(b"unharmed")
    assert server.read() == b"unharmed"


# The manual: "For historical reasons, DTLS clients will not attempt to resume the
# session in the new handshake." Observed on OpenSSL 3.0: true, whichever of the two
# calls the server made.
def server_requests_and_client_does_not_resume(call):
    client, server = dtls_pair()
    getattr(server, call)()
    assert server.renegotiate_pending() is True
    server.write(b"request")
    assert client.read() == b"request"
    assert client.stats["hello_requests_received"] == 1
    client.write(b"reply")              # the client's write carries the new handshake
    assert server.read() == b"reply"
    assert client.stats["renegotiations"] == 1
    assert server.stats["renegotiations"] == 1
    assert server.renegotiate_pending() is False
    assert client.renegotiate_pending() is False
    assert client.session_reused is False            # a full handshake
    assert server.session_reused is False
    # a TLS 1.2 client in the same place resumes
    tls_client, tls_server = tlsrekey.pair(max_version="TLSv1.2")
    getattr(tls_server, call)()
    tls_server.write(b"request")
    tls_client.read()
    tls_client.write(b"reply")
    tls_server.read()
    assert tls_client.stats["renegotiations"] == 1
    assert tls_client.session_reused is True


def test_dtls_server_renegotiate_client_does_not_resume():
    server_requests_and_client_does_not_resume("renegotiate")


def test_dtls_server_renegotiate_abbreviated_client_does_not_resume():
    server_requests_and_client_does_not_resume("renegotiate_abbreviated")


def test_dtls_client_full_renegotiation_does_not_resume():
    client, server = dtls_pair(allow_client_renegotiation=True)
    client.renegotiate()
    assert client.renegotiate_pending() is True
    client.write(b"across")
    assert server.read() == b"across"
    assert client.renegotiate_pending() is False
    assert client.stats["renegotiations"] == 1
    assert client.session_reused is False


# Observed on OpenSSL 3.0: a DTLS client's own abbreviated renegotiation resumes.
def test_dtls_client_abbreviated_renegotiation_resumes():
    client, server = dtls_pair(allow_client_renegotiation=True)
    client.renegotiate_abbreviated()
    assert client.renegotiate_pending() is True
    client.do_handshake()
    assert client.renegotiate_pending() is False
    assert client.session_reused is True
    client.write(b"x")
    assert server.read() == b"x"
    assert server.stats["renegotiations"] == 1
    assert server.session_reused is True


def test_dtls_client_renegotiation_refused_by_default():
    client, server = dtls_pair()
    client.renegotiate()
    with pytest.raises(tlsrekey.ProtocolError) as info:
        client.write(b"x")
    assert "renegotiation" in info.value.reason
    assert client.state == "failed"
    assert client.stats["renegotiations"] == 0


def test_dtls_no_renegotiation_refuses_at_once():
    client, server = dtls_pair(no_renegotiation=True)
    for conn in (client, server):
        for call in ("renegotiate", "renegotiate_abbreviated"):
            with pytest.raises(tlsrekey.StateError) as info:
                getattr(conn, call)()
            assert info.value.reason == "no renegotiation"
    client.write(b"still flows")
    assert server.read() == b"still flows"


def test_dtls_client_with_no_renegotiation_refuses_hello_request(test_cert):
    client_ctx, server_ctx = dtls_contexts(test_cert, client={"no_renegotiation": True})
    client, server = tlsrekey._tlsrekey._pair(client_ctx, server_ctx, "localhost")
    server.renegotiate()
    server.write(b"hello")
    assert client.read() == b"hello"
    assert client.stats["hello_requests_received"] == 1
    with pytest.raises(tlsrekey.ProtocolError):
        server.read()
    assert client.stats["renegotiations"] == 0


# -- the memory transport ----------------------------------------------------------

def count_handshake(client, server, **options):
    """Drives a memory handshake, counting ClientHellos and HelloVerifyRequests."""
    seen = {1: 0, 3: 0}

    def note(_, datagram):
        if hs_type(datagram) in seen:
            seen[hs_type(datagram)] += 1
        return False

    _, step = both_ways(client, server, note, note)
    drive("do_handshake", [client, server], step)
    return seen[1], seen[3]


def test_dtls_cookie_exchange_on_by_default(test_cert):
    client, server = memory_ends(test_cert)
    hellos, verify_requests = count_handshake(client, server)
    assert (hellos, verify_requests) == (2, 1)
    assert client.stats["handshakes"] == 1

    client, server = memory_ends(test_cert, server={"cookie_exchange": False})
    hellos, verify_requests = count_handshake(client, server)
    assert (hellos, verify_requests) == (1, 0)
    assert server.stats["handshakes"] == 1


def test_dtls_memory_feed_and_drain_one_datagram_each(test_cert):
    client, server = memory_ends(test_cert)
    with pytest.raises(tlsrekey.WantReadError):
        client.do_handshake()
    total = client.outgoing
    hello = client.drain()
    assert len(hello) == total
    assert hs_type(hello) == 1
    assert client.drain() == b""
    # the ClientHello in two feeds is two broken datagrams: silently discarded
    server.feed(hello[:100])
    server.feed(hello[100:])
    with pytest.raises(tlsrekey.WantReadError):
        server.do_handshake()
    assert server.outgoing == 0
    server.feed(memoryview(hello))
    with pytest.raises(tlsrekey.WantReadError):
        server.do_handshake()
    verify_request = server.drain()
    assert hs_type(verify_request) == 3                  # HelloVerifyRequest
    client.feed(b"\x17" * 20)                            # junk: discarded too
    client.feed(verify_request)
    _, step = both_ways(client, server)
    drive("do_handshake", [client, server], step)
    # a datagram never joins another: two are waiting, each drain takes one
    client.write(b"first")
    client.write(b"second")
    waiting = client.outgoing
    datagrams = [client.drain(), client.drain()]
    assert client.drain() == b""
    assert sum(map(len, datagrams)) == waiting
    for d in reversed(datagrams):                         # reordered: that is UDP
        server.feed(d)
    assert [server.read(), server.read()] == [b"second", b"first"]


def test_dtls_memory_retransmission_after_loss(test_cert):
    client, server = memory_ends(test_cert, dtls_initial_timeout=0.05)
    assert client.get_timeout() is None
    with pytest.raises(tlsrekey.WantReadError):
        client.do_handshake()
    t = client.get_timeout()
    assert 0 < t <= 0.05
    lost = client.drain()
    client.handle_timeout()                  # too early: nothing happens
    assert client.outgoing == 0
    time.sleep(0.06)
    assert client.get_timeout() == 0
    client.handle_timeout()
    again = client.drain()
    # the same ClientHello again, in a record with the next sequence number
    assert len(again) == len(lost)
    assert again[13:] == lost[13:]
    assert again != lost
    # a whole handshake losing the second datagram each way
    (out, back), step = both_ways(client, server, lambda i, d: i == 2,
                                  lambda i, d: i == 2)
    drive("do_handshake", [client, server], step)
    assert (out.dropped, back.dropped) == (1, 1)
    assert client.version == "DTLSv1.2"
    client.write(b"through")
    step()
    assert server.read() == b"through"


def test_dtls_mtu_fragments_the_handshake(test_cert):
    client, server = memory_ends(test_cert)
    ranges = set()
    for mtu in (0, 100, 70000):             # 100: below OpenSSL's minimum (256)
        with pytest.raises(ValueError, match="mtu") as info:
            client.set_mtu(mtu)
        # every refusal states the one valid range, which holds none of them
        lo, hi = map(int, re.search(r"(\d+) to (\d+)", str(info.value)).groups())
        assert lo > 100 and hi < 70000, info.value
        ranges.add((lo, hi))
    assert len(ranges) == 1
    with pytest.raises(TypeError):
        client.set_mtu("1500")
    with pytest.raises(ValueError, match="mtu"):
        client.set_mtu(1 << 80)
    client.set_mtu(400)
    server.set_mtu(400)
    (out, back), step = both_ways(client, server)
    drive("do_handshake", [client, server], step)
    assert max(out.sizes + back.sizes) <= 400 - 28
    assert len(back.sizes) > 3                  # the certificate flight was cut up
    assert 0 < client.data_mtu < 372
    tls_client, _ = tlsrekey.pair()
    with pytest.raises(tlsrekey.StateError):
        tls_client.set_mtu(1500)
    with pytest.raises(tlsrekey.StateError):
        tls_client.handle_timeout()


# -- UDP sockets -------------------------------------------------------------------

def test_dtls_udp_sockets_nonblocking(test_cert, udp):
    client_ctx, server_ctx = dtls_contexts(test_cert)
    a, b = udp_pair(udp)
    a.setblocking(False)
    b.setblocking(False)
    client = client_ctx.wrap(a, "localhost")            # follows the socket's mode
    server = server_ctx.wrap(b)
    assert client.gettimeout() == 0.0
    drive("do_handshake", [client, server])
    assert client.version == "DTLSv1.2"
    client.write(b"one")
    client.write(b"two")
    assert read_datagram(server) == b"one"
    assert read_datagram(server) == b"two"
    # the server asks for a renegotiation; the client does a full handshake
    server.renegotiate()
    server.write(b"request")
    assert read_datagram(client) == b"request"
    # the client's write waits (WantReadError) while its new handshake is under way
    assert exchange(client, server, b"reply") == b"reply"
    read_until(client, lambda: client.stats["renegotiations"] == 1)
    assert client.stats["renegotiations"] == 1
    assert server.stats["renegotiations"] == 1
    assert client.session_reused is False
    assert client.fileno() == a.fileno()
    client.close()
    server.close()
    assert a.fileno() >= 0                        # never closed by tlsrekey


def test_dtls_raw_fds_with_a_timeout(test_cert, udp):
    client_ctx, server_ctx = dtls_contexts(test_cert)
    a, b = udp_pair(udp)
    a.setblocking(False)
    b.setblocking(False)
    client = client_ctx.wrap(a.fileno(), "localhost")   # an int: blocking
    server = server_ctx.wrap(b)
    assert client.gettimeout() is None
    client.settimeout(0)
    drive("do_handshake", [client, server])
    client.settimeout(2)
    server.write(b"blocking read")
    assert client.read() == b"blocking read"
    # nothing comes: the blocking read ends at its timeout, the connection unharmed
    client.settimeout(0.2)
    t0 = time.monotonic()
    with pytest.raises(tlsrekey.TimeoutError):
        client.read()
    assert time.monotonic() - t0 >= 0.15
    server.write(b"later")
    assert client.read() == b"later"


def test_dtls_timeouts_leave_a_blocking_socket_blocking(test_cert, udp):
    """settimeout() made the caller's socket non-blocking for good (OpenSSL's datagram
    BIO receives as the socket is, so a bounded wait needs it non-blocking while it
    waits): the waits must still end on a blocking socket, which stays blocking."""
    client_ctx, server_ctx = dtls_contexts(test_cert)
    a, b = udp_pair(udp)
    b.settimeout(TIMEOUT)
    client = client_ctx.wrap(a, "localhost")
    server = server_ctx.wrap(b)
    client.settimeout(0.2)
    assert os.get_blocking(a.fileno())
    t0 = time.monotonic()
    with pytest.raises(tlsrekey.TimeoutError):
        Concurrent(client.do_handshake).result()   # the server does not answer yet
    assert 0.15 <= time.monotonic() - t0 < 5
    assert os.get_blocking(a.fileno())
    client.settimeout(0)
    with pytest.raises(tlsrekey.WantReadError):
        client.do_handshake()
    assert os.get_blocking(a.fileno())
    client.settimeout(TIMEOUT)
    other = Concurrent(server.do_handshake)
    client.do_handshake()
    other.result()
    client.write(b"x")
    assert server.read() == b"x"
    server.write(b"y")
    assert client.read() == b"y"
    client.close()
    assert os.get_blocking(a.fileno())


def test_dtls_udp_sockets_blocking_with_a_thread(test_cert, udp):
    client_ctx, server_ctx = dtls_contexts(test_cert)
    a, b = udp_pair(udp)
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    client = client_ctx.wrap(a, "localhost")
    server = server_ctx.wrap(b)
    assert server.gettimeout() == TIMEOUT
    other = Concurrent(server.do_handshake)
    client.do_handshake()
    other.result()
    assert client.version == server.version == "DTLSv1.2"
    for m in (b"x" * 1000, b"y", b"z" * 16384):
        client.write(m)
        assert server.read(20000) == m
    # the server asks; the client's read sees the request, its write the new
    # handshake, which the server's blocking read answers
    server.renegotiate()
    server.write(b"request")
    assert client.read() == b"request"
    other = Concurrent(server.read)
    client.write(b"reply")
    assert other.result() == b"reply"
    assert client.stats["renegotiations"] == server.stats["renegotiations"] == 1
    assert client.session_reused is False
    assert server.renegotiate_pending() is False


def test_dtls_wrong_socket_kinds_are_argument_errors(test_cert, udp):
    dtls_ctx = tlsrekey.Context.client(dtls=True, verify=False)
    tls_ctx = tlsrekey.Context.client(verify=False)
    a, _ = udp_pair(udp)
    with pytest.raises(ValueError, match="DTLS"):
        tls_ctx.wrap(a)
    unconnected, _ = udp()
    with pytest.raises(ValueError, match="not connected"):
        dtls_ctx.wrap(unconnected)
    left, right = socket.socketpair()
    try:
        with pytest.raises(ValueError, match="UDP"):
            dtls_ctx.wrap(left)
    finally:
        left.close()
        right.close()


def test_dtls_retransmission_through_a_lossy_relay(test_cert, udp, relay):
    # Both ends blocking (the server in a thread): the core runs the retransmission
    # timers inside its waits.
    client_ctx, server_ctx = dtls_contexts(test_cert, dtls_initial_timeout=0.05)
    csock, cport = udp()
    ssock, sport = udp()
    left, lport = udp()
    right, rport = udp()
    connect_pair(csock, cport, left, lport)
    connect_pair(ssock, sport, right, rport)
    # client to server: the first ClientHello and the client's last flight; back:
    # the server's certificate flight
    r = relay(left, right, lambda way, i, d: i in ((1, 3) if way == "out" else (2,)))
    csock.settimeout(TIMEOUT)
    ssock.settimeout(TIMEOUT)
    client = client_ctx.wrap(csock, "localhost")
    server = server_ctx.wrap(ssock)
    other = Concurrent(server.do_handshake)
    client.do_handshake()
    other.result()
    assert r.dropped["out"] + r.dropped["back"] == 3
    assert r.counts["out"] > 3 and r.counts["back"] > 3     # resent flights got through
    client.write(b"after the losses")
    assert server.read() == b"after the losses"


# -- interop with OpenSSL's own DTLS peers -----------------------------------------

OPENSSL = shutil.which("openssl")


def interop(test):
    test = pytest.mark.interop(test)
    return pytest.mark.skipif(OPENSSL is None, reason="the openssl command line tool "
                              "is not installed (Debian package openssl)")(test)


# The peers run without -trace: in OpenSSL 3.0.19 s_server's trace of its own
# Certificate in a DTLS renegotiation leaves ASN.1 errors queued, and the s_server
# then takes its next SSL_read for a failure and closes the connection. (-msg does
# not decode DTLS 1.2 records.) The handshake messages are counted by our relay and
# our counters instead.


@pytest.fixture
def peers():
    """peers(args) -> a started openssl Peer, killed and waited for at the end."""
    started = []

    def start(args):
        peer = Peer(args)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.stop()


@pytest.fixture
def cert_paths(cert_files):
    return str(cert_files / "cert.pem"), str(cert_files / "key.pem")


def command(peer, letter, seen):
    """s_server/s_client take a command only when it is alone in a read of their
    stdin: send it, then wait for the sign that they acted on it."""
    peer.send(letter)
    peer.wait_for(seen)


def read_with_timeouts_until(conn, done, data=b""):
    """Reads on a connection with a short timeout until done(data so far)."""
    deadline = time.monotonic() + DEADLINE
    conn.settimeout(0.1)
    while not done(data):
        assert time.monotonic() < deadline, "gave up reading; got %r" % data
        try:
            data += conn.read()
        except tlsrekey.TimeoutError:
            pass
    return data


@interop
def test_dtls_client_against_s_server_through_a_lossy_relay_with_renegotiation(
        cert_paths, peers, udp, relay):
    # tlsrekey client -> relay thread (drops chosen datagrams) -> s_server -dtls1_2
    for _ in range(3):                  # the free port may be taken in between: retry
        probe, port = udp()
        probe.close()
        peer = peers(["s_server", "-dtls1_2", "-accept", "127.0.0.1:%d" % port,
                      "-cert", cert_paths[0], "-key", cert_paths[1],
                      "-naccept", "1"])
        try:
            peer.wait_for(r"^ACCEPT$")
            break
        except AssertionError:
            if "ddress already in use" not in peer.output():
                raise
    csock, cport = udp()
    left, lport = udp()
    right, _ = udp()
    connect_pair(csock, cport, left, lport)
    right.connect(("127.0.0.1", port))
    # lost: our first ClientHello, then s_server's certificate flight (its second
    # datagram, after the HelloVerifyRequest): both sides must retransmit
    hellos = []

    def drop(way, i, datagram):
        if way == "out" and hs_type(datagram) == 1:
            hellos.append(i)
        return i == (1 if way == "out" else 2)

    r = relay(left, right, drop)
    ctx = tlsrekey.Context.client(cert_paths[0], dtls=True, dtls_initial_timeout=0.1)
    csock.settimeout(TIMEOUT)
    client = ctx.wrap(csock, "localhost")
    client.do_handshake()                    # blocking: the core runs the timer
    assert client.version == "DTLSv1.2"
    assert r.dropped["out"] + r.dropped["back"] == 2
    client.write(b"hello\n")
    peer.wait_for(r"^hello$")
    # the lost one, its resend, the one with the cookie (and its resend, as the
    # answer to it was lost)
    assert hellos[:2] == [1, 2] and len(hellos) >= 3
    # s_server's `r`: a HelloRequest (its trace of it may stay in its stdio buffer:
    # our counter is the sign it acted), which our client answers with a full
    # handshake inside its reads
    peer.send("r")
    got = read_with_timeouts_until(
        client, lambda d: client.stats["hello_requests_received"] == 1)
    peer.send("after")
    # data may arrive in the middle of the new handshake: read on until it is done
    got = read_with_timeouts_until(
        client, lambda d: b"after" in d and client.stats["renegotiations"] == 1, got)
    assert got == b"after\n"
    assert client.stats["hello_requests_received"] == 1
    assert client.session_reused is False   # the manual's DTLS statement, against s_server
    client.settimeout(TIMEOUT)
    client.write(b"done\n")
    peer.wait_for(r"^done$")


# s_client's last step of a handshake it made (the first, then each renegotiation).
S_CLIENT_DONE = r"^SSL_connect:SSLv3/TLS read finished$"


def s_client_and_our_server(peers, udp, **server_options):
    """openssl s_client -dtls1_2 against a tlsrekey DTLS server on a UDP socket."""
    ssock, sport = udp()
    cert, key = tlsrekey.make_test_cert("localhost")
    ctx = tlsrekey.Context.server(cert, key, dtls=True, **server_options)
    # -nbio: a blocking s_client stays inside SSL_read after a renegotiation until
    # application data arrives, and stops reading its stdin meanwhile.
    # -state: its handshake progress, to tell when a renegotiation has completed.
    peer = peers(["s_client", "-dtls1_2", "-connect", "127.0.0.1:%d" % sport, "-nbio",
                  "-state"])
    # One socket per client: learn s_client's address from its first ClientHello
    # (peeked, so it stays queued for the handshake), then connect to it.
    ssock.settimeout(TIMEOUT)
    first, address = ssock.recvfrom(65536, socket.MSG_PEEK)
    assert hs_type(first) == 1
    ssock.connect(address)
    server = ctx.wrap(ssock)
    server.do_handshake()
    assert server.version == "DTLSv1.2"
    return peer, server


@interop
def test_s_client_against_dtls_server_with_client_renegotiation(peers, udp):
    peer, server = s_client_and_our_server(peers, udp, allow_client_renegotiation=True)
    peer.send("from s_client")
    assert server.read() == b"from s_client\n"
    command(peer, "R", r"^RENEGOTIATING$")
    # The renegotiation completes inside our read. s_client 3.5 drops a line typed
    # while its renegotiation is under way (3.0 sent it after): type it once done.
    reader = Concurrent(server.read)
    peer.wait_for(S_CLIENT_DONE, count=2)
    peer.send("after")
    assert reader.result() == b"after\n"
    assert server.stats["renegotiations"] == 1
    assert server.stats["handshakes"] == 2
    server.write(b"to s_client\n")
    peer.wait_for(r"^to s_client$")


@interop
def test_dtls_server_renegotiates_s_client(peers, udp):
    peer, server = s_client_and_our_server(peers, udp)
    server.renegotiate()
    assert server.renegotiate_pending() is True
    server.write(b"hello\n")
    reader = Concurrent(lambda: server.read())
    peer.wait_for(r"^hello$")
    peer.wait_for(S_CLIENT_DONE, count=2)   # as above: s_client 3.5 drops lines typed
    peer.send("ping")                       # while its renegotiation is under way
    assert reader.result() == b"ping\n"
    assert server.stats["hello_requests_sent"] == 1
    assert server.stats["renegotiations"] == 1
    assert server.renegotiate_pending() is False
    # an OpenSSL DTLS client does not resume when the server asks (the manual)
    assert server.session_reused is False


def test_dtls_connect_is_refused_up_front():
    """connect() opens TCP: a DTLS context says so instead of trying."""
    ctx = tlsrekey.Context.client(dtls=True, verify=False)
    with pytest.raises(ValueError, match="UDP"):
        ctx.connect("127.0.0.1", 9)


def test_dtls_oversized_write_is_a_bad_argument_even_with_the_peer_gone():
    client, server = tlsrekey.pair(dtls=True)
    server.close()
    with pytest.raises(ValueError, match="16384"):
        client.write(b"x" * 16385)
