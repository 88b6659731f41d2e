"""More TLS stacks for the interop matrix, beside tests/interop/peers.py: peers we
build from source at test time, and Debian's own NSS tools.

    go          tests/interop/peers/main.go: Go's crypto/tls (`go build`)
    jsse        tests/interop/peers/JssePeer.java: the JDK's TLS (`javac`)
    wolfssl     tests/interop/peers/wolfssl_peer.c against libwolfssl-dev (`cc`)
    mbedtls     tests/interop/peers/mbedtls_peer.c against libmbedtls-dev (`cc`)
    nss         `selfserv` / `tstclnt` from libnss3-tools, with an NSS database made
                from the run's certificates

curl and lighttpd are not echo peers; their tests (test_interop_servers.py) drive
them directly with what this module offers (`build`, the certificate files).

Each built peer is compiled once and cached in build/interop-peers/, under a name
made from its source, the compiler's version and the library's package version, so
an edit or an upgrade rebuilds it and nothing else does. Builds use only the
Debian packages scripts/deps.sh installs (no module download: GOPROXY=off).

The peers built from source speak one line protocol (LinePeer, peer_common.h): a
server listens on 127.0.0.1 and prints "LISTENING <port>"; each echoes what it
reads; stdin takes "S <hex>" (send), "K"/"k" (key update requested / not), "R"
(renegotiate), "Q" (close), each answered "DONE <cmd>" or "UNSUPPORTED <cmd>"; the
connection's end is "CLOSED" or "ERROR <the library's own words>".
"""
import fcntl
import hashlib
import os
import re
import shutil
import subprocess

import peers
from peers import PeerError, ProcessPeer, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = os.path.join(HERE, "peers")
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "build", "interop-peers")

NAMES = ["go", "jsse", "wolfssl", "mbedtls", "nss"]


# ---------------------------------------------------------------------------
# Building, cached

# Every tool here runs in the peers' environment (peers._PEER_ENV): without the
# sanitizer runtime that an ASan run preloads into the interpreter, whose reports
# about a compiler or a JVM would fail that run.
ENV = peers._PEER_ENV


def _output(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=ENV, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return repr(exc).encode()


def _need(tool, package):
    if shutil.which(tool) is None:
        raise PeerError("%s is not installed (Debian package %s): run `make deps`"
                        % (tool, package))


def _package_version(package):
    return _output(["dpkg-query", "-W", "-f=${Version}", package])


def build(name, sources, identity, commands, env=None):
    """Builds `name` once: `commands(out_dir)` gives the argv lists that build into
    out_dir. Cached under a key of the sources' bytes and `identity` (the tool and
    library versions); returns out_dir. A lock file keeps two runs from building
    the same thing at once."""
    h = hashlib.sha256()
    for path in sources:
        with open(path, "rb") as f:
            h.update(f.read())
    h.update(identity)
    out = os.path.join(BUILD, "%s-%s" % (name, h.hexdigest()[:16]))
    os.makedirs(BUILD, exist_ok=True)
    with open(os.path.join(BUILD, name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(out, ".built")):
            return out
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        for argv in commands(out):
            r = subprocess.run(argv, cwd=SOURCES, env=env or ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=300)
            if r.returncode != 0:
                raise PeerError("building the %s peer failed: %s\n%s"
                                % (name, " ".join(argv), r.stdout.decode("utf-8", "replace")))
        open(os.path.join(out, ".built"), "w").close()
        # Older builds of the same peer are of no further use.
        for old in os.listdir(BUILD):
            if old.startswith(name + "-") and old != os.path.basename(out):
                shutil.rmtree(os.path.join(BUILD, old), ignore_errors=True)
    return out


def go_peer():
    _need("go", "golang-go")
    env = dict(ENV)
    # No network, no toolchain download, no module lookup: the standard library only.
    # The compiler's cache lives in build/ too: Go 1.20 and later ship no compiled
    # standard library, and building crypto/tls the first time takes a while.
    env.update(GOCACHE=os.path.join(BUILD, "go-cache"), GOPATH=os.path.join(BUILD, "gopath"),
               GOPROXY="off", GOTOOLCHAIN="local", GOFLAGS="-mod=mod", GO111MODULE="on",
               GOTELEMETRY="off", CGO_ENABLED="0")
    src = os.path.join(SOURCES, "main.go")
    out = build("go", [src], _output(["go", "version"]),
                lambda d: [["go", "build", "-trimpath", "-o", os.path.join(d, "go_peer"),
                            "main.go"]], env=env)
    return os.path.join(out, "go_peer")


def jsse_peer():
    _need("javac", "default-jdk-headless")
    src = os.path.join(SOURCES, "JssePeer.java")
    out = build("jsse", [src], _output(["javac", "-version"]) + _output(["java", "-version"]),
                lambda d: [["javac", "-d", d, "JssePeer.java"]])
    # A small, quick JVM: the peer handles one connection.
    return ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k",
            "-cp", out, "JssePeer"]


def c_peer(name, package, libs):
    _need("cc", "build-essential")
    src = os.path.join(SOURCES, name + "_peer.c")
    header = os.path.join(SOURCES, "peer_common.h")
    out = build(name, [src, header], _output(["cc", "--version"]) + _package_version(package),
                lambda d: [["cc", "-O1", "-g", "-Wall", "-o", os.path.join(d, name + "_peer"),
                            name + "_peer.c"] + libs])
    return os.path.join(out, name + "_peer")


def wolfssl_peer():
    return c_peer("wolfssl", "libwolfssl-dev", ["-lwolfssl"])


def mbedtls_peer():
    return c_peer("mbedtls", "libmbedtls-dev", ["-lmbedtls", "-lmbedx509", "-lmbedcrypto"])


# ---------------------------------------------------------------------------
# Certificates in the forms other stacks load

def pkcs12(certs):
    """The ECDSA server certificate and key as PKCS#12 (password "interop"), made
    once per run beside the PEM files."""
    path = os.path.join(certs.dir, "server-ecdsa.p12")
    if not os.path.exists(path):
        cert, key = certs.server("ecdsa")
        subprocess.run(["openssl", "pkcs12", "-export", "-in", cert, "-inkey", key,
                        "-certfile", certs.ca, "-name", "server", "-out", path,
                        "-passout", "pass:interop"], check=True, timeout=60, env=ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return path


def nss_db(certs):
    """An NSS database (sql:) with the run's CA trusted for TLS and the ECDSA server
    certificate and key under the nickname "server"; made once per run."""
    d = os.path.join(certs.dir, "nssdb")
    if os.path.exists(os.path.join(d, ".made")):
        return d
    _need("certutil", "libnss3-tools")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    run = lambda *argv: subprocess.run(argv, check=True, timeout=60, env=ENV,  # noqa: E731
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run("certutil", "-N", "-d", "sql:" + d, "--empty-password")
    run("certutil", "-A", "-d", "sql:" + d, "-n", "interop-ca", "-t", "CT,C,C",
        "-a", "-i", certs.ca)
    run("pk12util", "-i", pkcs12(certs), "-d", "sql:" + d, "-W", "interop")
    open(os.path.join(d, ".made"), "w").close()
    return d


# ---------------------------------------------------------------------------
# The line-protocol peers

class LinePeer(ProcessPeer):
    """A peer built from source here (see the module doc): it echoes by itself and
    takes commands on stdin."""

    echoes = True
    binary = True

    def __init__(self, spec, role, argv, port=None):
        super().__init__(spec)
        self.role = role
        if role == "client":
            argv = argv + ["port=%d" % port]
        self.start(argv)
        if role == "server":
            m = self.proc.wait(lambda out: re.search(rb"LISTENING (\d+)\n", out)
                               or re.search(rb"ERROR .*\n", out),
                               "the %s server to listen" % self.name)
            if not m.group(0).startswith(b"LISTENING"):
                raise PeerError("%s: %s" % (self.name, self.text()))
            self.port = int(m.group(1))

    def text(self):
        return self.proc.text()

    def order(self, cmd):
        """Sends one command; waits for its DONE. An UNSUPPORTED answer or the end of
        the connection is a PeerError carrying the peer's output."""
        done = re.compile(rb"^DONE %s$" % re.escape(cmd[:1].encode()), re.M)
        n = self.proc.count(done) + 1
        self.proc.write(cmd.encode() + b"\n")

        def answered(out):
            if len(done.findall(out)) >= n:
                return "done"
            if re.search(rb"^(UNSUPPORTED|ERROR|CLOSED)\b", out[-4096:], re.M):
                return "no"
            return None
        if self.proc.wait(answered, "the answer to %r" % cmd[:20]) != "done":
            raise PeerError("%s did not do %r:\n%s" % (self.name, cmd[:20], self.text()))

    def key_update(self, requested):
        self.order("K" if requested else "k")

    def renegotiate(self):
        self.order("R")

    def send(self, data):
        self.order("S " + data.hex())

    def ended(self, timeout=peers.WAIT):
        """Waits until the peer reports the connection's end; returns that line
        ("CLOSED" or "ERROR <its words>")."""
        m = self.proc.wait(lambda out: re.search(rb"^(CLOSED|ERROR .*)$", out, re.M),
                           "the %s peer to end the connection" % self.name, timeout)
        return m.group(1).decode("utf-8", "replace")

    def lines(self, prefix):
        return [l[len(prefix):].strip() for l in
                self.proc.output.decode("utf-8", "replace").splitlines()
                if l.startswith(prefix)]


def _common_args(spec, role, cert_args=True):
    args = ["role=" + role, "version=" + spec.version, "cafile=" + spec.certs.ca]
    if role == "server" and cert_args:
        args += ["certificate=" + spec.server_cert[0], "key=" + spec.server_cert[1]]
    return args


class GoPeer(LinePeer):
    """Go's crypto/tls. spec.extra["renegotiation"] ("never", Go's default; "once";
    "freely") is the client's tls.Config.Renegotiation."""
    name = "go"

    def __init__(self, spec, role, port=None):
        argv = [go_peer()] + _common_args(spec, role)
        argv.append("renegotiation=" + spec.extra.get("renegotiation", "never"))
        super().__init__(spec, role, argv, port)


class JsseJavaPeer(LinePeer):
    """JSSE. spec.extra["keylimit"]: the jdk.tls.keyLimits byte count (e.g. "2^10")
    after which JSSE sends a KeyUpdate by itself."""
    name = "jsse"

    def __init__(self, spec, role, port=None):
        if spec.cert != "ecdsa":
            raise ValueError("the JSSE peer serves the ECDSA certificate only")
        argv = jsse_peer() + _common_args(spec, role, cert_args=False)
        if role == "server":
            argv.append("keystore=" + pkcs12(spec.certs))
        if spec.extra.get("keylimit"):
            argv.append("keylimit=" + spec.extra["keylimit"])
        super().__init__(spec, role, argv, port)


class WolfsslPeer(LinePeer):
    name = "wolfssl"

    def __init__(self, spec, role, port=None):
        super().__init__(spec, role, [wolfssl_peer()] + _common_args(spec, role), port)

    @property
    def secure_renegotiation(self):
        """Whether this wolfSSL was built with secure renegotiation (its first line)."""
        return self.lines("FEATURES") == ["secure_renegotiation=1"]


class MbedtlsPeer(LinePeer):
    """Mbed TLS, TLS 1.2. spec.extra: "renegotiation" ("never": Mbed TLS's own
    default, MBEDTLS_SSL_RENEGOTIATION_DISABLED; anything else, the default here,
    enables it), "legacy" ("no", "allow", "break"), "debug" (bool), "echo" (bool,
    default True; False: it keeps what it reads and reports "READ <bytes>" at the
    end)."""
    name = "mbedtls"

    def __init__(self, spec, role, port=None):
        if spec.version != "1.2":
            raise ValueError("the Mbed TLS peer is for TLS 1.2 renegotiation")
        x = spec.extra
        argv = [mbedtls_peer()] + _common_args(spec, role)
        argv += ["renegotiation=%d" % (x.get("renegotiation") != "never"),
                 "legacy=" + x.get("legacy", "no"), "debug=%d" % bool(x.get("debug")),
                 "echo=%d" % bool(x.get("echo", True))]
        super().__init__(spec, role, argv, port)


# ---- NSS: Debian's selfserv and tstclnt ----

def _nss_versions(spec):
    v = "tls1.3" if spec.version == "1.3" else "tls1.2"
    return "%s:%s" % (v, v)


class NssServer(ProcessPeer):
    """`selfserv`, NSS's test server: one connection (-t 1 thread), the ECDSA
    certificate ("-e server"), -D (no Nagle delay). It reads a request, answers with
    an HTTP response that quotes it, and closes; it can start neither a key update
    nor (without client-certificate options) a renegotiation. It has no option to
    bind one address: it listens on every one, and is only ever connected to on
    127.0.0.1."""
    name = "nss"
    echoes = True

    def __init__(self, spec):
        super().__init__(spec)
        if spec.cert != "ecdsa":
            raise ValueError("the NSS server serves the ECDSA certificate only")
        db = nss_db(spec.certs)
        _need("selfserv", "libnss3-tools")
        self.port = free_port()
        self.start(["selfserv", "-d", "sql:" + db, "-e", "server", "-p", str(self.port),
                    "-V", _nss_versions(spec), "-D", "-t", "1", "-v"])
        # selfserv says nothing when it is ready: wait until its port answers.
        self.proc.wait(lambda out: _port_open(self.port), "selfserv to listen")


def _port_open(port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class NssClient(ProcessPeer):
    """`tstclnt`: sends its stdin, prints what it receives; it follows a KeyUpdate
    (answering a request) and a HelloRequest by itself and can start neither after
    the handshake (-r renegotiates right after it, which tests do not use)."""
    name = "nss"

    def __init__(self, spec, port):
        super().__init__(spec)
        db = nss_db(spec.certs)
        _need("tstclnt", "libnss3-tools")
        # -4: IPv4 only; -h 127.0.0.1 is checked against the certificate's IP SAN,
        # -a names the server for SNI.
        self.start(["tstclnt", "-4", "-h", "127.0.0.1", "-p", str(port), "-a", "localhost",
                    "-d", "sql:" + db, "-V", _nss_versions(spec)])


# ---------------------------------------------------------------------------

def start_server(name, spec):
    if name == "go":
        return GoPeer(spec, "server")
    if name == "jsse":
        return JsseJavaPeer(spec, "server")
    if name == "wolfssl":
        return WolfsslPeer(spec, "server")
    if name == "mbedtls":
        return MbedtlsPeer(spec, "server")
    if name == "nss":
        return NssServer(spec)
    raise ValueError(name)


def start_client(name, spec, port):
    if name == "go":
        return GoPeer(spec, "client", port)
    if name == "jsse":
        return JsseJavaPeer(spec, "client", port)
    if name == "wolfssl":
        return WolfsslPeer(spec, "client", port)
    if name == "mbedtls":
        return MbedtlsPeer(spec, "client", port)
    if name == "nss":
        return NssClient(spec, port)
    raise ValueError(name)
