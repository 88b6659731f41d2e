"""Fixtures for the tlsrekey tests: certificates made at test time, and handshaken
client/server links over the two kinds of transport the seed statements are checked
on: the in-memory pair (tlsrekey.pair) and a real socket pair (socket.socketpair,
one end driven from a helper thread whenever both ends must move at once).

Everything runs on loopback or in memory; every socket and thread started here is
closed or joined when the test ends.
"""
import select
import socket
import threading

import pytest

import tlsrekey

# Bounds every blocking socket call, so that a broken test fails instead of hanging.
TIMEOUT = 10.0

# Options of tlsrekey.pair() that belong to one end only (the rest go to both).
_SERVER_ONLY = {"allow_client_renegotiation", "verify_client", "num_tickets",
                "session_cache"}
_CLIENT_ONLY = {"verify", "check_hostname", "capath"}


def catch(fn, *args, **kwargs):
    """A callable that returns fn's exception instead of raising it."""
    def run():
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            return exc
    return run


class Concurrent:
    """Runs fn in a thread; result() joins it and returns or re-raises."""

    def __init__(self, fn):
        self._outcome = {}
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn):
        try:
            self._outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in result()
            self._outcome["error"] = exc

    def result(self, timeout=TIMEOUT * 2):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("the helper thread did not finish")
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


class Link:
    """A handshaken client and server over one transport.

    kind is "pair" (tlsrekey.pair) or "socket" (socket.socketpair). both(main,
    other) performs two operations that may each need the other end to move: on a
    pair the core moves the other end itself, so they run one after the other; over
    sockets `other` runs in a thread while `main` runs here.
    """

    def __init__(self, kind, client, server, socks=()):
        self.kind = kind
        self.client = client
        self.server = server
        self.socks = socks

    def both(self, main, other):
        if self.kind == "pair":
            return main(), other()
        peer = Concurrent(other)
        try:
            first = main()
        finally:
            second_error = None
            try:
                second = peer.result()
            except BaseException as exc:  # noqa: BLE001
                second_error = exc
        if second_error is not None:
            raise second_error
        return first, second

    def server_nonblocking_read(self):
        """Read what has reached the server without waiting for application data:
        returns the data, or b"" after WantReadError (the messages before it, such
        as a KeyUpdate, have been processed and counted)."""
        if self.kind == "socket":
            self.server.settimeout(0)
        try:
            return self.server.read()
        except tlsrekey.WantReadError:
            return b""
        finally:
            if self.kind == "socket":
                self.server.settimeout(TIMEOUT)

    def close(self):
        for conn in (self.client, self.server):
            conn.close()
        for s in self.socks:
            s.close()


def split_options(options):
    server = {k: v for k, v in options.items() if k not in _CLIENT_ONLY}
    client = {k: v for k, v in options.items() if k not in _SERVER_ONLY}
    return client, server


def socket_link(cert, key, **options):
    """A client and a server Connection over socket.socketpair(), handshaken."""
    client_opts, server_opts = split_options(options)
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    try:
        server_ctx = tlsrekey.Context.server(cert, key, **server_opts)
        client_ctx = tlsrekey.Context.client(cert, **client_opts)
        client = client_ctx.wrap(a, server_hostname="localhost")
        server = server_ctx.wrap(b)
    except BaseException:
        a.close()
        b.close()
        raise
    link = Link("socket", client, server, (a, b))
    try:
        link.both(client.do_handshake, server.do_handshake)
    except BaseException:
        link.close()
        raise
    return link


@pytest.fixture(scope="session")
def test_cert():
    """(cert_pem, key_pem) of a throwaway certificate for "localhost"."""
    return tlsrekey.make_test_cert()


@pytest.fixture(scope="session")
def other_cert():
    """A second, unrelated certificate: nobody trusts it."""
    return tlsrekey.make_test_cert("localhost")


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory, test_cert):
    """The test certificate as files: cert.pem, key.pem and both in combined.pem."""
    cert, key = test_cert
    d = tmp_path_factory.mktemp("certs")
    (d / "cert.pem").write_bytes(cert)
    (d / "key.pem").write_bytes(key)
    (d / "combined.pem").write_bytes(cert + key)
    return d


@pytest.fixture(params=["pair", "socket"])
def make_link(request, test_cert):
    """make_link(**pair_options) -> Link over the parametrized transport."""
    links = []

    def make(**options):
        if request.param == "pair":
            client, server = tlsrekey.pair(cert=test_cert[0], key=test_cert[1], **options)
            link = Link("pair", client, server)
        else:
            link = socket_link(*test_cert, **options)
        links.append(link)
        return link

    yield make
    for link in links:
        link.close()


@pytest.fixture
def socket_pair_factory(test_cert):
    """socket_pair_factory(**options) -> Link over sockets only."""
    links = []

    def make(**options):
        link = socket_link(*test_cert, **options)
        links.append(link)
        return link

    yield make
    for link in links:
        link.close()


def shuttle(a, b, rounds=50):
    """Move bytes between two memory-transport connections until neither has
    output left."""
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.drain()
            if data:
                dst.feed(data)
                moved = True
        if not moved:
            return
    raise AssertionError("memory transports kept producing output")


def handshake_both(client, server, between, rounds=20):
    """Drive two non-blocking connections through their handshake, both in turn;
    between() runs after each step (moves the bytes, or waits for them)."""
    for _ in range(rounds):
        done = 0
        for conn in (client, server):
            try:
                conn.do_handshake()
                done += 1
            except (tlsrekey.WantReadError, tlsrekey.WantWriteError):
                pass
            between()
        if done == 2:
            return
    raise AssertionError(f"handshake did not complete in {rounds} rounds")


def memory_handshake(client, server):
    """Drive two memory-transport connections through their handshake."""
    handshake_both(client, server, lambda: shuttle(client, server))


def wait_readable(sock, timeout=TIMEOUT):
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)
