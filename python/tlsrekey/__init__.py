"""tlsrekey: TLS connections on OpenSSL 3 with TLS 1.3 key update and TLS 1.2
renegotiation, their pending status visible and their events counted.

A tour, no network needed::

    >>> import tlsrekey
    >>> client, server = tlsrekey.pair()            # handshaken in memory, TLS 1.3
    >>> client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    >>> client.get_key_update_type()               # scheduled, not yet sent
    <KeyUpdateType.REQUESTED: 1>
    >>> client.write(b"hi"); server.read()          # the update goes out with this I/O
    >>> server.write(b"ok"); client.read()          # the server answers with its own
    >>> client.stats["key_updates_received"]
    1
    >>> c12, s12 = tlsrekey.pair(max_version="TLSv1.2")
    >>> c12.renegotiate(); c12.renegotiate_pending()
    True

Over the network: Context.client(...).connect(host, port), or Context.wrap(sock) for
a socket you connected or accepted yourself, Context.memory() for event loops.

Every failure is a tlsrekey.Error (an OSError) subclass carrying OpenSSL's library
and reason, except bad argument values (ValueError) and types (TypeError).

The method names are those of OpenSSL's SSL_key_update(3) manual page, which
doubles as the reference for key_update, get_key_update_type, renegotiate,
renegotiate_abbreviated and renegotiate_pending.
"""

from collections.abc import Mapping

from . import _tlsrekey
from ._tlsrekey import (
    KEY_UPDATE_NONE,
    KEY_UPDATE_NOT_REQUESTED,
    KEY_UPDATE_REQUESTED,
    OPENSSL_VERSION,
    CallbackError,
    CertificateError,
    Connection,
    Error,
    KeyUpdateType,
    ProtocolError,
    StateError,
    SyscallError,
    TimeoutError,
    WantReadError,
    WantWriteError,
    ZeroReturnError,
    __version__,
    make_test_cert,
)

__all__ = [
    "Context",
    "Connection",
    "KeyUpdateType",
    "KEY_UPDATE_NONE",
    "KEY_UPDATE_NOT_REQUESTED",
    "KEY_UPDATE_REQUESTED",
    "pair",
    "make_test_cert",
    "OPENSSL_VERSION",
    "Error",
    "WantReadError",
    "WantWriteError",
    "ZeroReturnError",
    "SyscallError",
    "ProtocolError",
    "CertificateError",
    "StateError",
    "TimeoutError",
    "CallbackError",
]

# Values of _tlsrekey.Context._set_verify (trk_verify_mode).
_VERIFY_NONE, _VERIFY_OPTIONAL, _VERIFY_REQUIRED = 0, 1, 2


class _SafeMinimum(str):
    """The default min_version: reads "TLSv1.2" in help(), but is told apart from an
    explicit "TLSv1.2" so that a DTLS context gets the core's DTLS 1.2 minimum
    instead (an explicit TLS name on DTLS stays an error)."""

    __slots__ = ()


_SAFE_MINIMUM = _SafeMinimum("TLSv1.2")


class Context(_tlsrekey.Context):
    """TLS settings shared by connections (an OpenSSL SSL_CTX).

    Make one with Context.client(...) or Context.server(...), then connections
    with connect(), wrap() or memory(). A connection keeps its context alive.
    """

    __slots__ = ()

    def _apply_common(self, min_version, max_version, cert, key, ciphers,
                      ciphersuites, groups, alpn, keylog, ignore_unexpected_eof,
                      release_buffers, no_renegotiation, rekey, dtls_initial_timeout,
                      allow_client_renegotiation=False):
        if not (min_version is _SAFE_MINIMUM and self.is_dtls):
            self._set_min_version(min_version)   # DTLS contexts start at DTLS 1.2
        self._set_max_version(max_version)
        if dtls_initial_timeout is not None:
            self._set_dtls_initial_timeout(dtls_initial_timeout)
        if cert is not None:
            self._use_certificate(cert)
        if key is not None or cert is not None:
            # key=None: the key is in the same file or PEM as the certificate.
            self._use_private_key(cert if key is None else key)
        if ciphers is not None:
            self._set_ciphers(ciphers)
        if ciphersuites is not None:
            self._set_ciphersuites(ciphersuites)
        if groups is not None:
            self._set_groups(groups)
        if alpn is not None:
            self._set_alpn(alpn)
        if keylog is True:
            self._set_keylog_from_env()
        elif keylog is not None and keylog is not False:
            self._set_keylog(keylog)
        self._set_ignore_unexpected_eof(ignore_unexpected_eof)
        self._set_release_buffers(release_buffers)
        self._set_renegotiation(allow_client_renegotiation, no_renegotiation)
        if rekey is not None:
            if not isinstance(rekey, Mapping):
                raise TypeError("rekey: expected a dict of set_rekey_policy() "
                                f"arguments, not {type(rekey).__name__}")
            self._set_rekey_policy(**rekey)

    @classmethod
    def client(cls, cafile=None, capath=None, *, verify=True, check_hostname=True,
               min_version=_SAFE_MINIMUM, max_version=None, cert=None, key=None,
               ciphers=None, ciphersuites=None, groups=None, alpn=None, keylog=None,
               ignore_unexpected_eof=False, release_buffers=False,
               no_renegotiation=False, rekey=None, dtls=False,
               dtls_initial_timeout=None):
        """A client context; the defaults are safe.

        cafile: trusted certificates, a path (str or path-like) or PEM bytes;
        capath: a directory of hashed certificates. With verify=True (the default)
        and neither given, the system trust store is used. verify=False accepts any
        server (and then no host name is checked either). check_hostname: check the
        certificate against each connection's server_hostname.

        min_version/max_version: "TLSv1.2", "TLSv1.3" (None: OpenSSL's limit).
        cert/key: a client certificate (path or PEM bytes; key=None: in cert).
        ciphers: the TLS 1.2 cipher list; ciphersuites: the TLS 1.3 suites;
        groups: key exchange groups ("X25519:P-256"); alpn: protocol names offered
        in order. keylog: append NSS key log lines (for Wireshark) to this path,
        or with True to the file the SSLKEYLOGFILE environment variable names.
        ignore_unexpected_eof: treat EOF without close_notify as a clean close.
        release_buffers: idle connections free their record buffers.
        no_renegotiation: refuse renegotiation both ways (a server's HelloRequest
        is answered with a no_renegotiation alert).
        rekey: the default rekey policy of the connections, a dict of
        Connection.set_rekey_policy() arguments, e.g. {"bytes": 1 << 30}.

        dtls=True: DTLS 1.2 over UDP instead (wrap() a connected UDP socket, or
        memory()); versions are then "DTLSv1.2" (the default minimum) and
        "DTLSv1". dtls_initial_timeout: DTLS, seconds before a lost flight is
        first resent, doubling after (None: OpenSSL's 1 s).
        """
        ctx = cls("client", dtls=dtls)
        ctx._apply_common(min_version, max_version, cert, key, ciphers, ciphersuites,
                          groups, alpn, keylog, ignore_unexpected_eof, release_buffers,
                          no_renegotiation, rekey, dtls_initial_timeout)
        if cafile is not None or capath is not None:
            ctx._load_verify(cafile, capath)
        elif verify:
            ctx._load_default_verify()
        ctx._set_verify(_VERIFY_REQUIRED if verify else _VERIFY_NONE)
        ctx._set_check_hostname(bool(verify and check_hostname))
        ctx._check()
        return ctx

    @classmethod
    def server(cls, cert=None, key=None, *, allow_client_renegotiation=False,
               no_renegotiation=False, verify_client=False, cafile=None, capath=None,
               min_version=_SAFE_MINIMUM, max_version=None, ciphers=None,
               ciphersuites=None, groups=None, alpn=None, keylog=None,
               ignore_unexpected_eof=False, release_buffers=False, num_tickets=None,
               session_cache=True, session_tickets=True, rekey=None, dtls=False,
               cookie_exchange=True,
               dtls_initial_timeout=None):
        """A server context.

        cert: the certificate (chain), key: its private key; each a path (str or
        path-like) or PEM bytes (key=None: the key is in cert). For a throwaway
        one: Context.server(*tlsrekey.make_test_cert()).

        allow_client_renegotiation: accept renegotiations a client starts (refused
        by default, as OpenSSL 3 does). no_renegotiation: no renegotiation in
        either direction. verify_client: False (ask no certificate), True (require
        one) or "optional" (ask, verify if sent), checked against cafile/capath
        (path or PEM bytes / directory). num_tickets: TLS 1.3 session tickets per
        handshake (OpenSSL's default 2). session_tickets: TLS 1.2 session tickets
        (off for GnuTLS clients that a server renegotiates with after
        set_verify_client). session_cache: keep a session cache so
        clients can resume. cookie_exchange: DTLS, answer each first ClientHello
        with a HelloVerifyRequest (on by default; False is a ValueError on TLS).
        The other options are those of Context.client(), dtls too.
        """
        if cert is None:
            raise TypeError("Context.server() needs cert= (a path, PEM bytes, or "
                            "make_test_cert()[0])")
        ctx = cls("server", dtls=dtls)
        ctx._apply_common(min_version, max_version, cert, key, ciphers, ciphersuites,
                          groups, alpn, keylog, ignore_unexpected_eof, release_buffers,
                          no_renegotiation, rekey, dtls_initial_timeout,
                          allow_client_renegotiation)
        if dtls or cookie_exchange is not True:
            ctx._set_cookie_exchange(cookie_exchange)
        if verify_client is False or verify_client is None:
            mode = _VERIFY_NONE
        elif verify_client is True:
            mode = _VERIFY_REQUIRED
        elif verify_client == "optional":
            mode = _VERIFY_OPTIONAL
        else:
            raise ValueError(
                f"verify_client: expected False, True or 'optional', not {verify_client!r}")
        if cafile is not None or capath is not None:
            ctx._load_verify(cafile, capath)
        ctx._set_verify(mode)
        if num_tickets is not None:
            ctx._set_num_tickets(num_tickets)
        ctx._set_session_cache(session_cache)
        ctx._set_session_tickets(session_tickets)
        ctx._check()
        return ctx


# pair(): which options go to which end. Options shared by both ends apply to both.
_PAIR_BOTH = frozenset({
    "min_version", "max_version", "ciphers", "ciphersuites", "groups", "alpn",
    "keylog", "ignore_unexpected_eof", "release_buffers", "no_renegotiation",
    "rekey", "dtls", "dtls_initial_timeout",
})
_PAIR_SERVER = frozenset({
    "allow_client_renegotiation", "verify_client", "num_tickets", "session_cache",
    "session_tickets",
    "cookie_exchange",
})
_PAIR_CLIENT = frozenset({"verify", "check_hostname", "capath"})


def pair(*, cert=None, key=None, cafile=None, client_cert=None, client_key=None,
         server_hostname="localhost", client_ctx=None, server_ctx=None, **options):
    """pair(**options) -> (client, server): two connections joined in memory,
    handshaken before this returns (TLS 1.3 unless max_version says otherwise;
    DTLS 1.2 with dtls=True, the ends then joined by datagram queues).

    pair(client_ctx=..., server_ctx=..., server_hostname=...) joins two existing
    contexts instead (one pair of contexts for many pairs, as with sockets); no
    other option goes with them.

    Whenever one end would wait for the other, it moves the other end forward
    itself, so a key update request or a renegotiation completes inside ordinary
    reads and writes of either end. Both ends are serialised together.

    cert/key: the server's certificate (default: a throwaway one from
    make_test_cert(server_hostname)); the client trusts cafile (default: cert)
    and checks server_hostname ("localhost"). client_cert/client_key: a client
    certificate, which the server then trusts. Options for both ends:
    min_version, max_version, ciphers, ciphersuites, groups, alpn, keylog,
    ignore_unexpected_eof, release_buffers, no_renegotiation, rekey, dtls,
    dtls_initial_timeout; for the server: allow_client_renegotiation,
    verify_client, num_tickets, session_cache, session_tickets, cookie_exchange; for the client:
    verify, check_hostname, capath.
    """
    server_hostname = _ascii_hostname(server_hostname)
    if client_ctx is not None or server_ctx is not None:
        given = sorted(k for k, v in (("cert", cert), ("key", key), ("cafile", cafile),
                                      ("client_cert", client_cert),
                                      ("client_key", client_key)) if v is not None)
        if given or options:
            raise TypeError("pair(): client_ctx/server_ctx cannot be combined with "
                            + ", ".join(given + sorted(options)))
        for name, ctx in (("client_ctx", client_ctx), ("server_ctx", server_ctx)):
            if not isinstance(ctx, Context):
                raise TypeError(f"{name}: expected a tlsrekey.Context, "
                                f"got {type(ctx).__name__}")
            want = name[:6]
            if ctx.role != want:
                raise ValueError(f"{name}: expected a {want} context, got a "
                                 f"{ctx.role} context")
        return _tlsrekey._pair(client_ctx, server_ctx, server_hostname)
    unknown = set(options) - _PAIR_BOTH - _PAIR_SERVER - _PAIR_CLIENT
    if unknown:
        raise TypeError(f"pair() got unexpected options: {', '.join(sorted(unknown))}")
    if cert is None:
        if key is not None:
            raise ValueError("key: given without cert")
        cert, key = _end_context(lambda: make_test_cert(server_hostname or "localhost"),
                                 {"common_name": "server_hostname"})
    both = {k: v for k, v in options.items() if k in _PAIR_BOTH}
    server_opts = {k: v for k, v in options.items() if k in _PAIR_SERVER}
    client_opts = {k: v for k, v in options.items() if k in _PAIR_CLIENT}
    if client_cert is not None:
        server_opts.setdefault("cafile", client_cert)
    # The server's first: the client trusts its certificate, and a bad one is `cert`.
    server_ctx = _end_context(lambda: Context.server(cert, key, **both, **server_opts),
                              {"cafile/capath": "client_cert"})
    client_ctx = _end_context(
        lambda: Context.client(cert if cafile is None else cafile, cert=client_cert,
                               key=client_key, **both, **client_opts),
        {"cert": "client_cert", "key": "client_key",
         "cafile/capath": "cert" if cafile is None else "cafile"})
    return _tlsrekey._pair(client_ctx, server_ctx, server_hostname)


def _ascii_hostname(name):
    """server_hostname as SNI and certificates carry it: an internationalized name
    in its IDNA form (xn--...), as ssl does; connect(), wrap() and memory() do the
    same in the C half. pair() needs it first, to name its test certificate."""
    if isinstance(name, str) and not name.isascii():
        try:
            return name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"server_hostname: {name!r} has no IDNA form ({exc})") \
                from None
    return name


def _end_context(make, names):
    """make() for one end of pair(): a ValueError names pair()'s option
    (client_cert), not the context option the value went to (cert), which the
    caller never wrote."""
    try:
        return make()
    except ValueError as exc:
        option, sep, rest = str(exc).partition(": ")
        if sep and option in names:
            raise ValueError(f"{names[option]}: {rest}") from None
        raise

