"""I/O over the three transports: blocking, timeout and non-blocking sockets, the
memory transport (feed/drain), read_into, pending, shutdown, write(b"")."""
import array
import os
import random
import select
import signal
import socket
import sys
import threading
import time
import tracemalloc

import pytest

import tlsrekey
from tlsrekey import KeyUpdateType

from conftest import (TIMEOUT, Concurrent, handshake_both, memory_handshake, shuttle,
                      socket_link)


@pytest.fixture
def sockets():
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def wrap_both(test_cert, a, b):
    client = tlsrekey.Context.client(test_cert[0]).wrap(a, server_hostname="localhost")
    server = tlsrekey.Context.server(*test_cert).wrap(b)
    return client, server


# -- socket modes ------------------------------------------------------------------

def test_wrap_follows_a_blocking_socket(test_cert, sockets):
    a, b = sockets
    assert a.gettimeout() is None
    client, server = wrap_both(test_cert, a, b)
    assert client.gettimeout() is None
    assert client.fileno() == a.fileno()
    peer = Concurrent(server.do_handshake)
    client.do_handshake()
    peer.result()
    client.write(b"blocking")
    assert server.read() == b"blocking"


def test_wrap_follows_a_socket_timeout(test_cert, sockets):
    a, b = sockets
    a.settimeout(0.3)
    b.settimeout(TIMEOUT)
    client, server = wrap_both(test_cert, a, b)
    assert client.gettimeout() == 0.3
    start = time.monotonic()
    with pytest.raises(tlsrekey.TimeoutError):
        client.do_handshake()              # the server is not running yet
    assert 0.25 <= time.monotonic() - start < 5


def test_wrap_follows_a_non_blocking_socket(test_cert, sockets):
    a, b = sockets
    a.setblocking(False)
    b.setblocking(False)
    client, server = wrap_both(test_cert, a, b)
    assert client.gettimeout() == 0.0
    pending = {client, server}
    for _ in range(100):
        for conn in list(pending):
            try:
                conn.do_handshake()
                pending.discard(conn)
            except tlsrekey.WantReadError:
                pass
        if not pending:
            break
        select.select([a, b], [], [], 1.0)
    assert not pending, "non-blocking handshake did not finish"
    with pytest.raises(tlsrekey.WantReadError):
        client.read()
    server.write(b"ready")
    select.select([a], [], [], TIMEOUT)
    assert client.read() == b"ready"


def test_settimeout_switches_modes(test_cert, sockets):
    a, b = sockets
    client, server = wrap_both(test_cert, a, b)
    client.settimeout(0)
    assert client.gettimeout() == 0.0
    with pytest.raises(tlsrekey.WantReadError):
        client.do_handshake()
    client.settimeout(0.2)
    assert client.gettimeout() == 0.2
    with pytest.raises(tlsrekey.TimeoutError):
        client.do_handshake()
    client.settimeout(None)
    assert client.gettimeout() is None
    with pytest.raises(ValueError):
        client.settimeout(-1)
    with pytest.raises(TypeError):
        client.settimeout("1")


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "non-blocking"])
def test_timeouts_leave_the_callers_socket_as_found(test_cert, sockets, blocking):
    """settimeout(x) made the caller's socket non-blocking and neither settimeout(None)
    nor close() made it blocking again: sock.recv() then raised BlockingIOError on a
    socket whose gettimeout() said None."""
    a, b = sockets
    a.setblocking(blocking)
    client, server = wrap_both(test_cert, a, b)

    def as_found():
        assert os.get_blocking(a.fileno()) == blocking == (a.gettimeout() is None)

    client.settimeout(0.2)
    as_found()
    start = time.monotonic()
    with pytest.raises(tlsrekey.TimeoutError):
        client.do_handshake()              # the server is not running yet
    assert 0.15 <= time.monotonic() - start < 5
    as_found()
    client.settimeout(0)
    with pytest.raises(tlsrekey.WantReadError):
        client.do_handshake()
    as_found()
    client.settimeout(TIMEOUT)
    peer = Concurrent(server.do_handshake)
    client.do_handshake()
    peer.result()
    client.write(b"x")
    assert server.read() == b"x"
    server.write(b"y")
    assert client.read() == b"y"
    as_found()
    client.settimeout(None)
    as_found()
    client.settimeout(0.2)
    client.close()
    as_found()
    if blocking:  # the socket works as its object says: a blocking recv waits
        later = Concurrent(lambda: a.recv(5))
        time.sleep(0.05)
        b.sendall(b"plain")
        assert later.result() == b"plain"


def test_wrap_accepts_a_raw_fd(test_cert, sockets):
    a, b = sockets
    b.settimeout(TIMEOUT)
    client = tlsrekey.Context.client(test_cert[0]).wrap(a.fileno(),
                                                        server_hostname="localhost")
    server = tlsrekey.Context.server(*test_cert).wrap(b)
    assert client.gettimeout() is None
    peer = Concurrent(server.read)
    client.write(b"raw fd")
    assert peer.result() == b"raw fd"


def test_a_socket_closed_by_its_owner_is_never_used_again(test_cert, sockets, tmp_path):
    """Once the owner closes the wrapped socket, its number may belong to another
    file at once: a write put a TLS record into that file and returned 6."""
    a, b = sockets
    client, server = wrap_both(test_cert, a, b)
    peer = Concurrent(server.do_handshake)
    client.do_handshake()
    peer.result()
    number = a.fileno()
    a.close()
    unrelated = tmp_path / "unrelated"
    fd = os.open(unrelated, os.O_RDWR | os.O_CREAT)
    if fd != number:  # put the file where the socket was, whatever else is free
        os.dup2(fd, number)
        os.close(fd)
    try:
        calls = [lambda: client.write(b"secret"), client.read,
                 lambda: client.read_into(bytearray(8)), client.do_handshake,
                 lambda: client.key_update(now=True), client.shutdown]
        for call in calls:
            with pytest.raises(tlsrekey.StateError, match="closed by its owner"):
                call()
        assert os.path.getsize(unrelated) == 0
        assert client.state == "failed"
        assert client.fileno() == -1
        client.close()
        os.fstat(number)  # the file was not closed either: it is not the connection's
    finally:
        os.close(number)


class _FdWithTimeout:
    """An fd that is no socket, with the gettimeout() wrap() follows."""

    def __init__(self, fd, timeout):
        self.fd, self.timeout = fd, timeout

    def fileno(self):
        return self.fd

    def gettimeout(self):
        return self.timeout


@pytest.fixture
def pty_ends():
    """Both ends of a pty in raw mode: a bidirectional fd that is no socket."""
    pty, tty = pytest.importorskip("pty"), pytest.importorskip("tty")
    master, slave = pty.openpty()
    try:
        for fd in (master, slave):
            tty.setraw(fd)
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def _until_done(call, limit=2000):
    """call() on a non-blocking connection, polled until it stops wanting."""
    for _ in range(limit):
        try:
            return call()
        except (tlsrekey.WantReadError, tlsrekey.WantWriteError):
            time.sleep(0.001)
    raise AssertionError(f"{call} still wants after {limit} tries")


@pytest.mark.parametrize("timeout", [0.0, None])
def test_an_fd_that_is_no_socket_works_non_blocking_and_blocking(test_cert, pty_ends,
                                                                  timeout):
    """Small socket I/O first tries without waiting (MSG_DONTWAIT), which a pty does
    not take: a non-blocking one raised WantWriteError on every write."""
    master, slave = pty_ends
    for fd in pty_ends:
        os.set_blocking(fd, timeout is None)
    client = tlsrekey.Context.client(test_cert[0]).wrap(_FdWithTimeout(master, timeout),
                                                        server_hostname="localhost")
    server = tlsrekey.Context.server(*test_cert).wrap(_FdWithTimeout(slave, timeout))
    if timeout is None:
        handshake = Concurrent(server.do_handshake)
        client.do_handshake()
        handshake.result()
        peer = Concurrent(lambda: server.read(5))
        client.write(b"hello")
        assert peer.result() == b"hello"
        client.key_update()
        peer = Concurrent(lambda: server.read(5))
        client.write(b"again")
        assert peer.result() == b"again"
        server.write(b"back")
        assert client.read(4) == b"back"
    else:
        handshake_both(client, server, lambda: time.sleep(0.001), rounds=2000)
        assert client.version == "TLSv1.3"
        assert _until_done(lambda: client.write(b"hello")) == 5
        assert _until_done(lambda: server.read(5)) == b"hello"
        client.key_update()
        assert _until_done(lambda: client.write(b"again")) == 5
        assert _until_done(lambda: server.read(5)) == b"again"
        assert _until_done(lambda: server.write(b"back")) == 4
        assert _until_done(lambda: client.read(4)) == b"back"
    assert server.stats["key_updates_received"] == 1


def test_timeouts_on_a_blocking_pty_wait_and_leave_it_blocking(test_cert, pty_ends):
    """An fd that is no socket takes no MSG_DONTWAIT: a timeout on a blocking one must
    still end the wait, and leave the fd blocking."""
    master, _ = pty_ends
    client = tlsrekey.Context.client(test_cert[0]).wrap(_FdWithTimeout(master, None),
                                                        server_hostname="localhost")
    client.settimeout(0.2)
    assert os.get_blocking(master)
    start = time.monotonic()
    with pytest.raises(tlsrekey.TimeoutError):
        Concurrent(client.do_handshake).result()     # nobody answers on the other end
    assert 0.15 <= time.monotonic() - start < 5
    assert os.get_blocking(master)
    client.settimeout(0)
    with pytest.raises(tlsrekey.WantReadError):
        Concurrent(client.do_handshake).result()
    client.close()
    assert os.get_blocking(master)


def test_large_transfer_over_sockets(socket_pair_factory):
    link = socket_pair_factory()
    payload = os.urandom(1 << 20)

    def receive():
        got = bytearray()
        while len(got) < len(payload):
            got += link.server.read(65536)
        return bytes(got)

    peer = Concurrent(receive)
    assert link.client.write(payload) == len(payload)
    assert peer.result() == payload
    assert link.client.stats["bytes_written"] == len(payload)
    assert link.server.stats["bytes_read"] == len(payload)


# -- read-ahead: pending() on sockets ------------------------------------------------
#
# The core reads ahead on sockets: records that have arrived can wait inside the
# connection while the socket shows nothing. A caller who polls the socket whenever
# pending() is 0 must never wait for data that is already here.

class HandFed:
    """A socket client whose peer is a memory-transport server: the test sends the
    server's records on the other socket end itself, whole or in pieces."""

    def __init__(self, test_cert):
        self.sock, self.peer = socket.socketpair()
        self.client = tlsrekey.Context.client(test_cert[0]).wrap(
            self.sock, server_hostname="localhost")
        self.server = tlsrekey.Context.server(*test_cert).memory()
        self.client.settimeout(0)
        self.peer.setblocking(False)
        for _ in range(20):
            done = 0
            try:
                self.client.do_handshake()
                done += 1
            except tlsrekey.WantReadError:
                pass
            try:
                self.server.feed(self.peer.recv(65536))
            except BlockingIOError:
                pass
            try:
                self.server.do_handshake()
                done += 1
            except tlsrekey.WantReadError:
                pass
            self.send(self.server.drain())
            if done == 2:
                break
        with pytest.raises(tlsrekey.WantReadError):
            self.client.read()          # takes in the session tickets
        self.peer.setblocking(True)

    def record(self, data):
        """The bytes of one record of application data from the server."""
        self.server.write(data)
        return self.server.drain()

    def key_update_record(self):
        self.server.key_update(now=True)
        return self.server.drain()

    def send(self, data):
        self.peer.sendall(data)

    def readable(self, timeout=0):
        return bool(select.select([self.sock], [], [], timeout)[0])

    def close(self):
        self.client.close()
        self.server.close()
        self.sock.close()
        self.peer.close()


@pytest.fixture
def hand_fed(test_cert):
    h = HandFed(test_cert)
    yield h
    h.close()


@pytest.mark.parametrize("first,then", [(None, None), (None, 0), (0, None), (0, 0),
                                        (TIMEOUT, 0), (0, TIMEOUT)])
def test_pending_counts_a_record_read_ahead_behind_another(hand_fed, first, then):
    h = hand_fed
    h.client.settimeout(first)
    h.send(h.record(b"first") + h.record(b"second"))
    assert h.client.read() == b"first"
    assert not h.readable()            # both records were taken from the socket
    assert h.client.pending() > 0      # so pending() must say one is waiting
    h.client.settimeout(then)
    assert h.client.read() == b"second"
    assert h.client.pending() == 0


def test_pending_does_not_count_part_of_a_record(hand_fed):
    h = hand_fed
    whole, big = h.record(b"third"), h.record(b"b" * 10000)
    h.send(whole + big[:100])
    assert h.client.read() == b"third"
    # the rest of the record is on its way: the socket will show it, pending() is 0
    assert h.client.pending() == 0 and not h.readable()
    with pytest.raises(tlsrekey.WantReadError):
        h.client.read()
    assert h.client.pending() == 0     # no busy loop for a poller
    h.send(big[100:])
    assert h.readable(TIMEOUT)
    assert h.client.read(20000) == b"b" * 10000


def test_pending_counts_a_key_update_until_a_read_takes_it_in(hand_fed):
    h = hand_fed
    h.send(h.record(b"x") + h.key_update_record())
    assert h.client.read() == b"x"
    assert h.client.pending() == 1     # a whole record: it may carry no data
    with pytest.raises(tlsrekey.WantReadError):
        h.client.read()
    assert h.client.pending() == 0
    assert h.client.stats["key_updates_received"] == 1


@pytest.mark.parametrize("seed", range(6))
def test_a_caller_who_polls_when_pending_is_zero_never_misses_data(hand_fed, seed):
    """Records of random sizes (and key updates) sent in random pieces, the client
    switching modes between them. Whenever pending() is 0 and the socket shows
    nothing, every record that has arrived whole must have been read."""
    h, rng = hand_fed, random.Random(seed)
    stream, ends = b"", []          # (offset where a record ends, its data)
    for i in range(40):
        if rng.random() < 0.15:
            stream += h.key_update_record()
            ends.append((len(stream), b""))
        size = rng.choice([1, 64, rng.randrange(1, 3000), rng.randrange(1, 16385)])
        data = bytes([65 + i % 26]) * size
        stream += h.record(data)
        ends.append((len(stream), data))
    sent, got = 0, bytearray()
    while sent < len(stream):
        piece = rng.choice([1, 5, 37, 600, 5000, 20000])
        h.send(stream[sent:sent + piece])
        sent = min(len(stream), sent + piece)
        arrived = b"".join(d for end, d in ends if end <= sent)
        if rng.random() < 0.3:
            # blocking (or with a timeout): read exactly what has arrived whole
            h.client.settimeout(rng.choice([None, TIMEOUT]))
            while len(got) < len(arrived):
                got += h.client.read(len(arrived) - len(got))
        h.client.settimeout(0)
        # a poller: read while pending() says so or the socket is readable
        for _ in range(1000):
            if h.client.pending() == 0 and not h.readable():
                break
            try:
                got += h.client.read()
            except tlsrekey.WantReadError:
                assert h.client.pending() == 0, "pending() > 0 after WantReadError"
        else:
            raise AssertionError("the poller never came to rest")
        assert bytes(got) == arrived, "data arrived whole but pending() said 0"
    assert len(got) == sum(len(d) for _, d in ends)


# -- memory transport ------------------------------------------------------------

@pytest.fixture
def memory_link(test_cert):
    client = tlsrekey.Context.client(test_cert[0]).memory("localhost")
    server = tlsrekey.Context.server(*test_cert).memory()
    yield client, server
    client.close()
    server.close()


def test_memory_transport_handshake_and_data(memory_link):
    client, server = memory_link
    assert client.state == "new" and client.version is None and client.cipher is None
    with pytest.raises(tlsrekey.WantReadError):
        client.do_handshake()
    assert client.outgoing > 0                     # the ClientHello waits
    hello = client.drain()
    assert client.outgoing == 0 and hello[0] == 22  # a handshake record
    server.feed(hello)
    memory_handshake(client, server)
    assert client.version == "TLSv1.3" and client.fileno() == -1
    client.write(b"over memory")
    shuttle(client, server)
    assert server.read() == b"over memory"
    with pytest.raises(tlsrekey.WantReadError):
        server.read()


def test_memory_transport_reads_can_write(memory_link):
    client, server = memory_link
    memory_handshake(client, server)
    client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    client.write(b"x")
    server.feed(client.drain())
    assert server.read() == b"x"
    assert server.get_key_update_type() is KeyUpdateType.NOT_REQUESTED
    server.write(b"")                      # sends the owed update
    reply = server.drain()
    assert reply, "the reply must be drained"
    client.feed(reply)
    with pytest.raises(tlsrekey.WantReadError):
        client.read()
    assert client.stats["key_updates_received"] == 1


def test_memory_transport_renegotiation_needs_draining_after_reads(test_cert):
    client = tlsrekey.Context.client(test_cert[0]).memory("localhost")
    server = tlsrekey.Context.server(*test_cert, max_version="TLSv1.2").memory()
    memory_handshake(client, server)
    server.renegotiate()
    server.write(b"hello")
    client.feed(server.drain())
    assert client.read() == b"hello"
    assert client.outgoing > 0             # the read answered with a ClientHello
    for _ in range(10):
        shuttle(client, server)
        for conn in (server, client):
            try:
                conn.read()
            except tlsrekey.WantReadError:
                pass
        if client.stats["renegotiations"] and server.stats["renegotiations"]:
            break
    assert client.stats["renegotiations"] == 1 and server.stats["renegotiations"] == 1


def test_memory_only_calls_on_other_transports_are_state_errors():
    client, _ = tlsrekey.pair()
    with pytest.raises(tlsrekey.StateError, match="memory"):
        client.feed(b"x")
    with pytest.raises(tlsrekey.StateError):
        client.drain()
    assert client.outgoing == 0


def test_feed_accepts_buffers(memory_link):
    client, server = memory_link
    with pytest.raises(tlsrekey.WantReadError):
        client.do_handshake()
    server.feed(memoryview(bytearray(client.drain())))
    with pytest.raises(tlsrekey.WantReadError):
        server.do_handshake()
    with pytest.raises(TypeError):
        server.feed("text")


# -- read_into, pending, write ------------------------------------------------

def test_read_into_buffers(make_link):
    link = make_link()
    link.server.write(b"0123456789")
    buf = bytearray(4)
    assert link.client.read_into(buf) == 4 and buf == b"0123"
    mv = memoryview(bytearray(10))
    assert link.client.read_into(mv, 3) == 3 and bytes(mv[:3]) == b"456"
    arr = array.array("b", [0] * 8)
    assert link.client.read_into(arr) == 3 and arr.tobytes()[:3] == b"789"
    with pytest.raises(ValueError):
        link.client.read_into(bytearray(2), 5)
    with pytest.raises(TypeError):
        link.client.read_into(b"immutable")


def test_a_read_of_nothing_returns_nothing_at_once(make_link, test_cert):
    """read(0) is b"" and read_into(<empty>) 0, as io, socket and ssl give: nothing
    asked, nothing taken, nothing waited for (a blocking socket with no data)."""
    link = make_link()
    client = link.client
    assert client.read(0) == b""
    assert client.read_into(bytearray()) == 0
    assert client.read_into(bytearray(8), 0) == 0
    link.server.write(b"kept")
    assert client.read(0) == b"" and client.read_into(memoryview(bytearray(4))[:0]) == 0
    got = b""
    while len(got) < 4:
        got += client.read()
    assert got == b"kept"                     # what arrived stays for the next read
    fresh = tlsrekey.Context.client(test_cert[0]).memory("localhost")
    assert fresh.read(0) == b""               # no handshake started either
    assert fresh.drain() == b""
    with pytest.raises(ValueError):
        client.read(-5)
    with pytest.raises(ValueError):
        client.read_into(bytearray(8), -1)
    client.close()
    with pytest.raises(tlsrekey.StateError):  # a closed connection still says so
        client.read(0)


def test_a_large_read_size_sets_aside_what_can_arrive_not_what_was_asked(make_link):
    """read(n) returns up to n bytes: a huge n gets what has arrived, and the buffer
    it makes is as large as what can arrive (a record, or data already here), not n.
    read(1 << 40) was a bare MemoryError, read(1 << 30) took a GiB at each call."""
    link = make_link()
    client, server = link.client, link.server
    server.write(b"hello")
    assert client.read(1 << 40) == b"hello"
    data = os.urandom(300_000)

    def read_all():
        got = b""
        while len(got) < len(data):
            got += client.read(sys.maxsize)
        return got

    assert link.both(lambda: server.write(data), read_all)[1] == data
    server.write(b"x")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        assert client.read(1 << 30) == b"x"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_pending_counts_decrypted_bytes(make_link):
    link = make_link()
    assert link.client.pending() == 0
    link.server.write(b"abcdefghij")
    assert link.client.read(3) == b"abc"
    assert link.client.pending() == 7
    assert link.client.read() == b"defghij"
    assert link.client.pending() == 0


def test_write_takes_any_buffer(make_link):
    link = make_link()
    assert link.client.write(bytearray(b"ba")) == 2
    assert link.client.write(memoryview(b"xmvx")[1:3]) == 2
    assert link.client.write(array.array("B", [65, 66])) == 2
    # the count is of bytes, as socket.send() and ssl's write() give: for items
    # wider than a byte it is not len(data)
    wide = array.array("i", [1, 2, 3])
    assert link.client.write(wide) == memoryview(wide).nbytes == 3 * wide.itemsize
    assert link.client.write(memoryview(wide).cast("B")[4:]) == 2 * wide.itemsize
    want = b"bamvAB" + wide.tobytes() + wide.tobytes()[4:]
    got = b""
    while len(got) < len(want):
        got += link.server.read()
    assert got == want
    with pytest.raises(TypeError):
        link.client.write("text")


def test_zero_length_write_really_calls_the_core(make_link):
    link = make_link()
    records = link.client.stats["records_written"]
    assert link.client.write(b"") == 0            # nothing owed: nothing sent
    assert link.client.stats["records_written"] == records
    link.client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    assert link.client.write(b"") == 0            # the scheduled update goes out
    assert link.client.stats["key_updates_sent"] == 1


def test_read_returns_data_that_arrived_before_a_key_update(make_link):
    link = make_link()
    link.server.write(b"first")
    link.server.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    link.server.write(b"second")
    got = b""
    while got != b"firstsecond":
        got += link.client.read()
    assert link.client.stats["key_updates_received"] == 1


# -- shutdown -------------------------------------------------------------------

def test_shutdown_both_ways(make_link):
    link = make_link()
    c, s = link.client, link.server
    assert c.shutdown() is False                  # sent, the peer's not yet seen
    assert s.read() == b""                        # the peer sees close_notify
    assert s.shutdown() is True                   # and answers: complete on its side
    assert c.shutdown() is True                   # now ours completes too
    assert c.state == "closed" and s.state == "closed"
    with pytest.raises(tlsrekey.StateError):
        c.write(b"after shutdown")


def test_shutdown_completes_a_scheduled_key_update_first(make_link):
    link = make_link()
    link.client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    assert link.client.shutdown() is False
    assert link.client.stats["key_updates_sent"] == 1
    assert link.server.read() == b""
    assert link.server.stats["key_updates_received"] == 1


def test_shutdown_before_handshake_is_state_error(memory_link):
    client, _ = memory_link
    with pytest.raises(tlsrekey.StateError):
        client.shutdown()


def test_close_leaves_a_wrapped_socket_open(socket_pair_factory):
    link = socket_pair_factory()
    a = link.socks[0]
    link.client.shutdown()
    link.client.close()
    assert link.client.fileno() == -1
    assert a.fileno() >= 0
    a.sendall(b"plain")                          # still a working socket
    assert link.socks[1].recv(100).endswith(b"plain")


class RepeatedSigint:
    """Sends SIGINT to this process every `every` seconds until stopped: a signal
    that lands just before a wait begins is not lost on the test (as CPython's own
    blocking calls, a read(2) not yet started when the signal came waits on). A
    process started in the background by a non-interactive shell inherits SIGINT
    ignored, so Python's KeyboardInterrupt handler is installed for the while."""

    def __init__(self, first=0.2, every=0.2):
        self.stop = threading.Event()
        self.previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.thread = threading.Thread(target=self.run, args=(first, every), daemon=True)
        self.thread.start()

    def run(self, first, every):
        # to the main thread, where Python runs its handlers, as a terminal's Ctrl-C
        # usually lands; a signal to the process may wake another thread instead
        main = threading.main_thread().ident
        if not self.stop.wait(first):
            while True:
                signal.pthread_kill(main, signal.SIGINT)
                if self.stop.wait(every):
                    break

    def close(self):
        self.stop.set()
        self.thread.join(TIMEOUT)
        signal.signal(signal.SIGINT, self.previous)


def test_ctrl_c_interrupts_a_blocking_read_and_the_connection_lives_on(test_cert):
    """A read blocked forever on a quiet peer ends with KeyboardInterrupt at Ctrl-C
    (the core asks the shim at each interrupted wait), and the connection still
    works afterwards."""
    link = socket_link(*test_cert)
    client, server = link.client, link.server
    try:
        sig = RepeatedSigint()
        start = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                client.read()
        finally:
            sig.close()
        assert time.monotonic() - start < TIMEOUT
        server.write(b"after the interrupt")
        assert client.read() == b"after the interrupt"
    finally:
        link.close()


def test_ctrl_c_interrupts_a_connect_that_waits(test_cert):
    """A TCP connection that does not complete (the listener's queue is full, so
    its SYNs go unanswered) is abandoned at Ctrl-C, not after the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):              # fill the accept queue; later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(listener.getsockname())
            fillers.append(s)
        ctx = tlsrekey.Context.client(test_cert[0])
        sig = RepeatedSigint()
        start = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                ctx.connect("127.0.0.1", listener.getsockname()[1], timeout=8)
        finally:
            sig.close()
        assert time.monotonic() - start < 4, "connect waited on after Ctrl-C"
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_ctrl_c_interrupts_a_wait_for_a_connection_another_thread_uses(test_cert):
    """While one thread's write waits for room on the socket (a write keeps the
    connection through its waits), another thread's call on the same connection
    waits for it; Ctrl-C ends that wait with KeyboardInterrupt, and nothing is left
    half done: the writer goes on, every byte arrives, the connection works."""
    link = socket_link(*test_cert)
    client, server = link.client, link.server
    big = b"w" * (4 << 20)
    try:
        client.settimeout(TIMEOUT)
        writer = threading.Thread(target=client.write, args=(big,))
        writer.start()
        time.sleep(0.2)                      # the writer holds the connection, waiting
        sig = RepeatedSigint()
        start = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
        finally:
            sig.close()
        assert time.monotonic() - start < TIMEOUT / 2
        got = 0
        while got < len(big):
            got += len(server.read(1 << 20))
        writer.join(TIMEOUT)
        assert got == len(big)
        client.write(b"after")
        assert server.read() == b"after"
    finally:
        link.close()


def test_a_signal_handler_may_write_on_the_connection_whose_read_it_interrupted(
        test_cert):
    """A blocking read waits without the connection: a signal handler that runs
    while it waits may write on that very connection, and the read then goes on
    and gets the answer."""
    seen = []
    link = socket_link(*test_cert)
    client, server = link.client, link.server

    def handler(signum, frame):
        if not seen:
            seen.append(client.write(b"from the handler"))
    previous = signal.signal(signal.SIGUSR1, handler)
    stop = threading.Event()
    try:
        main = threading.main_thread().ident

        def poke():
            while not stop.wait(0.1):
                if seen:
                    assert server.read() == b"from the handler"
                    server.write(b"done")
                    return
                signal.pthread_kill(main, signal.SIGUSR1)
        poker = threading.Thread(target=poke)
        poker.start()
        client.settimeout(TIMEOUT)
        assert client.read() == b"done"
        poker.join(TIMEOUT)
        assert seen == [len(b"from the handler")]
    finally:
        stop.set()
        signal.signal(signal.SIGUSR1, previous)
        link.close()


def test_a_signal_handler_that_writes_is_told_what_happened(test_cert):
    """A signal handler runs inside the blocking write it interrupted (a write keeps
    the connection through its waits); writing on that connection from it is
    refused, and the error names the signal handler (no event callback is
    involved). The write then goes on."""
    seen = []
    link = socket_link(*test_cert)
    client, server = link.client, link.server
    big = b"w" * (4 << 20)

    def handler(signum, frame):
        if not seen:
            try:
                client.write(b"from the handler")
            except tlsrekey.StateError as exc:
                seen.append(exc)
    previous = signal.signal(signal.SIGUSR1, handler)
    stop = threading.Event()
    got = []
    try:
        main = threading.main_thread().ident

        def poke():
            while not stop.wait(0.1):
                if seen:
                    n = 0
                    while n < len(big):
                        n += len(server.read(1 << 20))
                    got.append(n)
                    return
                signal.pthread_kill(main, signal.SIGUSR1)
        poker = threading.Thread(target=poke)
        poker.start()
        client.settimeout(TIMEOUT)
        assert client.write(big) == len(big)
        poker.join(TIMEOUT)
        assert got == [len(big)]
        assert seen, "the handler never ran"
        assert "signal handler" in str(seen[0])
        assert "event callback" not in str(seen[0])
    finally:
        stop.set()
        signal.signal(signal.SIGUSR1, previous)
        link.close()
