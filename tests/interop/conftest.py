"""The interop matrix: tlsrekey (the Python binding) against real TLS peers.

Each test is one case (a column of behaviour: "KU requested, we client", ...) run
against each peer that can play it (tests/interop/peers.py). Certificates are made
once per run with the `openssl` CLI: a CA, an ECDSA and an RSA server certificate for
localhost/127.0.0.1, a client certificate. Every connection is on 127.0.0.1 (our
side connects or listens there; gnutls-serv, which cannot be told an address,
listens on all and is only ever connected to on 127.0.0.1). Every peer is stopped
and every socket closed when its test ends, whatever happened; every wait is bounded.

At the end of the run a table of case x peer -> pass/FAIL is printed.
"""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import tlsrekey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from peers import IO_TIMEOUT, NAMES, Spec, text_data  # noqa: E402

# ---------------------------------------------------------------------------
# The matrix


def matrix(case, *names):
    """Marks a test as the matrix case `case`, run against each peer in `names`
    (default: all of them)."""
    names = names or tuple(NAMES)

    def mark(fn):
        fn = pytest.mark.parametrize("peer", names)(fn)
        return pytest.mark.matrix(case)(fn)
    return mark


_results = {}      # (case, peer) -> "pass" | "FAIL" | "skip" | "xfail" | "XPASS"
_cases = []        # in order of first appearance


def pytest_configure(config):
    config.addinivalue_line("markers", "matrix(case): an interop matrix case")
    config.addinivalue_line("markers", "soak: a long run, for `make soak` only")


# Long runs are left out of make test: collected only with TLSREKEY_INTEROP_SOAK=1
# (mk/soak.mk sets it), and deselected rather than skipped otherwise, so that the
# suite's counts are those of what it is meant to run.
def pytest_collection_modifyitems(config, items):
    if os.environ.get("TLSREKEY_INTEROP_SOAK") == "1":
        return
    soak = [i for i in items if i.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [i for i in items if not i.get_closest_marker("soak")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    mark = item.get_closest_marker("matrix")
    if mark is None or not hasattr(item, "callspec"):
        return
    case, peer = mark.args[0], item.callspec.params.get("peer")
    key = (case, peer)
    if case not in _cases:
        _cases.append(case)
    if report.when == "call" or report.failed or report.skipped:
        if hasattr(report, "wasxfail"):
            state = "xfail" if report.skipped else "XPASS"
        elif report.passed:
            state = "pass"
        elif report.skipped:
            state = "skip"
        else:
            state = "FAIL"
        if _results.get(key) in (None, "pass"):
            _results[key] = state


def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    tr = terminalreporter
    # The classic peers first, in their order, then the others as they appeared.
    order = list(NAMES) + [k[1] for k in _results if k[1] not in NAMES]
    peers_seen = [p for i, p in enumerate(order)
                  if p not in order[:i] and any(k[1] == p for k in _results)]
    width = max(len(c) for c in _cases)
    tr.section("interop matrix (case x peer)")
    tr.write_line("%-*s  %s" % (width, "case", "  ".join("%-10s" % p for p in peers_seen)))
    for case in _cases:
        cells = ["%-10s" % _results.get((case, p), "-") for p in peers_seen]
        tr.write_line("%-*s  %s" % (width, case, "  ".join(cells)))
    total = len(_results)
    passed = sum(1 for v in _results.values() if v == "pass")
    tr.write_line("%d of %d peer x case cells passed (%s); '-': the peer cannot play "
                  "that case" % (passed, total, ", ".join(
                      "%d %s" % (sum(1 for v in _results.values() if v == s), s)
                      for s in ("FAIL", "skip", "xfail", "XPASS")
                      if any(v == s for v in _results.values())) or "no failures"))


# ---------------------------------------------------------------------------
# Certificates


class Certs:
    def __init__(self, d):
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        self.client = (os.path.join(d, "client.pem"), os.path.join(d, "client.key"))

    def server(self, kind):
        return (os.path.join(self.dir, "server-%s.pem" % kind),
                os.path.join(self.dir, "server-%s.key" % kind))


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A CA and the certificates it signs, made with the openssl CLI."""
    d = str(tmp_path_factory.mktemp("interop-certs"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    _openssl("req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "3", "-subj", "/CN=tlsrekey interop CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    leaves = [
        ("server-ecdsa", ec, "/CN=localhost", "serverAuth",
         "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ("server-rsa", ["-newkey", "rsa:2048"], "/CN=localhost", "serverAuth",
         "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ("client", ec, "/CN=interop client", "clientAuth",
         "subjectAltName=DNS:interop-client"),
    ]
    for name, keyargs, subj, eku, san in leaves:
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n%s\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                    % (eku, san))
        _openssl("req", "-new", *keyargs, "-nodes", "-keyout", name + ".key",
                 "-out", name + ".csr", "-subj", subj, cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey",
                 "ca.key", "-CAcreateserial", "-days", "2", "-extfile", ext,
                 "-out", name + ".pem", cwd=d)
    return Certs(d)


# ---------------------------------------------------------------------------
# Sessions: our Connection and a peer


class Concurrent:
    """Runs fn in a thread; result() joins it (bounded) and returns or re-raises."""

    def __init__(self, fn):
        self._out = {}
        self._t = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._t.start()

    def _run(self, fn):
        try:
            self._out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self._out["error"] = exc

    def result(self, timeout=IO_TIMEOUT * 2):
        self._t.join(timeout)
        if self._t.is_alive():
            raise AssertionError("our side did not finish in time")
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]


class Session:
    """Our tlsrekey Connection (handshaken) talking to one peer."""

    def __init__(self, ours, peer, sockets=()):
        self.ours = ours
        self.peer = peer
        self.sockets = list(sockets)
        self.sent = 0          # bytes sent and verified back, for the report
        self._n = 0

    def data(self, size=None):
        self._n += 1
        if self.peer.binary:
            size = size or (1 + (self._n * 7919) % 20000)
            return os.urandom(size)
        return text_data("%d" % self._n, size or (40 + (self._n * 37) % 200))

    def read_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.ours.read(n - len(buf))
            if not chunk:
                raise AssertionError("the peer closed the connection after %d of %d "
                                     "bytes\n%s" % (len(buf), n, self.peer.describe()))
            buf += chunk
        return bytes(buf)

    def roundtrip(self, size=None):
        """We send data; the peer sends the same bytes back; checked byte for byte."""
        data = self.data(size)
        assert self.ours.write(data) == len(data)
        if not self.peer.echoes:
            self.peer.relay(data)
        got = self.read_exact(len(data))
        assert got == data, "the data came back altered"
        self.sent += len(data)
        return data

    def peer_initiated(self, action):
        """The peer starts something (a key update, a renegotiation) while our side
        reads in a thread (some peers block until we answer), then the peer sends
        data, which our read must return intact."""
        data = self.data()
        reader = Concurrent(lambda: self.read_exact(len(data)))
        try:
            action()
            self.peer.send(data)
        except BaseException as exc:
            try:
                reader.result()
            except BaseException as second:  # noqa: BLE001 - the first one matters
                raise exc from second
            raise
        assert reader.result() == data

    def settle(self, done, what, timeout=IO_TIMEOUT):
        """Reads (expecting no application data) until done() is true: lets the
        peer's side of a handshake we started progress before we write again."""
        deadline = time.monotonic() + timeout
        self.ours.settimeout(0.05)
        try:
            while not done():
                if time.monotonic() > deadline:
                    raise AssertionError("waited for %s\n%s" % (what, self.peer.describe()))
                try:
                    data = self.ours.read()
                except tlsrekey.TimeoutError:
                    continue
                assert not data, "unexpected data from the peer: %r" % data[:100]
        finally:
            self.ours.settimeout(IO_TIMEOUT)

    def close(self):
        try:
            try:
                if self.ours.state == "established":
                    self.ours.settimeout(1.0)
                    self.ours.shutdown()
            except (tlsrekey.Error, ValueError):
                pass
            self.ours.close()
            for s in self.sockets:
                s.close()
        finally:
            self.peer.stop()


def our_client_context(certs, spec, **options):
    opts = dict(cafile=certs.ca, min_version="TLSv1.2",
                max_version="TLSv1.3" if spec.version == "1.3" else "TLSv1.2")
    opts.update(options)
    return tlsrekey.Context.client(**opts)


def our_server_context(certs, spec, **options):
    cert, key = spec.server_cert
    opts = dict(min_version="TLSv1.2",
                max_version="TLSv1.3" if spec.version == "1.3" else "TLSv1.2")
    opts.update(options)
    return tlsrekey.Context.server(cert, key, **opts)


class Interop:
    """Starts sessions and stops them all when the test ends."""

    def __init__(self, certs):
        self.certs = certs
        self.sessions = []

    def spec(self, **kw):
        return Spec(self.certs, **kw)

    def as_client(self, peer_name, peer_spec=None, handshake=True, **ours):
        """We are the client; the peer is a server started with peer_spec."""
        spec = peer_spec or self.spec()
        peer = peers.start_server(peer_name, spec)
        try:
            ctx = our_client_context(self.certs, spec, **ours)
            conn = ctx.connect("127.0.0.1", peer.port, server_hostname="localhost",
                               timeout=IO_TIMEOUT)
        except BaseException:
            peer.stop()
            raise
        session = Session(conn, peer)
        self.sessions.append(session)
        if handshake:
            self._handshake(session)
        return session

    def as_server(self, peer_name, peer_spec=None, handshake=True, **ours):
        """We are the server; the peer is a client started with peer_spec."""
        spec = peer_spec or self.spec()
        ctx = our_server_context(self.certs, spec, **ours)
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(IO_TIMEOUT)
            peer = peers.start_client(peer_name, spec, listener.getsockname()[1])
            try:
                sock, _ = listener.accept()
            except BaseException:
                peer.stop()
                raise
        finally:
            listener.close()
        sock.settimeout(IO_TIMEOUT)
        try:
            conn = ctx.wrap(sock)
        except BaseException:
            sock.close()
            peer.stop()
            raise
        session = Session(conn, peer, [sock])
        self.sessions.append(session)
        if handshake:
            self._handshake(session)
        return session

    @staticmethod
    def _handshake(session):
        try:
            session.ours.do_handshake()
        except tlsrekey.Error as exc:
            raise AssertionError("handshake failed: %r\n%s"
                                 % (exc, session.peer.describe())) from exc

    def close(self):
        errors = []
        for s in self.sessions:
            try:
                s.close()
            except Exception as exc:  # noqa: BLE001 - every session is closed first
                errors.append(exc)
        if errors:
            raise errors[0]


class Stopper:
    """Stops every process and closes every socket a test started."""

    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return item

    def close(self):
        for item in reversed(self.items):
            try:
                if isinstance(item, peers.Process):
                    item.stop()
                else:
                    item.close()
            except Exception:  # noqa: BLE001 - the others are still stopped
                pass


@pytest.fixture
def stopper():
    box = Stopper()
    yield box
    box.close()


@pytest.fixture
def interop(certs):
    box = Interop(certs)
    yield box
    box.close()
