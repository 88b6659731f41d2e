"""python -m tlsrekey, end to end through a pseudo-terminal (pexpect): the console as
a client against `openssl s_server`, and `openssl s_client` against the console's
`serve`. Each command (k, K, R, r, :askcert) is checked on both ends: the console
prints the event from its callback, and the OpenSSL peer's -msg trace shows the
message on the wire.

Loopback only, free ports, and every process started here is killed in a finally.
"""
import io
import os
import re
import socket
import sys
import time

import pytest

import tlsrekey

pexpect = pytest.importorskip("pexpect")

TIMEOUT = 10
PYTHONPATH = os.path.dirname(os.path.dirname(os.path.abspath(tlsrekey.__file__)))

# The peer's -msg trace: one line per handshake message, ">>>" sent, "<<<" received.
KU_SENT = re.compile(r">>> TLS 1\.3, Handshake \[length 0005\], KeyUpdate")
KU_RECEIVED = re.compile(r"<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate")
# (the first ClientHello is traced as "TLS 1.3": the version it offers)
CLIENT_HELLO_RECEIVED = re.compile(r"<<< TLS 1\.\d, Handshake \[length [0-9a-f]+\], "
                                   r"ClientHello")


def peer_env():
    """The environment of an OpenSSL peer: not our code, so none of the sanitizer
    runtime the ASan suite preloads into us (its exit-time leaks are not ours)."""
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
        env.pop(k, None)
    return env


def console_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHONPATH
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A pexpect child. Two ways to look at its output, not to be mixed on one child:
    expect() matches in order (the console's lines), wait()/count() search all the
    output so far (a peer's -msg trace, where only the number of lines matters)."""

    def __init__(self, argv, env):
        self.log = io.StringIO()
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8",
                                   codec_errors="replace", timeout=TIMEOUT)
        self.child.logfile_read = self.log

    def expect(self, pattern, timeout=TIMEOUT):
        try:
            self.child.expect(pattern, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF):
            raise AssertionError("did not see %r; output:\n%s"
                                 % (pattern, self.output()[-4000:])) from None
        return self.child.match

    def sendline(self, text):
        self.child.sendline(text)

    def output(self):
        return self.log.getvalue()

    def count(self, pattern):
        return len(re.findall(pattern, self.output()))

    def pump(self, seconds):
        """Reads whatever the child prints within `seconds` into the log."""
        try:
            self.child.expect(pexpect.TIMEOUT, timeout=seconds)
        except pexpect.EOF:
            pass

    def wait(self, pattern, n=1, timeout=TIMEOUT):
        """Reads until `pattern` has appeared at least n times in all the output;
        returns the count then."""
        deadline = time.monotonic() + timeout
        while self.count(pattern) < n:
            if time.monotonic() > deadline or not self.child.isalive():
                self.pump(0.1)
                if self.count(pattern) >= n:
                    break
                raise AssertionError("saw %r %d times, not %d; output:\n%s"
                                     % (pattern, self.count(pattern), n,
                                        self.output()[-4000:]))
            self.pump(0.05)
        return self.count(pattern)

    def wait_exit(self, timeout=TIMEOUT):
        self.expect(pexpect.EOF, timeout)
        self.child.close()
        return self.child.exitstatus

    def kill(self):
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close(force=True)


@pytest.fixture
def procs():
    started = []

    def spawn(argv, env):
        p = Proc(argv, env)
        started.append(p)
        return p

    yield spawn
    for p in started:
        p.kill()


@pytest.fixture
def s_server(procs, cert_files):
    """s_server(*options) -> (Proc, port): openssl s_server with -msg, accepting."""
    def start(*options):
        port = free_port()
        p = procs(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
                   "-cert", str(cert_files / "cert.pem"),
                   "-key", str(cert_files / "key.pem"), "-msg", *options], peer_env())
        p.wait("ACCEPT")
        return p, port
    return start


@pytest.fixture
def console(procs):
    """console(*args) -> Proc running python -m tlsrekey *args."""
    def start(*args):
        return procs([sys.executable, "-m", "tlsrekey", *args], console_env())
    return start


@pytest.fixture
def serve(console):
    """serve(*options) -> (Proc, port): python -m tlsrekey serve on a free port."""
    def start(*options):
        p = console("serve", "--port", "0", *options)
        port = int(p.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        return p, port
    return start


@pytest.fixture
def s_client(procs):
    def start(port, *options):
        p = procs(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-msg",
                   *options], peer_env())
        p.wait("Verify return code")
        return p
    return start


def connect_args(port, cert_files, *extra):
    return ("connect", "127.0.0.1:%d" % port, "--cafile", str(cert_files / "cert.pem"),
            "--servername", "localhost", *extra)


# --- the console as a client, openssl s_server as the peer ---------------------

def test_console_key_update_reaches_s_server(s_server, console, cert_files):
    server, port = s_server("-tls1_3")
    con = console(*connect_args(port, cert_files))
    con.expect(r"connected: TLSv1\.3")
    con.sendline("hello from the console")
    server.wait("hello from the console")

    con.sendline("k")
    con.expect(r"KeyUpdate sent \(update_not_requested\)\s+\[KeyUpdates sent 1, "
               r"received 0")
    assert server.wait(KU_RECEIVED, 1) == 1

    con.sendline("K")
    con.expect(r"KeyUpdate sent \(update_requested\)\s+\[KeyUpdates sent 2, received 0;"
               r" requests sent 1")
    assert server.wait(KU_RECEIVED, 2) == 2
    # s_server owes its reply and, like any OpenSSL program, sends it with its next
    # write: the console sees it arrive before that data.
    server.sendline("data from s_server")
    assert server.wait(KU_SENT, 1) == 1
    con.expect(r"KeyUpdate received \(update_not_requested\)\s+\[KeyUpdates sent 2, "
               r"received 1")
    con.expect("data from s_server")

    con.sendline(":stats")
    con.expect(r"key_updates_sent\s+2")
    con.expect(r"key_updates_received\s+1")
    con.sendline("Q")
    con.expect(r"closed|peer closed")
    assert con.wait_exit() == 0


def test_console_renegotiates_with_s_server(s_server, console, cert_files):
    server, port = s_server("-tls1_2", "-client_renegotiation")
    con = console(*connect_args(port, cert_files))
    con.expect(r"connected: TLSv1\.2")
    assert server.wait(CLIENT_HELLO_RECEIVED, 1) == 1

    con.sendline("R")
    con.expect(r"renegotiation done\s+\[renegotiations 1, handshakes 2\]")
    assert server.wait(CLIENT_HELLO_RECEIVED, 2) == 2
    con.sendline("r")
    con.expect(r"renegotiation done\s+\[renegotiations 2, handshakes 3\]")
    assert server.wait(CLIENT_HELLO_RECEIVED, 3) == 3
    con.sendline(":info")
    con.expect(r"session reused True")

    # s_server's own renegotiation: a HelloRequest the console answers by itself.
    server.sendline("r")
    con.expect(r"HelloRequest received\s+\[HelloRequests sent 0, received 1\]")
    con.expect(r"renegotiation done\s+\[renegotiations 3, handshakes 4\]")
    assert server.wait(CLIENT_HELLO_RECEIVED, 4) == 4

    con.sendline("still talking")
    server.wait("still talking")
    con.sendline("Q")
    assert con.wait_exit() == 0


def test_console_error_is_one_line_and_the_connection_survives(s_server, console,
                                                                cert_files):
    server, port = s_server("-tls1_3")
    con = console(*connect_args(port, cert_files))
    con.expect(r"connected: TLSv1\.3")
    con.sendline("R")
    line = con.expect(r"error: StateError: [^\r\n]*\r?\n").group(0)
    assert "TLSv1.3" in line
    con.sendline("after the error")
    server.wait("after the error")
    con.sendline(":nonsense")
    con.expect(r"unknown command :nonsense")
    con.sendline(":help")
    con.expect(r":askcert")
    con.sendline("Q")
    assert con.wait_exit() == 0


def test_console_exits_nonzero_when_the_server_refuses_renegotiation(s_server, console,
                                                                     cert_files):
    # OpenSSL 3 servers refuse client-initiated renegotiation by default; the OpenSSL
    # client makes the no_renegotiation warning fatal: the connection is lost.
    server, port = s_server("-tls1_2")
    con = console(*connect_args(port, cert_files))
    con.expect(r"connected: TLSv1\.2")
    con.sendline("R")
    con.expect(r"alert received: warning no renegotiation")
    con.expect(r"error: ProtocolError: [^\r\n]+")
    assert con.wait_exit() == 1


def test_console_exits_nonzero_when_verification_fails(s_server, console):
    server, port = s_server("-tls1_3")
    # The throwaway certificate is trusted by nobody: the system store rejects it.
    con = console("connect", "127.0.0.1:%d" % port, "--servername", "localhost")
    con.expect(r"error: CertificateError: [^\r\n]+")
    assert con.wait_exit() == 1


def test_console_exits_nonzero_when_nobody_listens(console):
    con = console("connect", "127.0.0.1:%d" % free_port(), "--insecure")
    con.expect(r"error: cannot connect to 127\.0\.0\.1:\d+")
    assert con.wait_exit() == 1


def test_console_usage_error_exits_2(console):
    con = console("connect", "no-port-here")
    con.expect(r"expected HOST:PORT")
    assert con.wait_exit() == 2


# --- openssl s_client against the console's serve ----------------------------

def test_serve_shows_s_client_key_updates_and_answers_at_once(serve, s_client):
    srv, port = serve("--echo")
    cli = s_client(port, "-tls1_3")
    srv.expect(r"connected: TLSv1\.3")

    cli.sendline("k")
    srv.expect(r"KeyUpdate received \(update_not_requested\)\s+\[KeyUpdates sent 0, "
               r"received 1")
    cli.sendline("K")
    srv.expect(r"KeyUpdate received \(update_requested\)")
    # serve answers an update request at once, with a zero-length write.
    srv.expect(r"answering the peer's update request now")
    srv.expect(r"KeyUpdate sent \(update_not_requested\)\s+\[KeyUpdates sent 1, "
               r"received 2")
    assert cli.wait(KU_RECEIVED, 1) == 1
    assert cli.wait(KU_SENT, 2) == 2

    # And the other way: serve's K makes s_client answer (lazily, with its next write).
    srv.sendline("K")
    srv.expect(r"KeyUpdate sent \(update_requested\)")
    assert cli.wait(KU_RECEIVED, 2) == 2
    cli.sendline("echo me")
    srv.expect(r"KeyUpdate received \(update_not_requested\)\s+\[KeyUpdates sent 2, "
               r"received 3")
    srv.expect("echo me")
    cli.wait("echo me", 2)        # the terminal echo, then --echo sent it back
    assert cli.wait(KU_SENT, 3) == 3

    srv.sendline("Q")
    assert srv.wait_exit() == 0


def test_serve_lazy_reply_waits_for_the_next_write(serve, s_client):
    srv, port = serve("--lazy-reply")
    cli = s_client(port, "-tls1_3")
    srv.expect(r"connected: TLSv1\.3")
    cli.sendline("K")
    srv.expect(r"KeyUpdate received \(update_requested\)")
    srv.expect(r"the reply is owed")
    cli.pump(0.5)
    assert cli.count(KU_RECEIVED) == 0   # nothing sent yet
    srv.sendline("a line")
    srv.expect(r"KeyUpdate sent \(update_not_requested\)")
    assert cli.wait(KU_RECEIVED, 1) == 1
    cli.wait("a line")
    srv.sendline("Q")
    assert srv.wait_exit() == 0


def test_serve_renegotiates_with_s_client(serve, s_client):
    srv, port = serve("--tls1_2", "--allow-client-renegotiation")
    cli = s_client(port)
    srv.expect(r"connected: TLSv1\.2")

    srv.sendline("R")
    srv.expect(r"HelloRequest sent\s+\[HelloRequests sent 1, received 0\]")
    srv.expect(r"renegotiation done\s+\[renegotiations 1, handshakes 2\]")
    cli.wait(r"<<< TLS 1\.2, Handshake \[length 0004\], HelloRequest")

    cli.sendline("R")               # client-initiated: allowed by the option
    srv.expect(r"renegotiation done\s+\[renegotiations 2, handshakes 3\]")

    srv.sendline(":askcert")        # renegotiate asking for a client certificate
    srv.expect(r"renegotiation done\s+\[renegotiations 3, handshakes 4\]")
    cli.wait(r"<<< TLS 1\.2, Handshake \[length [0-9a-f]+\], CertificateRequest")

    srv.sendline(":stats")
    srv.expect(r"renegotiations\s+3")
    srv.expect(r"hello_requests_sent\s+2")
    cli.sendline("Q")
    srv.expect(r"the peer closed the connection")
    srv.sendline("Q")
    assert srv.wait_exit() == 0


def test_serve_once_exits_with_the_connection(serve, s_client):
    srv, port = serve("--once")
    cli = s_client(port, "-tls1_3")
    srv.expect(r"connected: TLSv1\.3")
    cli.sendline("Q")
    srv.expect(r"ended")
    assert srv.wait_exit() == 0


# --- the console against itself ---------------------------------------------------

@pytest.mark.parametrize("quits", ["connect", "serve"])
def test_console_and_serve_end_cleanly_whichever_quits(serve, console, cert_files, quits):
    """Q sends close_notify and waits for the peer's: the other console answers it
    (serve did not, so connect's Q ended in "unexpected EOF" and exit status 1)."""
    srv, port = serve("--once", "--cert", str(cert_files / "cert.pem"),
                      "--key", str(cert_files / "key.pem"))
    con = console(*connect_args(port, cert_files))
    con.expect(r"connected: TLSv1\.3")
    srv.expect(r"connected: TLSv1\.3")
    con.sendline("over to you")
    srv.expect("over to you")
    first, other = (con, srv) if quits == "connect" else (srv, con)
    first.sendline("Q")
    other.expect(r"the peer closed the connection")
    first.expect(r"closed \(close_notify sent and received\)")
    assert first.wait_exit() == 0
    assert other.wait_exit() == 0
    for proc in (con, srv):
        assert "error" not in proc.output(), proc.output()
