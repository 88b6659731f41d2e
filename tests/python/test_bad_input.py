"""Bad input, tried systematically (issue 4): every public function and method fed
wrong types, wrong values, huge and negative sizes, closed objects and wrong states.
Each row says what a user would expect: the documented error class (TypeError for a
wrong type, ValueError for a wrong value, StateError for the wrong moment, ...), and
nothing else: no crash, no other exception, no hang.

The same table, in Lua, is tests/lua/bad_input_spec.lua."""
import math
import socket
import sys

import pytest

import tlsrekey

CERT, KEY = tlsrekey.make_test_cert()
OTHER_CERT, OTHER_KEY = tlsrekey.make_test_cert("other.example")


class Env:
    """Fresh objects for one row: a TLS 1.3 pair, a TLS 1.2 pair, a memory
    connection before its handshake, a socket connection, a closed one."""

    def __init__(self):
        self.client, self.server = tlsrekey.pair(cert=CERT, key=KEY)
        self._extra = []

    def pair12(self):
        return tlsrekey.pair(cert=CERT, key=KEY, max_version="TLSv1.2")

    def client_ctx(self, **kw):
        return tlsrekey.Context.client(CERT, **kw)

    def server_ctx(self, **kw):
        return tlsrekey.Context.server(CERT, KEY, **kw)

    def memory(self):
        return self.client_ctx().memory(server_hostname="localhost")

    def dtls_client(self):
        """The client of a DTLS pair (the server kept alive with it)."""
        client, server = tlsrekey.pair(cert=CERT, key=KEY, dtls=True)
        self._dtls = (client, server)
        return client

    def sockets(self):
        a, b = socket.socketpair()
        self._extra += [a, b]
        return a, b

    def listening(self):
        s = socket.socket()
        self._extra.append(s)
        s.bind(("127.0.0.1", 0))
        s.listen()
        return s

    def socket_conn(self):
        a, _ = self.sockets()
        return self.client_ctx().wrap(a, server_hostname="localhost")

    def closed(self):
        c, _ = tlsrekey.pair(cert=CERT, key=KEY)
        c.close()
        return c

    def close(self):
        for s in self._extra:
            s.close()


# Each row: (id, fn(env), expected exception class(es), text the message contains).
ROWS = [
    # -- module functions -------------------------------------------------------
    ("make_test_cert-int", lambda e: tlsrekey.make_test_cert(123), TypeError, None),
    ("make_test_cert-None", lambda e: tlsrekey.make_test_cert(None), TypeError, None),
    ("make_test_cert-empty", lambda e: tlsrekey.make_test_cert(""), ValueError, None),
    ("make_test_cert-too-long", lambda e: tlsrekey.make_test_cert("x" * 65), ValueError, None),
    ("make_test_cert-NUL", lambda e: tlsrekey.make_test_cert("a\0b"), ValueError, "NUL"),
    ("pair-unknown-option", lambda e: tlsrekey.pair(colour="blue"), TypeError, "colour"),
    ("pair-positional", lambda e: tlsrekey.pair("TLSv1.2"), TypeError, None),
    ("pair-version-name", lambda e: tlsrekey.pair(max_version="TLSv9"), ValueError, None),
    ("pair-version-type", lambda e: tlsrekey.pair(max_version=1.3), TypeError, None),
    ("pair-min-above-max", lambda e: tlsrekey.pair(min_version="TLSv1.3",
                                                   max_version="TLSv1.2"), ValueError, None),
    ("pair-ciphersuites", lambda e: tlsrekey.pair(ciphersuites="NOPE"), ValueError, None),
    ("pair-ciphers", lambda e: tlsrekey.pair(ciphers="NOPE"), ValueError, None),
    ("pair-groups", lambda e: tlsrekey.pair(groups="no-such-group"), ValueError, None),
    ("pair-groups-type", lambda e: tlsrekey.pair(groups=["X25519"]), TypeError, None),
    ("pair-alpn-str", lambda e: tlsrekey.pair(alpn="h2"), TypeError, None),
    ("pair-alpn-item", lambda e: tlsrekey.pair(alpn=[1]), TypeError, None),
    ("pair-alpn-long", lambda e: tlsrekey.pair(alpn=["x" * 256]), ValueError, None),
    ("pair-alpn-empty-name", lambda e: tlsrekey.pair(alpn=[""]), ValueError, None),
    ("pair-key-without-cert", lambda e: tlsrekey.pair(key=KEY), ValueError, None),
    ("pair-cert-garbage", lambda e: tlsrekey.pair(cert=b"garbage", key=b"garbage"),
     ValueError, None),
    ("pair-key-mismatch", lambda e: tlsrekey.pair(cert=CERT, key=OTHER_KEY), ValueError,
     None),
    ("pair-cert-type", lambda e: tlsrekey.pair(cert=12, key=KEY), TypeError, None),
    ("pair-cert-missing-file", lambda e: tlsrekey.pair(cert="/nonexistent/c.pem", key=KEY),
     ValueError, None),
    ("pair-num-tickets-negative", lambda e: tlsrekey.pair(num_tickets=-1), ValueError, None),
    ("pair-num-tickets-huge", lambda e: tlsrekey.pair(num_tickets=10 ** 30),
     (ValueError, OverflowError), None),
    ("pair-num-tickets-str", lambda e: tlsrekey.pair(num_tickets="2"), TypeError, None),
    ("pair-verify-client-value", lambda e: tlsrekey.pair(verify_client="sometimes"),
     ValueError, None),
    ("pair-keylog-type", lambda e: tlsrekey.pair(keylog=123), TypeError, None),
    ("pair-wrong-hostname", lambda e: tlsrekey.pair(cert=CERT, key=KEY, cafile=CERT,
                                                    server_hostname="other.example"),
     tlsrekey.CertificateError, None),
    ("pair-untrusted", lambda e: tlsrekey.pair(cert=CERT, key=KEY, cafile=OTHER_CERT),
     tlsrekey.CertificateError, None),

    # -- contexts -------------------------------------------------------------------
    ("Context-role-value", lambda e: tlsrekey.Context("dealer"), ValueError, None),
    ("Context-role-type", lambda e: tlsrekey.Context(1), TypeError, None),
    ("Context-no-role", lambda e: tlsrekey.Context(), TypeError, None),
    ("client-cafile-type", lambda e: tlsrekey.Context.client(cafile=123), TypeError, None),
    ("client-cafile-missing", lambda e: tlsrekey.Context.client(cafile="/nonexistent.pem"),
     ValueError, None),
    ("client-cafile-missing-says-why",
     lambda e: tlsrekey.Context.client(cafile="/nonexistent.pem"), ValueError,
     "No such file or directory"),
    ("client-cafile-not-pem", lambda e: tlsrekey.Context.client(cafile=b"not pem"),
     ValueError, None),
    ("client-min-version", lambda e: tlsrekey.Context.client(min_version="SSLv3"),
     ValueError, None),
    ("client-positional-verify", lambda e: tlsrekey.Context.client(CERT, None, False),
     TypeError, None),
    ("server-no-cert", lambda e: tlsrekey.Context.server(), TypeError, None),
    ("server-cert-missing", lambda e: tlsrekey.Context.server("/nonexistent.pem"),
     ValueError, None),
    ("server-verify-client", lambda e: tlsrekey.Context.server(CERT, KEY, verify_client=2),
     ValueError, None),
    ("server-alpn-NUL", lambda e: tlsrekey.Context.server(CERT, KEY, alpn=["a\0b"]),
     ValueError, None),

    # -- opening connections -----------------------------------------------------------
    ("connect-host-type", lambda e: e.client_ctx().connect(123, 443), TypeError, None),
    ("connect-port-type", lambda e: e.client_ctx().connect("127.0.0.1", "443"), TypeError,
     None),
    ("connect-port-zero", lambda e: e.client_ctx().connect("127.0.0.1", 0), ValueError, None),
    ("connect-port-negative", lambda e: e.client_ctx().connect("127.0.0.1", -1), ValueError,
     None),
    ("connect-port-too-big", lambda e: e.client_ctx().connect("127.0.0.1", 70000),
     (ValueError, OverflowError), None),
    ("connect-port-huge", lambda e: e.client_ctx().connect("127.0.0.1", 2 ** 64),
     (ValueError, OverflowError), None),
    ("connect-timeout-negative", lambda e: e.client_ctx().connect("127.0.0.1", 1,
                                                                 timeout=-1),
     ValueError, None),
    ("connect-timeout-type", lambda e: e.client_ctx().connect("127.0.0.1", 1, timeout="1"),
     TypeError, None),
    ("connect-timeout-nan", lambda e: e.client_ctx().connect("127.0.0.1", 1,
                                                            timeout=math.nan),
     ValueError, None),
    ("connect-refused", lambda e: e.client_ctx().connect("127.0.0.1", closed_port(),
                                                        timeout=2),
     tlsrekey.SyscallError, None),
    ("connect-unresolvable", lambda e: e.client_ctx().connect("no-such-host.invalid", 443,
                                                             timeout=2),
     tlsrekey.SyscallError, None),
    ("connect-hostname-NUL", lambda e: e.client_ctx().connect("127.0.0.1", 1,
                                                             server_hostname="a\0b"),
     ValueError, None),
    ("wrap-not-a-socket", lambda e: e.client_ctx().wrap("socket", server_hostname="x"),
     TypeError, None),
    ("wrap-closed-socket", lambda e: e.client_ctx().wrap(closed_socket(),
                                                        server_hostname="localhost"),
     (ValueError, OSError), None),
    ("wrap-needs-hostname", lambda e: e.client_ctx().wrap(e.sockets()[0]), ValueError,
     "server_hostname"),
    # A server handshake on it waited forever for a ClientHello.
    ("wrap-a-listening-socket", lambda e: e.server_ctx().wrap(e.listening()), ValueError,
     "listening"),
    ("wrap-a-listening-socket-client",
     lambda e: e.client_ctx().wrap(e.listening(), server_hostname="localhost"), ValueError,
     "listening"),
    ("wrap-hostname-type", lambda e: e.client_ctx().wrap(e.sockets()[0], server_hostname=5),
     TypeError, None),
    ("memory-hostname-type", lambda e: e.client_ctx().memory(server_hostname=5), TypeError,
     None),
    ("memory-needs-hostname", lambda e: e.client_ctx().memory(), ValueError,
     "server_hostname"),

    # -- I/O arguments -----------------------------------------------------------------
    ("read-negative", lambda e: e.client.read(-1), ValueError, None),
    ("read-str", lambda e: e.client.read("10"), TypeError, None),
    ("read-float", lambda e: e.client.read(1.5), TypeError, None),
    ("read-beyond-ssize_t", lambda e: e.client.read(2 ** 63), OverflowError, None),
    # read(n) sets aside what can arrive, not n: nothing has, so it would block
    ("read-maxsize", lambda e: e.client.read(sys.maxsize), tlsrekey.WantReadError, None),
    ("read_into-immutable", lambda e: e.client.read_into(b"immutable"), TypeError, None),
    ("read_into-nbytes-too-big", lambda e: e.client.read_into(bytearray(10), 11), ValueError,
     None),
    ("read_into-nbytes-negative", lambda e: e.client.read_into(bytearray(10), -1),
     ValueError, None),
    ("read_into-nbytes-type", lambda e: e.client.read_into(bytearray(10), "x"), TypeError,
     None),
    ("write-str", lambda e: e.client.write("text"), TypeError, None),
    ("write-None", lambda e: e.client.write(None), TypeError, None),
    ("write-int", lambda e: e.client.write(123), TypeError, None),
    ("write-no-arg", lambda e: e.client.write(), TypeError, None),
    ("write-non-contiguous", lambda e: e.client.write(memoryview(b"abcdef")[::2]),
     (TypeError, BufferError), None),
    ("feed-on-pair", lambda e: e.client.feed(b"x"), tlsrekey.StateError, None),
    ("drain-on-pair", lambda e: e.client.drain(), tlsrekey.StateError, None),
    ("feed_eof-on-pair", lambda e: e.client.feed_eof(), tlsrekey.StateError, None),
    ("feed-str", lambda e: e.memory().feed("text"), TypeError, None),
    ("feed_eof-on-socket", lambda e: e.socket_conn().feed_eof(), tlsrekey.StateError, None),
    ("settimeout-on-pair", lambda e: e.client.settimeout(1), tlsrekey.StateError, None),
    ("settimeout-str", lambda e: e.socket_conn().settimeout("1"), TypeError, None),
    ("settimeout-negative", lambda e: e.socket_conn().settimeout(-1), ValueError, None),
    ("settimeout-nan", lambda e: e.socket_conn().settimeout(math.nan), ValueError, None),
    ("set_event_callback-int", lambda e: e.client.set_event_callback(5), TypeError, None),

    # -- rekey arguments ---------------------------------------------------------------
    ("key_update-NONE", lambda e: e.client.key_update(tlsrekey.KEY_UPDATE_NONE), ValueError,
     None),
    ("key_update-minus-two", lambda e: e.client.key_update(-2), ValueError, None),
    ("key_update-two", lambda e: e.client.key_update(2), ValueError, None),
    ("key_update-huge", lambda e: e.client.key_update(2 ** 70), ValueError, None),
    ("key_update-bool", lambda e: e.client.key_update(True), TypeError, None),
    ("key_update-str", lambda e: e.client.key_update("requested"), TypeError, None),
    ("key_update-float", lambda e: e.client.key_update(1.0), TypeError, None),
    ("key_update-None", lambda e: e.client.key_update(None), TypeError, None),
    ("key_update-keyword", lambda e: e.client.key_update(type=1), TypeError, None),
    ("export-label-type", lambda e: e.client.export_keying_material(123, 32), TypeError,
     None),
    ("export-label-NUL", lambda e: e.client.export_keying_material("a\0b", 32), ValueError,
     None),
    ("export-length-zero", lambda e: e.client.export_keying_material("EXPORTER-x", 0),
     ValueError, None),
    ("export-length-negative", lambda e: e.client.export_keying_material("EXPORTER-x", -5),
     ValueError, None),
    ("export-length-type", lambda e: e.client.export_keying_material("EXPORTER-x", "32"),
     TypeError, None),
    ("export-context-type", lambda e: e.client.export_keying_material("EXPORTER-x", 32,
                                                                      context=5),
     TypeError, None),
    ("export-length-beyond-hkdf",
     lambda e: e.client.export_keying_material("EXPORTER-x", 255 * 48 + 1), ValueError,
     "at most 12240 bytes"),

    # -- wrong state -----------------------------------------------------------------------
    ("key_update-twice", lambda e: (e.client.key_update(), e.client.key_update()),
     tlsrekey.StateError, "already scheduled"),
    ("key_update-on-tls12", lambda e: e.pair12()[0].key_update(), tlsrekey.StateError,
     "TLSv1.2"),
    ("renegotiate-on-tls13", lambda e: e.client.renegotiate(), tlsrekey.StateError,
     "TLSv1.3"),
    ("renegotiate_abbreviated-on-tls13", lambda e: e.server.renegotiate_abbreviated(),
     tlsrekey.StateError, "TLSv1.3"),
    ("renegotiate-no_renegotiation", lambda e: tlsrekey.pair(
        max_version="TLSv1.2", no_renegotiation=True)[0].renegotiate(),
     tlsrekey.StateError, "no_renegotiation"),
    ("set_verify_client-on-client", lambda e: e.client.set_verify_client(),
     tlsrekey.StateError, None),
    ("key_update-before-handshake", lambda e: e.memory().key_update(), tlsrekey.StateError,
     None),
    ("renegotiate-before-handshake", lambda e: e.memory().renegotiate(),
     tlsrekey.StateError, None),
    ("export-before-handshake", lambda e: e.memory().export_keying_material("x", 32),
     tlsrekey.StateError, None),
    ("shutdown-before-handshake", lambda e: e.memory().shutdown(), tlsrekey.StateError,
     None),
    ("read-before-handshake-memory", lambda e: e.memory().read(), tlsrekey.WantReadError,
     None),
    ("write-after-shutdown", lambda e: (e.client.shutdown(), e.client.write(b"x")),
     tlsrekey.StateError, None),
    ("key_update-after-shutdown", lambda e: (e.client.shutdown(), e.client.key_update()),
     tlsrekey.StateError, None),
    ("write-to-a-freed-pair-peer", lambda e: (e.server.close(), e.client.write(b"x")),
     tlsrekey.SyscallError, None),
    # -- DTLS (issue 8): options and calls that make sense on DTLS only ---------------
    ("pair-dtls-tls-version", lambda e: tlsrekey.pair(dtls=True, max_version="TLSv1.2"),
     ValueError, "max_version"),
    ("server-cookie_exchange-on-tls", lambda e: e.server_ctx(cookie_exchange=False),
     ValueError, "cookie_exchange"),
    ("server-dtls_initial_timeout-on-tls", lambda e: e.server_ctx(dtls_initial_timeout=1),
     ValueError, "dtls_initial_timeout"),
    ("pair-dtls_initial_timeout-negative",
     lambda e: tlsrekey.pair(dtls=True, dtls_initial_timeout=-1), ValueError, None),
    ("pair-dtls_initial_timeout-huge",
     lambda e: tlsrekey.pair(dtls=True, dtls_initial_timeout=61), ValueError, None),
    ("pair-dtls_initial_timeout-nan",
     lambda e: tlsrekey.pair(dtls=True, dtls_initial_timeout=math.nan), ValueError, None),
    ("pair-dtls_initial_timeout-str",
     lambda e: tlsrekey.pair(dtls=True, dtls_initial_timeout="1"), TypeError, None),
    ("dtls-wrap-a-stream-socket",
     lambda e: e.client_ctx(dtls=True).wrap(e.sockets()[0], server_hostname="localhost"),
     ValueError, "UDP"),
    ("set_mtu-on-tls", lambda e: e.client.set_mtu(1500), tlsrekey.StateError, None),
    ("handle_timeout-on-tls", lambda e: e.client.handle_timeout(), tlsrekey.StateError,
     None),
    ("set_mtu-str", lambda e: e.dtls_client().set_mtu("1500"), TypeError,
     None),
    ("set_mtu-bool", lambda e: e.dtls_client().set_mtu(True), TypeError,
     None),
    ("set_mtu-negative", lambda e: e.dtls_client().set_mtu(-1), ValueError,
     "mtu"),
    ("set_mtu-huge", lambda e: e.dtls_client().set_mtu(10 ** 30), ValueError,
     "mtu"),
    ("dtls-write-too-big", lambda e: e.dtls_client().write(b"x" * 16385),
     ValueError, "16384"),
    ("dtls-key_update", lambda e: e.dtls_client().key_update(),
     tlsrekey.StateError, "DTLS 1.3"),
]


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_socket():
    s = socket.socket()
    s.close()
    return s


def _id(row):
    return row[0] if isinstance(row, tuple) else None


@pytest.fixture
def env():
    e = Env()
    yield e
    e.close()


@pytest.mark.parametrize("name,fn,expected,text", ROWS, ids=[_id(r) for r in ROWS])
def test_bad_input_raises_the_documented_error(env, name, fn, expected, text):
    with pytest.raises(expected) as info:
        fn(env)
    if text is not None:
        assert text in str(info.value), str(info.value)
    if isinstance(info.value, tlsrekey.Error):
        # a tlsrekey error always says what happened
        assert str(info.value) and info.value.status
    # After a refused argument the connection is still usable.
    if not isinstance(info.value, tlsrekey.Error) or isinstance(info.value,
                                                                tlsrekey.StateError):
        if env.client.state == "established" and env.server.state == "established":
            env.client.write(b"still fine")
            assert env.server.read() == b"still fine"


# -- every method of a closed connection --------------------------------------------------

CLOSED_CALLS = [
    ("do_handshake", ()), ("read", ()), ("read_into", (bytearray(4),)), ("write", (b"x",)),
    ("shutdown", ()), ("feed", (b"x",)), ("feed_eof", ()), ("drain", ()),
    ("key_update", ()), ("renegotiate", ()), ("renegotiate_abbreviated", ()),
    ("set_verify_client", ()), ("export_keying_material", ("EXPORTER-x", 32)),
    ("settimeout", (1.0,)), ("handle_timeout", ()), ("set_mtu", (1500,)),
]


@pytest.mark.parametrize("method,args", CLOSED_CALLS, ids=[m for m, _ in CLOSED_CALLS])
def test_every_action_on_a_closed_connection_is_state_error(env, method, args):
    conn = env.closed()
    with pytest.raises(tlsrekey.StateError) as info:
        getattr(conn, method)(*args)
    assert info.value.reason == "connection is closed"


def test_questions_to_a_closed_connection_have_quiet_answers(env):
    conn = env.closed()
    conn.close()                                    # idempotent
    assert conn.state == "released"
    assert conn.version is None and conn.cipher is None
    assert conn.get_key_update_type() is tlsrekey.KeyUpdateType.NONE
    assert conn.renegotiate_pending() is False
    assert conn.fileno() == -1
    assert conn.pending() == 0
    assert conn.get_timeout() is None and conn.data_mtu == 0
    assert isinstance(conn.stats, dict)
    assert "released" in repr(conn)
    with conn:                                      # a with-block on it is harmless
        pass


def test_a_failed_connection_replays_its_error_for_every_action():
    client, server = tlsrekey.pair(cert=CERT, key=KEY)
    ctx = tlsrekey.Context.server(CERT, KEY)
    mem = ctx.memory()
    mem.feed(b"\x16\x03\x01\x00\x05hello-not-tls" * 4)
    with pytest.raises(tlsrekey.ProtocolError) as first:
        mem.do_handshake()
    for method, args in CLOSED_CALLS:
        if method in ("feed", "feed_eof", "drain", "settimeout", "set_verify_client"):
            continue       # transport and settings calls stay allowed or are StateError
        with pytest.raises(tlsrekey.Error) as again:
            getattr(mem, method)(*args)
        if method not in ("key_update", "renegotiate", "renegotiate_abbreviated",
                          "export_keying_material"):
            assert type(again.value) is type(first.value), (method, again.value)
            assert again.value.reason == first.value.reason
    assert mem.state == "failed"
    client.close()
    server.close()


# -- callbacks that misbehave ------------------------------------------------------------

def test_a_callback_raising_is_reraised_and_the_connection_goes_on():
    client, server = tlsrekey.pair(cert=CERT, key=KEY)

    def boom(event):
        raise KeyError("from the callback")
    server.set_event_callback(boom)
    client.key_update()
    client.write(b"x")
    with pytest.raises(KeyError):
        server.read()
    server.set_event_callback(None)
    assert server.read() == b"x"                 # the data of the failed call is kept
    client.write(b"y")
    assert server.read() == b"y"
    assert server.stats["key_updates_received"] == 1


def test_a_callback_that_drives_its_connection_is_refused():
    client, server = tlsrekey.pair(cert=CERT, key=KEY)
    seen = []

    def drive(event):
        try:
            server.write(b"from inside")
        except tlsrekey.StateError as exc:
            seen.append(exc)
    server.set_event_callback(drive)
    client.key_update()
    client.write(b"x")
    assert server.read() == b"x"
    assert seen and "callback" in str(seen[0])


def test_an_argument_error_that_names_its_argument_is_not_prefixed_again():
    """The core's sentence names the argument right after the call's name; the
    shim adds the name only to sentences that do not say it (README's tour)."""
    client, _ = tlsrekey.pair()
    with pytest.raises(ValueError) as info:
        client.key_update(tlsrekey.KEY_UPDATE_NONE)
    assert str(info.value).startswith("key_update: updatetype must be")
    assert str(info.value).count("updatetype") == 1
