"""Contexts: safe defaults, certificate material from files and memory, versions,
ciphers, ALPN, client certificates, the key log, connect()."""
import errno
import gc
import os
import pathlib
import socket
import stat
import weakref

import pytest

import tlsrekey

from conftest import TIMEOUT, Concurrent, catch, memory_handshake


def handshake(client_ctx, server_ctx, server_hostname="localhost"):
    """Handshake two contexts over memory transports; returns (client, server)."""
    client = client_ctx.memory(server_hostname)
    server = server_ctx.memory()
    memory_handshake(client, server)
    return client, server


# -- defaults -------------------------------------------------------------------

def test_client_defaults_are_safe():
    ctx = tlsrekey.Context.client()
    assert ctx.role == "client"
    assert ctx.check_hostname is True
    assert isinstance(ctx, tlsrekey.Context)


def test_client_verifies_by_default_against_the_system_store(test_cert):
    # Our throwaway certificate is in no system store: verification must fail.
    client, server = tlsrekey.Context.client(), tlsrekey.Context.server(*test_cert)
    with pytest.raises(tlsrekey.CertificateError):
        handshake(client, server)


def test_client_needs_a_server_hostname_when_checking_names(test_cert):
    ctx = tlsrekey.Context.client(test_cert[0])
    with pytest.raises(ValueError, match="server_hostname"):
        ctx.memory()
    a, b = socket.socketpair()
    try:
        with pytest.raises(ValueError, match="server_hostname"):
            ctx.wrap(a)
    finally:
        a.close()
        b.close()


def test_verify_false_accepts_any_server_and_checks_no_name(test_cert):
    ctx = tlsrekey.Context.client(verify=False)
    assert ctx.check_hostname is False
    client, server = handshake(ctx, tlsrekey.Context.server(*test_cert), None)
    assert client.version == "TLSv1.3"
    assert client.peer_certificate["subject"] == "CN=localhost"


def test_check_hostname_false_accepts_another_name(test_cert):
    ctx = tlsrekey.Context.client(test_cert[0], check_hostname=False)
    client, _ = handshake(ctx, tlsrekey.Context.server(*test_cert), "other.example")
    assert client.state == "established"


def test_ip_address_server_hostname_is_checked_against_the_san(test_cert):
    ctx = tlsrekey.Context.client(test_cert[0])
    client, _ = handshake(ctx, tlsrekey.Context.server(*test_cert), "127.0.0.1")
    assert ("IP Address", "127.0.0.1") in client.peer_certificate["san"]
    with pytest.raises(tlsrekey.CertificateError):
        handshake(ctx, tlsrekey.Context.server(*test_cert), "127.0.0.2")


def test_server_needs_a_certificate():
    with pytest.raises(TypeError, match="cert"):
        tlsrekey.Context.server()


def test_a_context_whose_handshakes_could_only_fail_is_refused_naming_the_option(
        test_cert):
    """A server needs its certificate's key, and a key needs its certificate: refused
    where the context is made, naming the option, not later as "no shared cipher"."""
    cert, key = test_cert
    with pytest.raises(ValueError, match=r"^key: "):
        tlsrekey.Context.server(cert)                       # no key in cert's PEM
    with pytest.raises(ValueError, match=r"^cert: "):
        tlsrekey.Context.server(b"garbage", key)
    with pytest.raises(ValueError, match=r"^cert: "):
        tlsrekey.Context.client(cert, key=key)              # a client key, no cert
    with pytest.raises(ValueError, match=r"^key: "):
        tlsrekey.Context.client(cert, cert=cert)            # a client cert, no key
    # the key may come in the certificate's own PEM
    client, server = tlsrekey.pair(client_ctx=tlsrekey.Context.client(cert),
                                   server_ctx=tlsrekey.Context.server(cert + key))
    client.write(b"x")
    assert server.read() == b"x"


def test_a_context_can_be_weakly_referenced(test_cert):
    """A cache of contexts keyed weakly (as people keep ssl.SSLContext objects) works:
    the reference lives as long as the context, which its connections keep alive."""
    ctx = tlsrekey.Context.server(*test_cert)
    ref = weakref.ref(ctx)
    cache = weakref.WeakValueDictionary(server=ctx)
    assert ref() is ctx and cache["server"] is ctx
    client, server = tlsrekey.pair(client_ctx=tlsrekey.Context.client(test_cert[0]),
                                   server_ctx=ctx)
    del ctx
    gc.collect()
    assert ref() is not None                 # the server connection keeps it
    server.close()
    del client, server
    gc.collect()
    assert ref() is None and "server" not in cache
    bare = tlsrekey._tlsrekey.Context("client")   # the C type alone, too
    assert weakref.ref(bare)() is bare


def test_an_internationalized_server_hostname_goes_in_its_idna_form():
    """SNI and certificate names are ASCII: a str server_hostname is IDNA-encoded, as
    ssl does, wherever one is taken; one without an IDNA form is a ValueError naming
    server_hostname (pair() used to blame its test certificate's common_name)."""
    client, server = tlsrekey.pair(server_hostname="bücher.example")
    assert ("DNS", "xn--bcher-kva.example") in client.peer_certificate["san"]
    client.write(b"x")
    assert server.read() == b"x"
    cert, key = tlsrekey.make_test_cert("xn--bcher-kva.example")
    client_ctx, server_ctx = tlsrekey.Context.client(cert), tlsrekey.Context.server(cert, key)
    tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx,
                  server_hostname="bücher.example")
    handshake(client_ctx, server_ctx, server_hostname="bücher.example")
    with pytest.raises(tlsrekey.CertificateError):      # and it is still checked
        handshake(client_ctx, server_ctx, server_hostname="müller.example")
    for bad in ("bü..cher.example", "x" * 70):
        with pytest.raises(ValueError, match="^server_hostname: "):
            tlsrekey.pair(server_hostname=bad)
    with pytest.raises(ValueError, match="server_hostname"):
        client_ctx.memory("bü..cher.example")


def test_bare_context_takes_a_role():
    assert tlsrekey.Context("server").role == "server"
    with pytest.raises(ValueError, match="role"):
        tlsrekey.Context("peer")


# -- certificate material -----------------------------------------------------

@pytest.mark.parametrize("form", ["str", "pathlike", "bytes", "combined"])
def test_certificate_and_key_from_files_or_memory(cert_files, test_cert, form):
    if form == "str":
        cert, key = str(cert_files / "cert.pem"), str(cert_files / "key.pem")
    elif form == "pathlike":
        cert, key = cert_files / "cert.pem", cert_files / "key.pem"
    elif form == "bytes":
        cert, key = test_cert
    else:
        cert, key = cert_files / "combined.pem", None       # key in the same file
    server_ctx = tlsrekey.Context.server(cert, key)
    cafile = cert if form != "combined" else cert_files / "cert.pem"
    client, _ = handshake(tlsrekey.Context.client(cafile), server_ctx)
    assert client.peer_certificate["der"]


def test_cafile_as_capath_directory(tmp_path, test_cert):
    # capath wants hashed names; a directory without them trusts nothing.
    client_ctx = tlsrekey.Context.client(capath=tmp_path)
    with pytest.raises(tlsrekey.CertificateError):
        handshake(client_ctx, tlsrekey.Context.server(*test_cert))


def test_missing_certificate_file_is_value_error(tmp_path, test_cert):
    with pytest.raises(ValueError, match="cert"):
        tlsrekey.Context.server(tmp_path / "nope.pem", test_cert[1])


def test_garbage_pem_is_value_error(test_cert):
    with pytest.raises(ValueError):
        tlsrekey.Context.server(b"not a certificate", test_cert[1])


def test_key_that_does_not_match_is_value_error(test_cert, other_cert):
    with pytest.raises(ValueError, match="mismatch"):
        tlsrekey.Context.server(test_cert[0], other_cert[1])


def test_certificate_of_wrong_type_is_type_error():
    with pytest.raises(TypeError):
        tlsrekey.Context.server(12345, None)


def test_make_test_cert(tmp_path):
    cert, key = tlsrekey.make_test_cert("example.test")
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in key
    client, server = tlsrekey.pair(cert=cert, key=key, server_hostname="example.test")
    info = client.peer_certificate
    assert info["subject"] == "CN=example.test"
    assert info["issuer"] == "CN=example.test"
    assert ("DNS", "example.test") in info["san"]
    assert info["not_before"] < info["not_after"]
    with pytest.raises(ValueError):
        tlsrekey.make_test_cert("")
    with pytest.raises(ValueError):
        tlsrekey.make_test_cert("x" * 100)


# -- versions, ciphers, groups ------------------------------------------------

def test_versions(test_cert):
    c, s = tlsrekey.pair(max_version="TLSv1.2")
    assert c.version == s.version == "TLSv1.2"
    c, s = tlsrekey.pair(min_version="TLSv1.3")
    assert c.version == "TLSv1.3"


def test_version_mismatch_fails_the_handshake(test_cert):
    client_ctx = tlsrekey.Context.client(test_cert[0], min_version="TLSv1.3")
    server_ctx = tlsrekey.Context.server(*test_cert, max_version="TLSv1.2")
    with pytest.raises(tlsrekey.ProtocolError):
        handshake(client_ctx, server_ctx)


@pytest.mark.parametrize("option", ["min_version", "max_version"])
def test_unknown_version_is_value_error_naming_the_option(option):
    with pytest.raises(ValueError, match=option):
        tlsrekey.Context.client(**{option: "TLSv9"})
    with pytest.raises(TypeError, match=option):
        tlsrekey.Context.client(**{option: 1.3})


def test_min_above_max_is_value_error():
    with pytest.raises(ValueError):
        tlsrekey.Context.client(min_version="TLSv1.3", max_version="TLSv1.2")


def test_ciphersuites_and_ciphers_are_used():
    c, _ = tlsrekey.pair(ciphersuites="TLS_CHACHA20_POLY1305_SHA256")
    assert c.cipher == "TLS_CHACHA20_POLY1305_SHA256"
    c, _ = tlsrekey.pair(max_version="TLSv1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert c.cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.mark.parametrize("option", ["ciphers", "ciphersuites", "groups"])
def test_unknown_cipher_names_are_value_errors_naming_the_option(option):
    with pytest.raises(ValueError, match=option):
        tlsrekey.Context.client(**{option: "NO-SUCH-THING"})


def test_groups_are_used():
    c, s = tlsrekey.pair(groups="P-256")
    assert c.version == "TLSv1.3"
    assert c.group == s.group == "secp256r1"
    c.write(b"x")
    assert s.read() == b"x"


def test_group_names_the_key_exchange_of_each_version(test_cert):
    c, s = tlsrekey.pair()
    # OpenSSL's default first choice: x25519 on 3.0, the hybrid X25519MLKEM768 on 3.5
    assert c.group == s.group and c.group
    # TLS 1.2 ECDHE: the certificate's curve must stay usable for its signature
    c, s = tlsrekey.pair(max_version="TLSv1.2", groups="P-384:P-256")
    assert c.version == "TLSv1.2" and c.group == s.group == "secp384r1"
    client_ctx = tlsrekey.Context.client(test_cert[0], groups="X25519:P-256")
    server_ctx = tlsrekey.Context.server(*test_cert)
    c, s = tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx)
    assert c.group == "x25519"
    c.close()
    assert c.group is None


def test_group_is_none_before_the_handshake(test_cert):
    c = tlsrekey.Context.client(test_cert[0]).memory(server_hostname="localhost")
    assert c.group is None


def test_pair_joins_existing_contexts(test_cert):
    client_ctx = tlsrekey.Context.client(test_cert[0])
    server_ctx = tlsrekey.Context.server(*test_cert)
    ends = [tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx) for _ in range(3)]
    for i, (c, s) in enumerate(ends):
        c.key_update(tlsrekey.KeyUpdateType.REQUESTED)
        c.write(b"%d" % i)
        assert s.read() == b"%d" % i
        s.write(b"ok")
        assert c.read() == b"ok"
        # the request crossed, and the server's reply came back
        assert c.stats["key_updates_sent"] == 1 and c.stats["key_updates_received"] == 1
        assert s.stats["key_updates_received"] == 1
    # the server name is checked against the certificate as usual
    with pytest.raises(tlsrekey.CertificateError):
        tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx,
                      server_hostname="elsewhere.example")


def test_pair_with_contexts_rejects_bad_input(test_cert):
    client_ctx = tlsrekey.Context.client(test_cert[0])
    server_ctx = tlsrekey.Context.server(*test_cert)
    with pytest.raises(TypeError, match="server_ctx"):
        tlsrekey.pair(client_ctx=client_ctx)
    with pytest.raises(TypeError, match="client_ctx"):
        tlsrekey.pair(client_ctx="ctx", server_ctx=server_ctx)
    with pytest.raises(ValueError, match="client_ctx: expected a client context"):
        tlsrekey.pair(client_ctx=server_ctx, server_ctx=client_ctx)
    with pytest.raises(TypeError, match="groups"):
        tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx, groups="P-256")
    with pytest.raises(TypeError, match="cert"):
        tlsrekey.pair(client_ctx=client_ctx, server_ctx=server_ctx, cert=test_cert[0])
    # a TLS context with a DTLS one: the refusal names the two arguments
    with pytest.raises(ValueError) as info:
        tlsrekey.pair(client_ctx=client_ctx,
                      server_ctx=tlsrekey.Context.server(*test_cert, dtls=True))
    assert "client_ctx" in str(info.value) and "server_ctx" in str(info.value)


BAD_PEM = b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("option", ["cert", "cafile", "client_cert", "client_key"])
def test_pair_errors_name_the_pairs_own_option(test_cert, option):
    """pair() spreads its options over two contexts (cert also becomes the client's
    cafile, client_cert the server's): an error names the option the caller wrote."""
    cert, key = test_cert
    given = {"cert": {"cert": BAD_PEM, "key": key},
             "cafile": {"cafile": BAD_PEM},
             "client_cert": {"client_cert": BAD_PEM, "client_key": key},
             "client_key": {"client_cert": cert, "client_key": BAD_PEM}}[option]
    with pytest.raises(ValueError, match=f"^{option}: "):
        tlsrekey.pair(**given)
    if option == "client_key":       # a key alone: its certificate is what is missing
        with pytest.raises(ValueError, match="^client_cert: "):
            tlsrekey.pair(client_key=key)


# -- ALPN -----------------------------------------------------------------------

def test_alpn_picks_the_servers_preference():
    c, s = tlsrekey.pair(alpn=["h2", "http/1.1"])
    assert c.alpn == s.alpn == "h2"
    c, s = tlsrekey.pair()
    assert c.alpn is None


def test_alpn_without_overlap_fails(test_cert):
    client_ctx = tlsrekey.Context.client(test_cert[0], alpn=[b"spdy/1"])
    server_ctx = tlsrekey.Context.server(*test_cert, alpn=["h2"])
    with pytest.raises(tlsrekey.ProtocolError, match="application protocol"):
        handshake(client_ctx, server_ctx)


def test_alpn_must_be_a_list():
    with pytest.raises(TypeError):
        tlsrekey.Context.client(alpn="h2")
    with pytest.raises(ValueError):
        tlsrekey.Context.client(alpn=["x" * 300])


# -- client certificates ---------------------------------------------------------

def test_verify_client_required():
    client_cert, client_key = tlsrekey.make_test_cert("client.example")
    c, s = tlsrekey.pair(verify_client=True, client_cert=client_cert,
                         client_key=client_key)
    assert s.peer_certificate["subject"] == "CN=client.example"


def test_verify_client_required_without_a_certificate_fails(test_cert):
    server_ctx = tlsrekey.Context.server(*test_cert, verify_client=True,
                                         cafile=test_cert[0])
    client = tlsrekey.Context.client(test_cert[0]).memory("localhost")
    server = server_ctx.memory()
    outcome = catch(memory_handshake, client, server)()
    assert isinstance(outcome, tlsrekey.Error)
    with pytest.raises(tlsrekey.ProtocolError):
        server.do_handshake()


def test_verify_client_optional_without_a_certificate_succeeds():
    c, s = tlsrekey.pair(verify_client="optional")
    assert s.peer_certificate is None
    assert c.peer_certificate is not None


def test_verify_client_bad_value():
    with pytest.raises(ValueError, match="verify_client"):
        tlsrekey.Context.server(*tlsrekey.make_test_cert(), verify_client="sometimes")


# -- tickets, key log -----------------------------------------------------------

def test_keylog_file_gets_the_secrets(tmp_path):
    path = tmp_path / "keys.log"
    c, s = tlsrekey.pair(keylog=path)
    c.write(b"x")
    assert s.read() == b"x"
    text = path.read_text()
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in text
    assert "CLIENT_TRAFFIC_SECRET_0" in text


def test_keylog_file_is_created_readable_by_its_owner_only(tmp_path):
    """It holds traffic secrets: 0600 whatever the umask allows, 0644 by default."""
    path = tmp_path / "keys.log"
    old = os.umask(0o022)
    try:
        c, s = tlsrekey.pair(keylog=path)
    finally:
        os.umask(old)
    c.write(b"x")
    assert s.read() == b"x"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # an existing file is appended to and keeps the mode its owner gave it
    path.chmod(0o640)
    before = path.read_text()
    c, s = tlsrekey.pair(keylog=path)
    assert path.read_text().startswith(before) and len(path.read_text()) > len(before)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("env", ["set", "unset"])
def test_keylog_true_follows_sslkeylogfile(tmp_path, monkeypatch, env):
    path = tmp_path / "env-keys.log"
    if env == "set":
        monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    else:
        monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    c, s = tlsrekey.pair(keylog=True)
    c.write(b"x")
    assert s.read() == b"x"
    if env == "set":
        assert "CLIENT_TRAFFIC_SECRET_0" in path.read_text()
    else:
        assert not path.exists()


def test_keylog_false_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "never.log"))
    tlsrekey.pair(keylog=False)
    tlsrekey.pair()
    assert not (tmp_path / "never.log").exists()


def test_num_tickets_and_session_cache_options():
    c, s = tlsrekey.pair(num_tickets=0, session_cache=False)
    c.write(b"x")
    assert s.read() == b"x"
    for bad in (-1, 2**40):
        with pytest.raises(ValueError, match="num_tickets"):
            tlsrekey.Context.server(*tlsrekey.make_test_cert(), num_tickets=bad)
    with pytest.raises(TypeError, match="num_tickets"):
        tlsrekey.Context.server(*tlsrekey.make_test_cert(), num_tickets=True)


def test_release_buffers_option():
    c, s = tlsrekey.pair(release_buffers=True)
    for _ in range(3):
        c.write(b"y" * 1000)
        assert s.read() == b"y" * 1000


def test_pair_rejects_unknown_options():
    with pytest.raises(TypeError, match="bogus"):
        tlsrekey.pair(bogus=1)


# -- connect --------------------------------------------------------------------

@pytest.fixture
def tls_listener(test_cert):
    """A one-connection TLS server on 127.0.0.1: echoes one message back."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(TIMEOUT)
    server_ctx = tlsrekey.Context.server(*test_cert)

    def serve():
        sock, _ = lsock.accept()
        with sock:
            sock.settimeout(TIMEOUT)
            with server_ctx.wrap(sock) as conn:
                conn.write(conn.read())
                conn.shutdown()

    worker = Concurrent(serve)
    try:
        yield lsock.getsockname()[1], worker
    finally:
        lsock.close()


def test_connect_opens_and_closes_its_own_socket(tls_listener, test_cert):
    port, worker = tls_listener
    ctx = tlsrekey.Context.client(test_cert[0])
    with ctx.connect("127.0.0.1", port, server_hostname="localhost",
                     timeout=TIMEOUT) as conn:
        assert conn.gettimeout() == TIMEOUT
        fd = conn.fileno()
        assert fd >= 0
        conn.write(b"echo")
        assert conn.read() == b"echo"
        assert conn.read() == b""
        assert conn.context is ctx
    assert conn.fileno() == -1
    with pytest.raises(OSError):
        os.fstat(fd)                       # connect()'s socket was closed by close()
    worker.result()


def test_connect_uses_host_as_the_server_name(tls_listener, test_cert):
    port, worker = tls_listener
    conn = tlsrekey.Context.client(test_cert[0]).connect("localhost", port,
                                                           timeout=TIMEOUT)
    try:
        conn.write(b"hi")
        assert conn.read() == b"hi"
    finally:
        conn.close()
    worker.result()


def test_connect_refused_is_syscall_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                               # nobody listens there now
    with pytest.raises(tlsrekey.SyscallError) as info:
        tlsrekey.Context.client(verify=False).connect("127.0.0.1", port, timeout=TIMEOUT)
    assert info.value.errno == errno.ECONNREFUSED


def test_connect_argument_checks():
    ctx = tlsrekey.Context.client(verify=False)
    with pytest.raises(ValueError, match="port"):
        ctx.connect("127.0.0.1", 0)
    with pytest.raises(ValueError, match="timeout"):
        ctx.connect("127.0.0.1", 1, timeout=-1)
    with pytest.raises(TypeError):
        ctx.connect("127.0.0.1", "443")


def test_path_types_are_accepted_for_keylog(tmp_path):
    tlsrekey.Context.client(keylog=str(tmp_path / "a.log"))
    tlsrekey.Context.client(keylog=pathlib.Path(tmp_path / "b.log"))
