"""The real TLS peers of the interop matrix, behind one small interface.

Five independent implementations, each able to play a server (we are the client)
and a client (we are the server):

    openssl     `openssl s_server` / `openssl s_client` (the system OpenSSL 3.0 CLI)
    gnutls      `gnutls-serv --echo` / `gnutls-cli` (GnuTLS 3.7: not OpenSSL at all)
    python-ssl  Python's ssl module, an echo peer in a thread of this process
    pyOpenSSL   pyOpenSSL from the venv (its own OpenSSL, bundled by cryptography),
                an echo peer in a thread that can also start a renegotiation
    LuaSec      LuaSec in a child lua5.4 process (tests/interop/luasec_peer.lua)

Every peer gets back what we send it and lets the test check it byte for byte:
the echo peers send it back themselves; for the interactive command-line peers
(s_server, s_client, gnutls-cli) the harness waits until the data shows up in the
peer's output and types the same bytes into its stdin (`relay`). A peer that can
start a key update or a renegotiation itself has `key_update(requested)` /
`renegotiate()`; `send(data)` makes it send data of its own accord.

Every child process is started with its argv (no shell), its stdout read by a
thread, and killed by pid in stop(); every thread peer is joined with a timeout.
Every wait is bounded (WAIT seconds), so a misbehaving peer fails a test instead of
hanging the run.
"""
import os
import queue
import re
import select
import socket
import ssl
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 8.0          # seconds any wait for a peer may take
IO_TIMEOUT = 8.0    # socket timeout of our connections and of the thread peers

# Environment of child peers: they are not our code, so they run without the
# sanitizer runtime an ASan run may preload into this process.
_PEER_ENV = {k: v for k, v in os.environ.items()
             if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")}

# OpenSSL's SSL_OP_ALLOW_CLIENT_RENEGOTIATION (3.0 and later): neither Python's ssl
# module nor pyOpenSSL names it, both accept the bit.
OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8

# What `openssl ... -msg` prints for the messages the tests count.
MSG_SENT_KU = re.compile(rb">>> TLS 1\.3, Handshake \[length [0-9a-f]+\], KeyUpdate")
MSG_RECV_KU = re.compile(rb"<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], KeyUpdate")
MSG_SENT_HELLO_REQUEST = re.compile(rb">>> TLS 1\.2, Handshake \[length [0-9a-f]+\], HelloRequest")
MSG_RECV_CLIENT_HELLO = re.compile(rb"<<< TLS 1\.\d, Handshake \[length [0-9a-f]+\], ClientHello")
MSG_SENT_CLIENT_HELLO = re.compile(rb">>> TLS 1\.\d, Handshake \[length [0-9a-f]+\], ClientHello")
MSG_SENT_FINISHED = re.compile(rb">>> TLS 1\.2, Handshake \[length [0-9a-f]+\], Finished")
MSG_RECV_FINISHED = re.compile(rb"<<< TLS 1\.2, Handshake \[length [0-9a-f]+\], Finished")
MSG_SENT_CERTIFICATE = re.compile(rb">>> TLS 1\.2, Handshake \[length [0-9a-f]+\], Certificate\b")


class PeerError(AssertionError):
    """The peer did not do what the test needed (with its output attached)."""


def free_port():
    """A free TCP port on 127.0.0.1 (for peers that cannot report the one they got)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_data(tag, n):
    """A line the interactive peers pass through untouched: it starts with 'd' (s_client
    takes a line starting with R, k, K or Q as a command) and is printable."""
    body = os.urandom(n).hex()[: max(1, n - len(tag) - 3)]
    return b"d" + tag.encode() + b"-" + body.encode() + b"\n"


class Spec:
    """What a test asks of a peer; each peer maps it to its own options.

    version "1.2" / "1.3"; cert "ecdsa" / "rsa": the server certificate (whichever
    side serves). allow_client_reneg: a server peer accepts client-initiated
    renegotiation. no_renegotiation: the peer refuses renegotiation (OpenSSL's
    SSL_OP_NO_RENEGOTIATION or the peer's equivalent). require_client_cert: a server
    peer requires and verifies a client certificate; client_cert: a client peer has
    one to present. noticket: no session tickets (TLS 1.2). no_resumption_on_reneg:
    a server peer makes every renegotiation a full handshake (so that it can ask
    for a client certificate in it). extra: options only one peer knows (see
    stacks.py)."""

    def __init__(self, certs, version="1.3", cert="ecdsa", allow_client_reneg=False,
                 no_renegotiation=False, require_client_cert=False, client_cert=False,
                 noticket=False, no_resumption_on_reneg=False, extra=None):
        self.certs = certs
        self.version = version
        self.cert = cert
        self.allow_client_reneg = allow_client_reneg
        self.no_renegotiation = no_renegotiation
        self.require_client_cert = require_client_cert
        self.client_cert = client_cert
        self.noticket = noticket
        self.no_resumption_on_reneg = no_resumption_on_reneg
        self.extra = dict(extra or {})

    @property
    def server_cert(self):
        return self.certs.server(self.cert)


# ---------------------------------------------------------------------------
# Child processes

class Process:
    """A child process whose stdout+stderr a thread collects; waits are bounded."""

    def __init__(self, argv):
        self.argv = argv
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._done = False
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=_PEER_ENV, bufsize=0)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._done = True
                    self._cond.notify_all()
                    return
                self._buf += chunk
                self._cond.notify_all()

    @property
    def output(self):
        with self._cond:
            return bytes(self._buf)

    def text(self, tail=6000):
        return self.output[-tail:].decode("utf-8", "replace")

    def wait(self, predicate, what, timeout=WAIT):
        """Waits until predicate(output) is true; returns its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(bytes(self._buf))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or (self._done and not value):
                    raise PeerError("%s: waited for %s; %s. Output:\n%s"
                                    % (self.argv[0], what,
                                       "it exited" if self._done else "timed out",
                                       self.text()))
                self._cond.wait(left)

    def count(self, pattern):
        return len(re.findall(pattern, self.output))

    def wait_count(self, pattern, n, timeout=WAIT):
        return self.wait(lambda out: len(re.findall(pattern, out)) >= n,
                         "%d x %r" % (n, getattr(pattern, "pattern", pattern)), timeout)

    def write(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise PeerError("%s: cannot write to its stdin (%s). Output:\n%s"
                            % (self.argv[0], exc, self.text())) from exc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()            # by pid: Popen.kill signals self.proc.pid
        try:
            self.proc.wait(timeout=5)
        finally:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self._reader.join(5)


class ProcessPeer:
    """Base of the command-line peers: the harness echoes for them (relay)."""

    echoes = False
    binary = False           # data must be text lines
    name = "?"

    def __init__(self, spec):
        self.spec = spec
        self.proc = None
        self._consumed = 0

    def start(self, argv):
        self.proc = Process(argv)

    def relay(self, data):
        """Waits until `data` has reached the peer (it prints what it receives), then
        makes the peer send the same bytes back."""
        start = self._consumed

        def arrived(out):
            i = out.find(data, start)
            return i + 1 if i >= 0 else 0

        end = self.proc.wait(arrived, "the data we sent to arrive") - 1 + len(data)
        self._consumed = end
        self.send(data)

    def send(self, data):
        self.proc.write(data)

    def command(self, line, evidence, count=None, what=None):
        """Types a command line, then waits for `evidence` (a regex) to appear
        `count` times in total (default: once more than before) before anything else
        is typed: the peers take a command only when it is alone in a read."""
        n = self.proc.count(evidence) + 1 if count is None else count
        self.proc.write(line)
        self.proc.wait_count(evidence, n)

    def key_updates_received(self):
        return None

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def describe(self):
        return self.proc.text() if self.proc else ""


# ---- openssl ----

def _openssl_common(spec):
    args = ["-msg"]
    args.append("-tls1_3" if spec.version == "1.3" else "-tls1_2")
    if spec.no_renegotiation:
        args.append("-no_renegotiation")
    return args


class OpensslServer(ProcessPeer):
    """`openssl s_server`: prints what it receives, sends its stdin; commands k, K
    (key update), r (renegotiate), R (renegotiate asking for a client certificate)."""

    name = "openssl"

    def __init__(self, spec):
        super().__init__(spec)
        cert, key = spec.server_cert
        self.port = free_port()
        argv = ["openssl", "s_server", "-accept", "127.0.0.1:%d" % self.port,
                "-cert", cert, "-key", key, "-naccept", "1", "-CAfile", spec.certs.ca]
        argv += _openssl_common(spec)
        if spec.allow_client_reneg:
            argv.append("-client_renegotiation")
        if spec.noticket:
            argv.append("-no_ticket")
        if spec.no_resumption_on_reneg:
            argv.append("-no_resumption_on_reneg")
        if spec.require_client_cert:
            argv += ["-Verify", "1", "-verify_return_error"]
        self.start(argv)
        self.proc.wait(lambda out: b"ACCEPT" in out, "s_server to listen")

    def key_update(self, requested):
        self.command(b"K\n" if requested else b"k\n", MSG_SENT_KU)

    def renegotiate(self, client_cert=False):
        self.command(b"R\n" if client_cert else b"r\n", MSG_SENT_HELLO_REQUEST)

    def renegotiation_done(self, n_handshakes):
        """Waits until the Finished of `n_handshakes` handshakes went both ways and
        s_server is back in its loop ("Read BLOCK" after the last one): a line typed
        before that is lost now and then."""
        self.proc.wait_count(MSG_SENT_FINISHED, n_handshakes)

        def back_in_loop(out):
            found = list(re.finditer(MSG_RECV_FINISHED, out))
            return (len(found) >= n_handshakes
                    and b"Read BLOCK" in out[found[n_handshakes - 1].end():])
        self.proc.wait(back_in_loop, "renegotiation %d to complete" % (n_handshakes - 1))

    def key_updates_received(self):
        return self.proc.count(MSG_RECV_KU)


class OpensslClient(ProcessPeer):
    """`openssl s_client`: commands k, K (key update, sent with its next I/O) and R
    (renegotiate, started with its next I/O)."""

    name = "openssl"

    def __init__(self, spec, port):
        super().__init__(spec)
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                "-servername", "localhost", "-CAfile", spec.certs.ca,
                "-verify_return_error", "-verify_hostname", "localhost"]
        argv += _openssl_common(spec)
        if spec.client_cert:
            argv += ["-cert", spec.certs.client[0], "-key", spec.certs.client[1]]
        if spec.noticket:
            argv.append("-no_ticket")
        self.start(argv)

    def key_update(self, requested):
        self.command(b"K\n" if requested else b"k\n", re.compile(rb"KEYUPDATE"))

    def renegotiate(self):
        self.command(b"R\n", re.compile(rb"RENEGOTIATING"))

    def key_updates_received(self):
        return self.proc.count(MSG_RECV_KU)


# ---- GnuTLS ----

def _gnutls_priority(spec):
    prio = "NORMAL:-VERS-ALL:" + ("+VERS-TLS1.3" if spec.version == "1.3" else "+VERS-TLS1.2")
    return prio


class GnutlsServer(ProcessPeer):
    """`gnutls-serv --echo`. It cannot start a key update or a renegotiation. It
    listens on every address (it has no option to bind one); we connect to
    127.0.0.1 only."""

    name = "gnutls"
    echoes = True

    def __init__(self, spec):
        super().__init__(spec)
        cert, key = spec.server_cert
        self.port = free_port()
        argv = ["gnutls-serv", "--echo", "--crlf", "-p", str(self.port),
                "--x509certfile", cert, "--x509keyfile", key,
                "--priority", _gnutls_priority(spec)]
        if spec.require_client_cert:
            argv += ["--x509cafile", spec.certs.ca, "--require-client-cert",
                     "--verify-client-cert"]
        else:
            argv.append("--disable-client-cert")
        if spec.noticket:
            # GnuTLS 3.7.9 fails a renegotiation that resumes by session ticket
            # (ASSERT in _gnutls_send_new_session_ticket, "Cannot perform this action
            # while handshake is in progress"): resumption by session ID works.
            argv.append("--noticket")
        self.start(argv)
        self.proc.wait(lambda out: b"listening on IPv4" in out and b"done" in out,
                       "gnutls-serv to listen")

    def relay(self, data):
        raise AssertionError("gnutls-serv echoes by itself")


class GnutlsClient(ProcessPeer):
    """`gnutls-cli --inline-commands`: ^rekey1^ (key update), ^rekey^ (key update
    asking us for ours), ^renegotiate^ (a rehandshake; it blocks until done). It
    follows a server's HelloRequest by itself."""

    name = "gnutls"

    def __init__(self, spec, port):
        super().__init__(spec)
        argv = ["gnutls-cli", "--inline-commands", "--x509cafile", spec.certs.ca,
                "--sni-hostname", "localhost", "--verify-hostname", "localhost",
                "--priority", _gnutls_priority(spec), "-p", str(port), "127.0.0.1"]
        if spec.client_cert:
            argv += ["--x509certfile", spec.certs.client[0],
                     "--x509keyfile", spec.certs.client[1]]
        self.start(argv)

    def key_update(self, requested):
        # Mind the names: in gnutls-cli (src/inline_cmds.h) ^rekey1^ updates only
        # its own keys (not requested) and ^rekey^ asks for ours too (GNUTLS_KU_PEER).
        self.command(b"^rekey^\n" if requested else b"^rekey1^\n",
                     re.compile(rb"Rekey was completed"))

    def renegotiate(self):
        # gnutls-cli performs the whole rehandshake inside the command: our side
        # must be reading meanwhile (Session.peer_initiated does that).
        self.command(b"^renegotiate^\n", re.compile(rb"ReHandshake was completed|"
                                                    rb"ReHandshake has failed"))


# ---- Python's ssl module (a thread) ----

class ThreadPeer:
    """Base of the in-process peers: an echo loop in a thread."""

    echoes = True
    binary = True
    name = "?"

    def __init__(self, spec):
        self.spec = spec
        self.error = None
        self.events = []
        self._stop = threading.Event()
        self._thread = None
        self._listener = None
        self._sock = None

    def _start(self, target):
        self._thread = threading.Thread(target=self._guard, args=(target,), daemon=True)
        self._thread.start()

    def _guard(self, target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()/describe()
            if not self._stop.is_set():
                self.error = exc

    def listen(self):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(IO_TIMEOUT)
        self.port = self._listener.getsockname()[1]

    def accept(self):
        sock, _ = self._listener.accept()
        sock.settimeout(IO_TIMEOUT)
        # no Nagle delay: a KeyUpdate and the data after it are separate small writes
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock

    def connect(self, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        sock.settimeout(IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock

    def key_updates_received(self):
        return None

    def stop(self):
        self._stop.set()
        for s in (self._sock, self._listener):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        if self._thread is not None:
            self._thread.join(IO_TIMEOUT)
            if self._thread.is_alive():
                raise PeerError("%s peer thread did not stop" % self.name)

    def describe(self):
        return "%s peer: error=%r events=%r" % (self.name, self.error, self.events[-20:])


class PySslPeer(ThreadPeer):
    name = "python-ssl"

    def __init__(self, spec, role, port=None):
        super().__init__(spec)
        version = (ssl.TLSVersion.TLSv1_3 if spec.version == "1.3"
                   else ssl.TLSVersion.TLSv1_2)
        if role == "server":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*spec.server_cert)
            if spec.allow_client_reneg:
                ctx.options |= OP_ALLOW_CLIENT_RENEGOTIATION
            if spec.require_client_cert:
                ctx.load_verify_locations(spec.certs.ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(spec.certs.ca)
            if spec.client_cert:
                ctx.load_cert_chain(*spec.certs.client)
        ctx.minimum_version = ctx.maximum_version = version
        if spec.no_renegotiation:
            ctx.options |= ssl.OP_NO_RENEGOTIATION
        self.ctx = ctx
        if role == "server":
            self.listen()
            self._start(self._serve)
        else:
            self._start(lambda: self._client(port))

    def _serve(self):
        sock = self.accept()
        conn = self.ctx.wrap_socket(sock, server_side=True)
        self._echo(conn)

    def _client(self, port):
        sock = self.connect(port)
        conn = self.ctx.wrap_socket(sock, server_hostname="localhost")
        self._echo(conn)

    def _echo(self, conn):
        self.events.append("handshake %s" % conn.version())
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except ssl.SSLZeroReturnError:
                break
            if not data:
                break
            conn.sendall(data)
        self.events.append("end")
        try:
            conn.unwrap()
        except (OSError, ValueError):
            pass


# ---- pyOpenSSL (a thread) ----

class PyOpenSSLPeer(ThreadPeer):
    """An echo peer that can also renegotiate and send on command. pyOpenSSL brings
    its own OpenSSL (the one inside the cryptography wheel), not the system's."""

    name = "pyOpenSSL"

    def __init__(self, spec, role, port=None):
        super().__init__(spec)
        from OpenSSL import SSL
        self.SSL = SSL
        self.commands = queue.Queue()
        self.reneg_started = threading.Event()
        self.reneg_done = threading.Event()
        ctx = SSL.Context(SSL.TLS_METHOD)
        v = SSL.TLS1_3_VERSION if spec.version == "1.3" else SSL.TLS1_2_VERSION
        ctx.set_min_proto_version(v)
        ctx.set_max_proto_version(v)
        opts = 0
        if spec.no_renegotiation:
            opts |= SSL.OP_NO_RENEGOTIATION
        if role == "server":
            ctx.use_certificate_chain_file(spec.server_cert[0])
            ctx.use_privatekey_file(spec.server_cert[1])
            if spec.allow_client_reneg:
                opts |= OP_ALLOW_CLIENT_RENEGOTIATION
            if spec.require_client_cert:
                ctx.load_verify_locations(spec.certs.ca)
                ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        else:
            ctx.load_verify_locations(spec.certs.ca)
            ctx.set_verify(SSL.VERIFY_PEER)
            if spec.client_cert:
                ctx.use_certificate_chain_file(spec.certs.client[0])
                ctx.use_privatekey_file(spec.certs.client[1])
        if opts:
            ctx.set_options(opts)
        self.ctx = ctx
        self.role = role
        if role == "server":
            self.listen()
            self._start(self._serve)
        else:
            self._start(lambda: self._client(port))

    # commands, run by the peer thread between reads
    def renegotiate(self):
        self.reneg_started.clear()
        self.reneg_done.clear()
        self.commands.put(("renegotiate", None))
        if not self.reneg_started.wait(WAIT):
            raise PeerError("pyOpenSSL did not start the renegotiation: " + self.describe())

    def wait_renegotiation_done(self):
        if not self.reneg_done.wait(WAIT):
            raise PeerError("pyOpenSSL's renegotiation did not complete: " + self.describe())

    def send(self, data):
        self.commands.put(("send", data))

    def _serve(self):
        sock = self.accept()
        conn = self.SSL.Connection(self.ctx, sock)
        conn.set_accept_state()
        self._run(conn, sock)

    def _client(self, port):
        sock = self.connect(port)
        conn = self.SSL.Connection(self.ctx, sock)
        conn.set_tlsext_host_name(b"localhost")
        conn.set_connect_state()
        self._run(conn, sock)

    def _retry(self, fn, sock, *args):
        """Runs a pyOpenSSL call on the non-blocking socket until it stops wanting."""
        SSL = self.SSL
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                return fn(*args)
            except SSL.WantReadError:
                want = ([sock], [])
            except SSL.WantWriteError:
                want = ([], [sock])
            if self._stop.is_set() or time.monotonic() > deadline:
                raise PeerError("pyOpenSSL call %s timed out" % fn.__name__)
            select.select(want[0], want[1], [], 0.05)

    def _sendall(self, conn, sock, data):
        view = memoryview(data)
        while view:
            n = self._retry(conn.send, sock, bytes(view[:16384]))
            view = view[n:]

    def _run(self, conn, sock):
        SSL = self.SSL
        sock.setblocking(False)
        self._retry(conn.do_handshake, sock)
        self.events.append("handshake %s" % conn.get_protocol_version_name())
        renegotiating = False
        while not self._stop.is_set():
            try:
                cmd, arg = self.commands.get_nowait()
            except queue.Empty:
                cmd = None
            if cmd == "renegotiate":
                ok = conn.renegotiate()
                self.events.append("renegotiate() -> %r" % ok)
                try:
                    conn.do_handshake()
                except SSL.WantReadError:
                    pass
                renegotiating = True
                self.reneg_started.set()
            elif cmd == "send":
                self._sendall(conn, sock, arg)
            if renegotiating and not conn.renegotiate_pending():
                renegotiating = False
                self.events.append("renegotiation done")
                self.reneg_done.set()
            if conn.pending() == 0:
                r, _, _ = select.select([sock], [], [], 0.02)
                if not r:
                    continue
            try:
                data = conn.recv(65536)
            except SSL.WantReadError:
                continue
            except SSL.ZeroReturnError:
                break
            except SSL.Error as exc:
                self.events.append("recv error %r" % (exc,))
                raise
            if not data:
                break
            self._sendall(conn, sock, data)
        self.events.append("end")
        try:
            conn.shutdown()
        except SSL.Error:
            pass


# ---- LuaSec (a child lua5.4 process) ----

class LuaSecPeer(ProcessPeer):
    """tests/interop/luasec_peer.lua: a LuaSec echo server or client, line by line."""

    name = "LuaSec"
    echoes = True

    def __init__(self, spec, role, port=None):
        super().__init__(spec)
        opts = {
            "role": role,
            "protocol": "tlsv1_3" if spec.version == "1.3" else "tlsv1_2",
            "cafile": spec.certs.ca,
        }
        options = ["all"]
        if spec.allow_client_reneg:
            options.append("allow_client_renegotiation")
        if spec.no_renegotiation:
            options.append("no_renegotiation")
        if spec.noticket:
            options.append("no_ticket")
        opts["options"] = ",".join(options)
        if role == "server":
            opts["certificate"], opts["key"] = spec.server_cert
            opts["verify"] = "peer,fail_if_no_peer_cert" if spec.require_client_cert else "none"
        else:
            opts["port"] = str(port)
            opts["verify"] = "peer"
            if spec.client_cert:
                opts["certificate"], opts["key"] = spec.certs.client
        argv = ["lua5.4", os.path.join(HERE, "luasec_peer.lua")]
        argv += ["%s=%s" % kv for kv in sorted(opts.items())]
        self.start(argv)
        if role == "server":
            port = self.proc.wait(lambda out: re.search(rb"LISTENING (\d+)\n", out),
                                  "the LuaSec server to listen")
            self.port = int(port.group(1))

    def relay(self, data):
        raise AssertionError("the LuaSec peer echoes by itself")


# ---------------------------------------------------------------------------

NAMES = ["openssl", "gnutls", "python-ssl", "pyOpenSSL", "LuaSec"]


def start_server(name, spec):
    """A server peer of that name; .port is where it listens."""
    if name == "openssl":
        return OpensslServer(spec)
    if name == "gnutls":
        return GnutlsServer(spec)
    if name == "python-ssl":
        return PySslPeer(spec, "server")
    if name == "pyOpenSSL":
        return PyOpenSSLPeer(spec, "server")
    if name == "LuaSec":
        return LuaSecPeer(spec, "server")
    import stacks      # the stacks built from source (it imports this module)
    return stacks.start_server(name, spec)


def start_client(name, spec, port):
    """A client peer of that name, connecting to 127.0.0.1:port."""
    if name == "openssl":
        return OpensslClient(spec, port)
    if name == "gnutls":
        return GnutlsClient(spec, port)
    if name == "python-ssl":
        return PySslPeer(spec, "client", port)
    if name == "pyOpenSSL":
        return PyOpenSSLPeer(spec, "client", port)
    if name == "LuaSec":
        return LuaSecPeer(spec, "client", port)
    import stacks
    return stacks.start_client(name, spec, port)
