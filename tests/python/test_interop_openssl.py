"""Interop smoke test against OpenSSL's own peers, on 127.0.0.1 with a free port:
our client against `openssl s_server`, `openssl s_client` against our server; a key
update in each direction (TLS 1.3) and a renegotiation in each direction (TLS 1.2).

The peers are driven through their stdin with their single-letter commands (k/K key
update, r/R renegotiate) and observed through `-msg`, which prints every message they
send (">>>") and receive ("<<<"), so the KeyUpdates and handshakes are counted from
the peer's side too. Every process is killed by its pid when the test ends.
"""
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

import tlsrekey

from conftest import TIMEOUT, Concurrent

OPENSSL = shutil.which("openssl")
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(OPENSSL is None, reason="the openssl command line tool is not "
                       "installed (Debian package openssl)"),
]


class Peer:
    """An openssl s_server/s_client process: send it lines, wait for its output."""

    def __init__(self, args):
        self.args = [OPENSSL] + args
        self.lines = []
        self._cond = threading.Condition()
        # openssl is not ours to sanitize: no preloaded ASan runtime, no leak check.
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS",
                            "UBSAN_OPTIONS")}
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append(None)            # EOF marker
            self._cond.notify_all()

    def output(self):
        with self._cond:
            return "\n".join(line for line in self.lines if line is not None)

    def count(self, pattern):
        rx = re.compile(pattern)
        with self._cond:
            return sum(1 for line in self.lines if line is not None and rx.search(line))

    def wait_for(self, pattern, count=1, timeout=TIMEOUT):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = sum(1 for line in self.lines
                            if line is not None and rx.search(line))
                if found >= count:
                    return
                if None in self.lines:
                    raise AssertionError("openssl exited before printing %r:\n%s" %
                                         (pattern, self.output()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("openssl did not print %r within %ss:\n%s" %
                                         (pattern, timeout, self.output()))
                self._cond.wait(left)

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        self.proc.stdin.close()
        self._reader.join(TIMEOUT)


def received(kind):
    """-msg lines of messages the openssl peer received, e.g. KeyUpdate."""
    return r"^<<< .*, %s$" % kind


def sent(kind):
    return r"^>>> .*, %s$" % kind


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_exactly(conn, data):
    got = b""
    while len(got) < len(data):
        chunk = conn.read()
        assert chunk, "connection closed early"
        got += chunk
    assert got == data


@pytest.fixture
def cert_paths(cert_files):
    return str(cert_files / "cert.pem"), str(cert_files / "key.pem")


@pytest.fixture
def peers():
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


# -- our client against s_server ---------------------------------------------------

@pytest.fixture
def s_server(peers, cert_paths):
    """s_server(*extra_args) -> (peer, connected and handshaken client Connection)."""
    conns = []

    def start(*extra, max_version=None):
        for _ in range(3):            # the free port may be taken in between: retry
            port = free_port()
            peer = peers(["s_server", "-accept", "127.0.0.1:%d" % port,
                          "-cert", cert_paths[0], "-key", cert_paths[1], "-msg",
                          *extra])
            try:
                peer.wait_for(r"^ACCEPT$")
                break
            except AssertionError:
                if "ddress already in use" not in peer.output():
                    raise
        ctx = tlsrekey.Context.client(cert_paths[0], max_version=max_version)
        conn = ctx.connect("127.0.0.1", port, server_hostname="localhost",
                           timeout=TIMEOUT)
        conns.append(conn)
        conn.do_handshake()
        peer.wait_for(r"^CIPHER is ")
        return peer, conn

    yield start
    for conn in conns:
        conn.close()


def test_our_client_key_update_to_s_server(s_server):
    peer, client = s_server()
    assert client.version == "TLSv1.3"
    client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    client.write(b"hello\n")
    peer.wait_for(r"^hello$")
    peer.wait_for(received("KeyUpdate"))   # -msg lines may trail the data
    assert peer.count(received("KeyUpdate")) == 1
    # s_server owes a reply: it goes out with its next write.
    peer.send("reply")
    read_exactly(client, b"reply\n")
    peer.wait_for(sent("KeyUpdate"))   # -msg lines may trail the data
    assert peer.count(sent("KeyUpdate")) == 1
    assert client.stats["key_updates_sent"] == 1
    assert client.stats["key_update_requests_sent"] == 1
    assert client.stats["key_updates_received"] == 1


@pytest.mark.parametrize("command", ["k", "K"])
def test_s_server_key_update_to_our_client(s_server, command):
    peer, client = s_server()
    peer.send(command)
    # (s_server's own "SSL_do_handshake -> 1" is stdio, unflushed on a pipe: its
    # -msg line shows the KeyUpdate left.)
    peer.wait_for(sent("KeyUpdate"))
    peer.send("data")
    read_exactly(client, b"data\n")
    assert client.stats["key_updates_received"] == 1
    requested = command == "K"
    assert client.stats["key_update_requests_received"] == int(requested)
    if requested:
        # We owe the reply until our next write.
        assert client.get_key_update_type() is tlsrekey.KeyUpdateType.NOT_REQUESTED
        client.write(b"")
        peer.wait_for(received("KeyUpdate"))
        assert client.stats["key_updates_sent"] == 1
    else:
        assert client.get_key_update_type() is tlsrekey.KeyUpdateType.NONE


@pytest.mark.parametrize("method", ["renegotiate", "renegotiate_abbreviated"])
def test_our_client_renegotiates_with_s_server(s_server, method):
    peer, client = s_server("-client_renegotiation", max_version="TLSv1.2")
    assert client.version == "TLSv1.2"
    getattr(client, method)()
    client.write(b"ping\n")
    peer.wait_for(r"^ping$")
    assert peer.count(received("ClientHello")) == 2
    assert client.stats["renegotiations"] == 1
    assert client.session_reused is (method == "renegotiate_abbreviated")
    peer.send("pong")
    read_exactly(client, b"pong\n")


def test_s_server_refuses_our_client_renegotiation_by_default(s_server):
    peer, client = s_server(max_version="TLSv1.2")
    client.renegotiate()
    with pytest.raises(tlsrekey.ProtocolError) as info:
        client.write(b"ping\n")
    assert info.value.reason == "no renegotiation"


def test_s_server_renegotiates_our_client(s_server):
    peer, client = s_server(max_version="TLSv1.2")
    peer.send("r")
    peer.wait_for(sent("HelloRequest"))
    peer.send("data")
    # The client answers the HelloRequest inside its ordinary read; s_server's data
    # may overtake the new handshake, which the next write then completes.
    read_exactly(client, b"data\n")
    client.write(b"after\n")
    peer.wait_for(r"^after$")
    peer.wait_for(sent("HelloRequest"))   # -msg lines may trail the data
    assert peer.count(sent("HelloRequest")) == 1
    assert peer.count(received("ClientHello")) == 2
    assert client.stats["hello_requests_received"] == 1
    assert client.stats["renegotiations"] == 1
    assert client.renegotiate_pending() is False


# -- s_client against our server ---------------------------------------------------

@pytest.fixture
def s_client(peers, cert_paths):
    """s_client(**server_options) -> (peer, handshaken server Connection)."""
    cleanup = []

    def start(**options):
        lsock = socket.socket()
        cleanup.append(lsock)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        lsock.settimeout(TIMEOUT)
        port = lsock.getsockname()[1]
        ctx = tlsrekey.Context.server(*cert_paths, **options)
        # -nbio: a blocking s_client stays inside SSL_read after a renegotiation
        # until application data arrives, and stops reading its stdin meanwhile.
        peer = peers(["s_client", "-connect", "127.0.0.1:%d" % port,
                      "-servername", "localhost", "-CAfile", cert_paths[0], "-msg",
                      "-nbio"])
        sock, _ = lsock.accept()
        cleanup.append(sock)
        sock.settimeout(TIMEOUT)
        conn = ctx.wrap(sock)
        cleanup.append(conn)
        conn.do_handshake()
        peer.wait_for(r"Verify return code: 0 \(ok\)")
        return peer, conn

    yield start
    for obj in reversed(cleanup):
        obj.close()


def test_our_server_key_update_to_s_client(s_client):
    peer, server = s_client()
    assert server.version == "TLSv1.3"
    server.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    server.write(b"hello\n")
    peer.wait_for(r"^hello$")
    peer.wait_for(received("KeyUpdate"))   # -msg lines may trail the data
    assert peer.count(received("KeyUpdate")) == 1
    peer.send("reply")                       # s_client's reply rides on its write
    read_exactly(server, b"reply\n")
    peer.wait_for(sent("KeyUpdate"))
    assert server.stats["key_updates_received"] == 1


@pytest.mark.parametrize("command", ["k", "K"])
def test_s_client_key_update_to_our_server(s_client, command):
    peer, server = s_client()
    peer.send(command)
    peer.wait_for(r"^KEYUPDATE$")
    peer.send("data")
    read_exactly(server, b"data\n")
    peer.wait_for(sent("KeyUpdate"))   # -msg lines may trail the data
    assert peer.count(sent("KeyUpdate")) == 1
    assert server.stats["key_updates_received"] == 1
    requested = command == "K"
    assert server.stats["key_update_requests_received"] == int(requested)
    if requested:
        server.write(b"")                     # the owed reply
        peer.wait_for(received("KeyUpdate"))
        assert server.stats["key_updates_sent"] == 1


def test_our_server_renegotiates_s_client(s_client):
    peer, server = s_client(max_version="TLSv1.2")
    assert server.version == "TLSv1.2"
    server.renegotiate()
    server.write(b"hello\n")
    reader = Concurrent(lambda: read_exactly(server, b"ping\n"))
    peer.wait_for(r"^hello$")
    peer.wait_for(sent("ClientHello"), count=2)   # s_client answered the request
    # s_client 3.5 drops a line typed while its renegotiation is under way (3.0 sent
    # it afterwards): type it once the new handshake is done.
    peer.wait_for(received("Finished"), count=2)
    peer.send("ping")
    reader.result()
    peer.wait_for(received("HelloRequest"))   # -msg lines may trail the data
    assert peer.count(received("HelloRequest")) == 1
    assert server.stats["hello_requests_sent"] == 1
    assert server.stats["renegotiations"] == 1


def test_s_client_renegotiates_our_server(s_client):
    peer, server = s_client(max_version="TLSv1.2", allow_client_renegotiation=True)
    reader = Concurrent(lambda: read_exactly(server, b"ping\n"))
    peer.send("R")
    peer.wait_for(r"^RENEGOTIATING$")
    peer.wait_for(sent("ClientHello"), count=2)
    peer.wait_for(received("Finished"), count=2)
    peer.send("ping")
    reader.result()
    assert server.stats["renegotiations"] == 1


def test_our_server_refuses_s_client_renegotiation_by_default(s_client):
    peer, server = s_client(max_version="TLSv1.2")
    reader = Concurrent(lambda: pytest.raises(tlsrekey.ProtocolError, server.read))
    peer.send("R")
    peer.wait_for(r"^RENEGOTIATING$")
    info = reader.result()
    # Our server refused with a warning no_renegotiation alert, which s_client
    # (an OpenSSL client) turned into a fatal handshake failure.
    peer.wait_for(r"^<<< .*, warning no_renegotiation$")
    assert info.value.alert == 40                  # handshake_failure, from s_client
    assert server.stats["alerts_sent"] == 1 and server.stats["alerts_received"] == 1
    assert server.stats["renegotiations"] == 0
