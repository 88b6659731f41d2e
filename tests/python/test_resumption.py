"""Session resumption never satisfies a stricter client-certificate check than the
one that made the session.

A resumed handshake asks for no certificate: it carries over whatever the first
handshake established. So a session made where no certificate was asked for (or
where any certificate was accepted unverified) must not be resumed on a server
connection that requires a verified one. The resuming client is `openssl s_client`
(-sess_out, then -sess_in), as in tests/lua/resumption_spec.lua; the server is
tlsrekey on a TCP socket on 127.0.0.1. (Python's ssl module can resume too, but its
`.session` getter leaks the session on CPython 3.11, which the sanitized run would
report.)
"""
import os
import shutil
import socket
import subprocess
import time

import pytest

import tlsrekey
from conftest import TIMEOUT

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command (make deps)")

VERSIONS = ["-tls1_3", "-tls1_2"]


@pytest.fixture
def files(tmp_path):
    cert, key = tlsrekey.make_test_cert("localhost")
    admin_cert, admin_key = tlsrekey.make_test_cert("admin")     # self-signed, unknown
    paths = {}
    for name, data in (("cert", cert), ("key", key), ("admin_cert", admin_cert),
                       ("admin_key", admin_key)):
        paths[name] = tmp_path / (name + ".pem")
        paths[name].write_bytes(data)
    paths["sess"] = tmp_path / "session.pem"
    return paths


def serve_one(server_ctx, files, args, setup=None):
    """One s_client connection (args appended) to a tlsrekey server connection,
    `setup(server)` first. Returns the server connection once it has echoed a line,
    or the exception its handshake raised."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")}
    peer = subprocess.Popen(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile",
         str(files["cert"]), "-servername", "localhost", "-ign_eof"] + args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    sock = None
    try:
        listener.settimeout(TIMEOUT)
        sock, _ = listener.accept()
        sock.settimeout(TIMEOUT)
        server = server_ctx.wrap(sock)
        if setup is not None:
            setup(server)
        try:
            server.do_handshake()
        except tlsrekey.Error as exc:
            return exc
        peer.stdin.write(b"hello\n")
        peer.stdin.flush()
        line = server.read()
        server.write(line)
        time.sleep(0.2)          # the ticket reaches s_client, which writes -sess_out
        return server
    finally:
        peer.kill()
        peer.communicate(timeout=TIMEOUT)
        if sock is not None:
            sock.close()
        listener.close()


def required_verified(server):
    server.set_verify_client(required=True, verify=True)


def required_any(server):
    server.set_verify_client(required=True, verify=False)


def server_context(files):
    return tlsrekey.Context.server(files["cert"], files["key"], cafile=files["cert"])


@pytest.mark.parametrize("version", VERSIONS)
def test_a_session_without_a_certificate_does_not_pass_a_required_check(files, version):
    ctx = server_context(files)
    first = serve_one(ctx, files, [version, "-sess_out", str(files["sess"])])
    assert isinstance(first, tlsrekey.Connection) and first.peer_certificate is None
    # the same session on a connection that requires a verified certificate: the
    # client has none, so the handshake fails (before: it resumed and was let in)
    second = serve_one(ctx, files, [version, "-sess_in", str(files["sess"])],
                       required_verified)
    assert isinstance(second, tlsrekey.Error), (
        "let in without a certificate (session_reused=%s)" % second.session_reused)


@pytest.mark.parametrize("version", VERSIONS)
def test_an_unverified_certificate_is_not_carried_into_a_verified_connection(files,
                                                                             version):
    ctx = server_context(files)
    admin = [version, "-cert", str(files["admin_cert"]), "-key", str(files["admin_key"])]
    first = serve_one(ctx, files, admin + ["-sess_out", str(files["sess"])], required_any)
    assert isinstance(first, tlsrekey.Connection)
    assert first.peer_certificate is not None             # accepted, unverified
    # resumed into a connection that verifies, the self-signed "admin" certificate
    # must be checked, and fails (before: resumed, peer_certificate showed "admin")
    second = serve_one(ctx, files, admin + ["-sess_in", str(files["sess"])],
                       required_verified)
    assert isinstance(second, tlsrekey.Error), (
        "resumed an unverified certificate as verified: %s" % second.peer_certificate)


@pytest.mark.parametrize("version", VERSIONS)
def test_sessions_still_resume_between_connections_with_the_same_check(files, version):
    """The rule costs nothing where the checks agree: with no certificate asked on
    both connections, and with the same requirement set on both."""
    ctx = server_context(files)
    serve_one(ctx, files, [version, "-sess_out", str(files["sess"])])
    again = serve_one(ctx, files, [version, "-sess_in", str(files["sess"])])
    assert isinstance(again, tlsrekey.Connection) and again.session_reused
    admin = [version, "-cert", str(files["admin_cert"]), "-key", str(files["admin_key"])]
    serve_one(ctx, files, admin + ["-sess_out", str(files["sess"])], required_any)
    again = serve_one(ctx, files, admin + ["-sess_in", str(files["sess"])], required_any)
    assert isinstance(again, tlsrekey.Connection) and again.session_reused
