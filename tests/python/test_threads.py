"""Threads (issue 4): many threads each with their own connections, and one
connection hammered from several threads at once. No crash, no deadlock (every join
is bounded), every byte accounted for, only documented errors.

tlsrekey releases the GIL around OpenSSL calls and serialises the calls on one
connection (both ends of a pair together) with a per-connection lock."""
import hashlib
import os
import socket
import threading
import time

import pytest

import tlsrekey

from conftest import TIMEOUT, socket_link

JOIN = 60.0   # seconds a whole threaded test may take before it counts as a deadlock


class Threads:
    """Starts threads, joins them with a bound, re-raises the first failure."""

    def __init__(self):
        self.threads = []
        self.errors = []

    def start(self, fn, *args):
        def run():
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised by join()
                self.errors.append(exc)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self, timeout=JOIN):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, "%d thread(s) still running: a deadlock?" % len(alive)
        if self.errors:
            raise self.errors[0]


def tagged(thread, i):
    body = hashlib.sha256(b"%d-%d" % (thread, i)).hexdigest().encode()
    return b"<%03d:%05d:" % (thread, i) + body * (1 + i % 7) + b">"


# -- many threads, each with its own connections --------------------------------

def test_many_threads_each_with_their_own_pair():
    counts = {}

    def worker(n):
        client, server = tlsrekey.pair(max_version="TLSv1.3" if n % 2 else "TLSv1.2",
                                       allow_client_renegotiation=True)
        for i in range(150):
            if client.version == "TLSv1.3" and i % 10 == 0:
                client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
            elif client.version == "TLSv1.2" and i % 50 == 25:
                client.renegotiate()
            data = tagged(n, i)
            client.write(data)
            assert server.read(len(data)) == data
            server.write(data[::-1])
            assert client.read(len(data)) == data[::-1]
        counts[n] = (client.stats, server.stats)
        client.close()
        server.close()

    threads = Threads()
    for n in range(16):
        threads.start(worker, n)
    threads.join()
    assert len(counts) == 16
    for n, (cs, ss) in counts.items():
        if n % 2:
            assert cs["key_updates_sent"] == ss["key_updates_received"] == 15
            assert ss["key_updates_sent"] == cs["key_updates_received"] == 15
        else:
            assert cs["renegotiations"] == ss["renegotiations"] == 3


def test_many_socket_links_each_end_in_its_own_thread(test_cert):
    """Eight TCP-like links, each end driven by its own thread: the GIL is released
    while one thread waits in OpenSSL, so all sixteen progress together."""
    totals = {}

    def client_side(n, sock):
        conn = tlsrekey.Context.client(test_cert[0]).wrap(sock, server_hostname="localhost")
        conn.do_handshake()
        for i in range(100):
            if i % 20 == 0:
                conn.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
            data = tagged(n, i)
            conn.write(data)
            got = b""
            while len(got) < len(data):
                got += conn.read(len(data) - len(got))
            assert got == data
        conn.shutdown()
        totals[n] = conn.stats

    def server_side(sock):
        conn = tlsrekey.Context.server(*test_cert).wrap(sock)
        conn.do_handshake()
        while True:
            data = conn.read()
            if not data:
                break
            conn.write(data)                  # echo, carrying any owed update
        conn.shutdown()

    threads = Threads()
    socks = []
    try:
        for n in range(8):
            a, b = socket.socketpair()
            a.settimeout(TIMEOUT)
            b.settimeout(TIMEOUT)
            socks += [a, b]
            threads.start(client_side, n, a)
            threads.start(server_side, b)
        threads.join()
    finally:
        for s in socks:
            s.close()
    assert len(totals) == 8
    for st in totals.values():
        assert st["key_updates_sent"] == 5
        assert st["key_updates_received"] == 5       # every request was answered


# -- one connection, several threads ---------------------------------------------------

def test_one_connection_hammered_by_writers_while_a_thread_reads():
    """Four threads write to the same client end; one thread reads the server end.
    Each write is whole (calls are serialised), so every tagged chunk arrives intact
    and each thread's chunks arrive in that thread's order."""
    client, server = tlsrekey.pair()
    writers, per_writer = 4, 250
    expected = sum(len(tagged(t, i)) for t in range(writers) for i in range(per_writer))
    received = bytearray()
    done = threading.Event()

    def writer(t):
        for i in range(per_writer):
            data = tagged(t, i)
            assert client.write(data) == len(data)
            if i % 25 == 0:
                try:
                    client.key_update()
                except tlsrekey.StateError as exc:   # another thread's is scheduled
                    assert exc.reason == "key update already scheduled"

    def reader():
        deadline = time.monotonic() + JOIN
        while len(received) < expected and time.monotonic() < deadline:
            try:
                received.extend(server.read())
            except tlsrekey.WantReadError:
                time.sleep(0.0005)
        done.set()

    threads = Threads()
    threads.start(reader)
    for t in range(writers):
        threads.start(writer, t)
    threads.join()
    assert done.is_set() and len(received) == expected
    chunks = bytes(received).split(b">")[:-1]
    assert len(chunks) == writers * per_writer
    last = {}
    for c in chunks:
        t, i = int(c[1:4]), int(c[5:10])
        assert c + b">" == tagged(t, i), "a chunk was cut or mixed with another"
        assert i == last.get(t, -1) + 1, "a thread's chunks arrived out of order"
        last[t] = i
    assert server.stats["key_updates_received"] == client.stats["key_updates_sent"] >= 1


def test_questions_from_other_threads_while_one_thread_does_io():
    client, server = tlsrekey.pair()
    stop = threading.Event()
    seen = {"repr": 0, "stats": 0}

    def io():
        i = 0
        while not stop.is_set():
            client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
            data = tagged(0, i)
            client.write(data)
            assert server.read(len(data)) == data
            server.write(b"ok")
            assert client.read() == b"ok"
            i += 1

    def ask():
        while not stop.is_set():
            st = client.stats
            assert st["key_updates_sent"] >= st["key_updates_received"] - 1
            assert client.state in ("established",)
            assert "client" in repr(client)
            client.get_key_update_type()
            client.renegotiate_pending()
            client.pending()
            seen["repr"] += 1
            seen["stats"] += 1

    threads = Threads()
    threads.start(io)
    for _ in range(3):
        threads.start(ask)
    time.sleep(1.0)
    stop.set()
    threads.join()
    assert seen["stats"] > 10
    assert client.stats["key_updates_sent"] == server.stats["key_updates_received"]


def test_one_socket_connection_shared_by_a_reader_and_writers(test_cert):
    """A blocking socket connection: one thread reads while others write on the
    same connection. A read that waits lets the connection go, so every writer gets
    through while it waits, and every echoed message reaches the reader."""
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    try:
        client = tlsrekey.Context.client(test_cert[0]).wrap(a, server_hostname="localhost")
        server = tlsrekey.Context.server(*test_cert).wrap(b)
        threads = Threads()
        threads.start(server.do_handshake)
        client.do_handshake()
        threads.join()
        total = 3 * 40
        echoed = bytearray()

        def echo_server():
            got = 0
            while got < total:
                data = server.read()
                got += data.count(b">")
                server.write(data)

        def writer(t):
            for i in range(40):
                client.write(tagged(t, i))

        def reader():
            while echoed.count(b">") < total:
                echoed.extend(client.read())

        threads = Threads()
        threads.start(echo_server)
        threads.start(reader)
        for t in range(3):
            threads.start(writer, t)
        threads.join()
        chunks = bytes(echoed).split(b">")[:-1]
        assert sorted(chunks) == sorted(tagged(t, i)[:-1] for t in range(3) for i in range(40))
    finally:
        a.close()
        b.close()


def test_close_from_another_thread_while_writing():
    """One thread writes in a loop; another closes the connection under it. The
    writer sees StateError (closed) or, for the pair, SyscallError; never a crash."""
    for _ in range(20):
        client, server = tlsrekey.pair()
        errors = []
        started = threading.Event()

        def write_loop():
            started.set()
            try:
                for i in range(100000):
                    client.write(b"x" * 100)
                    server.read()
            except (tlsrekey.StateError, tlsrekey.SyscallError) as exc:
                errors.append(exc)

        threads = Threads()
        threads.start(write_loop)
        started.wait(TIMEOUT)
        time.sleep(0.002)
        client.close()
        threads.join()
        assert errors, "the writer never noticed the close"
        assert client.state == "released"
        server.close()


def test_threads_creating_and_dropping_connections_in_any_order():
    def worker(n):
        for i in range(40):
            client, server = tlsrekey.pair()
            ctx = client.context
            client.write(b"hello")
            assert server.read() == b"hello"
            if (n + i) % 3 == 0:
                del ctx
                client.close()
            elif (n + i) % 3 == 1:
                del server                      # the other end goes first
                with pytest.raises((tlsrekey.SyscallError, tlsrekey.StateError)):
                    client.write(b"x")
                    client.read()
            del client

    threads = Threads()
    for n in range(8):
        threads.start(worker, n)
    threads.join()


def test_one_end_freed_while_another_thread_waits_for_the_other():
    """The last reference to one end of a pair goes in a thread that just used it,
    while another thread waits for the pair's lock on the other end: the waiter gets
    the lock, then finds data or its peer gone (a documented error), and the freed
    end is never touched again (the sanitizer and valgrind runs would see it)."""
    for _ in range(30):
        client, server = tlsrekey.pair()
        holder = [client]
        del client
        inside = threading.Event()

        def owner():
            c = holder.pop()
            inside.set()
            c.write(b"x" * 200000)      # long enough to release the GIL, lock held
            del c                        # the last reference, lock maybe handed over

        def waiter():
            inside.wait(TIMEOUT)
            for _ in range(40):
                try:
                    server.read()
                except (tlsrekey.WantReadError, tlsrekey.SyscallError,
                        tlsrekey.StateError):
                    pass

        threads = Threads()
        threads.start(owner)
        threads.start(waiter)
        threads.join()
        server.close()


def test_a_small_write_waiting_on_a_full_socket_lets_other_threads_run(test_cert):
    """Small writes on a blocking socket first go without waiting, the GIL kept;
    one that would wait (the peer reads nothing, the socket is full) must give the
    GIL up while it waits, and finish once the peer reads: every byte arrives."""
    link = socket_link(*test_cert)
    try:
        link.client.settimeout(None)
        message = b"m" * 1000
        sent = []
        waiting = threading.Event()

        def writer():
            for _ in range(100000):
                waiting.set()          # the main thread may see it before each write
                link.client.write(message)
                sent.append(len(message))
                waiting.clear()

        threads = Threads()
        threads.start(writer)
        # The writer fills the socket, then waits in write(). This thread runs
        # meanwhile: the GIL is free. Wait until no write has finished for a while.
        last, still = -1, 0
        deadline = time.monotonic() + TIMEOUT
        while still < 20:
            assert time.monotonic() < deadline, "the writer never filled the socket"
            time.sleep(0.01)
            still = still + 1 if len(sent) == last else 0
            last = len(sent)
        assert waiting.is_set() and len(sent) > 10
        # Now read everything on the server; the writer finishes its loop.
        got = 0
        link.server.settimeout(TIMEOUT)
        while got < 100000 * len(message):
            got += len(link.server.read(65536))
        threads.join()
        assert sum(sent) == got == 100000 * len(message)
    finally:
        link.close()


# -- threads sharing contexts -------------------------------------------------------

def test_threads_sharing_contexts_create_use_and_free_connections(test_cert):
    """Eight threads make pairs from the same two contexts, use them and drop them:
    every pair takes a reference on each context (with the GIL released), every
    drop gives it back. The count must stay exact, or a context is freed under a
    connection still using it."""
    cert, key = test_cert
    server_ctx = tlsrekey.Context.server(cert, key, alpn=["h2", "http/1.1"])
    client_ctx = tlsrekey.Context.client(cert, alpn=["http/1.1"])

    def worker(n):
        for i in range(150):
            client, server = tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx)
            assert client.alpn == "http/1.1"
            if i % 5 == 0:
                client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
            data = tagged(n, i)
            client.write(data)
            assert server.read(len(data)) == data
            if i % 2:
                client.close()
            del client, server

    threads = Threads()
    for n in range(8):
        threads.start(worker, n)
    threads.join()
    # both contexts are still whole
    client, server = tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx)
    client.write(b"after")
    assert server.read() == b"after"


def test_a_context_setter_racing_handshakes_on_other_threads(test_cert, tmp_path):
    """The ALPN list and the key log, read by OpenSSL's callbacks during handshakes,
    are replaced from another thread meanwhile."""
    cert, key = test_cert
    server_ctx = tlsrekey.Context.server(cert, key, alpn=["a", "b"])
    client_ctx = tlsrekey.Context.client(cert, alpn=["b"])
    stop = threading.Event()

    def setter():
        i = 0
        while not stop.is_set():
            # the setters the keyword arguments use (and the ssl facade will)
            server_ctx._set_alpn(["b", "x%d" % i] if i % 2 else ["a", "b"])
            server_ctx._set_keylog(str(tmp_path / ("k%d.log" % (i % 3))))
            i += 1

    def worker(n):
        for _ in range(100):
            client, server = tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx)
            assert client.alpn == "b"
            del client, server

    threads = Threads()
    threads.start(setter)
    for n in range(4):
        threads.start(worker, n)
    try:
        for t in threads.threads[1:]:
            t.join(JOIN)
    finally:
        stop.set()
    threads.join()


# -- fork ---------------------------------------------------------------------------

def test_a_connection_in_use_by_another_thread_at_fork_is_refused_in_the_child(
        test_cert):
    """The child of fork() has only the forking thread. A connection another thread
    was using (a write waiting for room) is refused there at once, even for .state,
    with an error that says why; other connections, and new ones, work."""
    link = socket_link(*test_cert)
    client, server = link.client, link.server
    idle, idle_peer = tlsrekey.pair()
    client.settimeout(TIMEOUT)
    # A write waiting on a full socket holds the connection (a waiting read does not)
    big = b"w" * (4 << 20)
    writer = threading.Thread(target=client.write, args=(big,))
    writer.start()
    time.sleep(0.2)                         # the writer holds the connection
    pid = os.fork()
    if pid == 0:                            # the child: report by exit status
        code = 1
        try:
            try:
                client.state
            except tlsrekey.StateError as exc:
                if "fork" in str(exc):
                    idle.write(b"x")
                    if idle_peer.read() == b"x":
                        c, s = tlsrekey.pair()
                        c.write(b"y")
                        code = 0 if s.read() == b"y" else 4
                    else:
                        code = 3
            else:
                code = 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the child hung on a connection held at fork")
        time.sleep(0.05)
    got = 0
    while got < len(big):
        got += len(server.read(1 << 20))
    writer.join(TIMEOUT)
    link.close()
    assert got == len(big)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


# -- full duplex: a read waiting on its socket does not hold the connection --------

PROMPT = 2.0   # seconds a call may take while another thread's read waits


class WaitingRead:
    """A thread blocked in conn.read(), its result or exception kept."""

    def __init__(self, conn, n=16384):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(conn, n), daemon=True)
        self.thread.start()
        time.sleep(0.2)                     # it is waiting by now
        assert self.thread.is_alive(), "the read did not wait"

    def _run(self, conn, n):
        try:
            self.result = conn.read(n)
        except BaseException as exc:  # noqa: BLE001 - looked at by the test
            self.error = exc

    def join(self, timeout=TIMEOUT):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the read never returned"
        return self.result


def prompt(fn, *args):
    """Runs fn in a thread; its result, or a failure if it waits PROMPT seconds
    (it would wait for the reader: the connection was held)."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    t.join(PROMPT)
    assert not t.is_alive(), "%s waited for the reading thread" % fn.__name__
    assert out, "%s failed" % fn.__name__
    return out[0]


@pytest.mark.parametrize("timeout", [TIMEOUT, None], ids=["timeout", "blocking"])
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_a_waiting_read_lets_another_thread_write(test_cert, version, timeout):
    """The ssl.SSLSocket pattern: one thread waits in read() while another writes;
    the write goes out at once and the peer's answer reaches the reader. Also on a
    blocking socket without a timeout, where a read must not wait in the kernel
    with the connection held."""
    link = socket_link(*test_cert, max_version=version)
    client, server = link.client, link.server
    try:
        link.socks[0].settimeout(timeout)
        client.settimeout(timeout)
        reader = WaitingRead(client)
        assert prompt(client.write, b"ping") == 4
        assert server.read() == b"ping"
        server.write(b"pong")
        assert reader.join() == b"pong"
        assert reader.error is None
    finally:
        # a reader still waiting (the failure) ends when its socket does
        link.socks[0].shutdown(socket.SHUT_RDWR)
        link.close()


def test_questions_and_a_key_update_while_a_read_waits(test_cert):
    """stats, state, fileno, version, pending and key_update() answer at once while
    another thread's read waits; the update goes out, and the read then gets data."""
    link = socket_link(*test_cert, max_version="TLSv1.3")
    client, server = link.client, link.server
    try:
        client.settimeout(TIMEOUT)   # bounds the test if the reader holds on
        reader = WaitingRead(client)
        assert prompt(lambda: client.state) == "established"
        assert prompt(client.fileno) == link.socks[0].fileno()
        assert prompt(lambda: client.version) == "TLSv1.3"
        assert prompt(client.pending) == 0
        before = prompt(lambda: client.stats)["key_updates_sent"]
        prompt(client.key_update, tlsrekey.KEY_UPDATE_REQUESTED)
        prompt(client.write, b"after the update")
        assert server.read() == b"after the update"
        assert server.stats["key_updates_received"] == 1
        server.write(b"answer")                 # sealed with the server's new keys
        assert reader.join() == b"answer"
        assert client.stats["key_updates_sent"] == before + 1
        assert client.stats["key_updates_received"] == 1
    finally:
        link.close()


def test_close_from_another_thread_ends_a_waiting_read(test_cert):
    """close() from another thread ends a read waiting for data at once, with
    StateError (closed): not a hang, not b"" (which would mean the peer closed)."""
    link = socket_link(*test_cert)
    client = link.client
    try:
        client.settimeout(TIMEOUT)   # bounds the test if the reader holds on
        reader = WaitingRead(client)
        start = time.monotonic()
        prompt(client.close)
        reader.join(PROMPT)
        assert time.monotonic() - start < PROMPT
        assert isinstance(reader.error, tlsrekey.StateError), reader.error
        assert "closed" in str(reader.error)
        assert client.state == "released"
    finally:
        link.close()


def test_a_read_waiting_through_renegotiations_driven_by_another_thread(test_cert):
    """TLS 1.2: one thread reads; another renegotiates and writes. The data the peer
    sends while a renegotiation runs is taken by the writing thread's call (only a
    read may take it) and kept: the waiting reader is woken for it. Every answer
    arrives once and in order."""
    link = socket_link(*test_cert, max_version="TLSv1.2",
                       allow_client_renegotiation=True)
    client, server = link.client, link.server
    rounds = 30
    try:
        client.settimeout(TIMEOUT)

        def echo():
            for _ in range(rounds):
                data = server.read()
                server.write(b"re:" + data)
                server.write(b"|")

        answers = bytearray()

        def read_all():
            want = sum(len(b"re:%03d|" % i) for i in range(rounds))
            while len(answers) < want:
                answers.extend(client.read())

        threads = Threads()
        threads.start(echo)
        threads.start(read_all)
        time.sleep(0.1)
        for i in range(rounds):
            if i % 3 == 0:
                client.renegotiate()
            client.write(b"%03d" % i)
            time.sleep(0.005)
        threads.join()
        assert bytes(answers) == b"".join(b"re:%03d|" % i for i in range(rounds))
        assert client.stats["renegotiations"] >= rounds // 3
    finally:
        link.close()
