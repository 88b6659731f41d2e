"""Session resumption never satisfies a stricter client-certificate check than the
one that made the session.

A resumed handshake asks for no certificate: it carries over whatever the first
handshake established. So a session made where no certificate was asked for (or
where any certificate was accepted unverified) must not be resumed on a server
connection that requires a verified one. The resuming client here is Python's ssl
module, which keeps sessions across connections (TLS 1.2 session ids and tickets,
TLS 1.3 tickets); the server is tlsrekey over a socket pair.
"""
import socket
import ssl
import threading

import pytest

import tlsrekey
from conftest import TIMEOUT, Concurrent

VERSIONS = [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2]


@pytest.fixture
def files(tmp_path):
    cert, key = tlsrekey.make_test_cert("localhost")
    admin_cert, admin_key = tlsrekey.make_test_cert("admin")     # self-signed, unknown
    paths = {}
    for name, data in (("cert", cert), ("key", key), ("admin_cert", admin_cert),
                       ("admin_key", admin_key)):
        paths[name] = tmp_path / (name + ".pem")
        paths[name].write_bytes(data)
    return paths


def stdlib_client(files, version, client_cert=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(files["cert"])
    ctx.minimum_version = ctx.maximum_version = version
    if client_cert:
        ctx.load_cert_chain(files["admin_cert"], files["admin_key"])
    return ctx


def connect(server_ctx, client_ctx, session=None, server_setup=None):
    """One connection: returns (the server Connection, the client's session,
    session_reused as the client saw it), or raises the handshake's failure."""
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    server = server_ctx.wrap(b)
    if server_setup is not None:
        server_setup(server)

    def serve():
        server.do_handshake()
        data = server.read()          # the client's line; tickets go out meanwhile
        server.write(data)
        return data

    peer = Concurrent(serve)
    try:
        client = client_ctx.wrap_socket(a, server_hostname="localhost", session=session)
        client.sendall(b"hello")
        assert client.recv(100) == b"hello"
        reused = client.session_reused
        sess = client.session
        client.close()
    except BaseException:
        a.close()
        try:
            peer.result()
        except BaseException as exc:  # noqa: BLE001 - the server's side of it
            b.close()
            raise exc
        b.close()
        raise
    peer.result()
    b.close()
    return server, sess, reused


def required_verified(server):
    server.set_verify_client(required=True, verify=True)


def required_any(server):
    server.set_verify_client(required=True, verify=False)


@pytest.mark.parametrize("version", VERSIONS, ids=["TLSv1.3", "TLSv1.2"])
def test_a_session_without_a_certificate_does_not_pass_a_required_check(files, version):
    server_ctx = tlsrekey.Context.server(files["cert"], files["key"], cafile=files["cert"])
    client_ctx = stdlib_client(files, version)
    server, sess, reused = connect(server_ctx, client_ctx)
    assert not reused and server.peer_certificate is None and sess is not None
    # the same client resumes on a connection that requires a verified certificate:
    # it has none, so the handshake must fail (before: it resumed and was let in)
    with pytest.raises((ssl.SSLError, tlsrekey.Error, ConnectionError)):
        server, _, reused = connect(server_ctx, client_ctx, session=sess,
                                    server_setup=required_verified)
        pytest.fail("let in without a certificate (session_reused=%s, peer %s)"
                    % (reused, server.peer_certificate))


@pytest.mark.parametrize("version", VERSIONS, ids=["TLSv1.3", "TLSv1.2"])
def test_an_unverified_certificate_is_not_carried_into_a_verified_connection(files,
                                                                             version):
    server_ctx = tlsrekey.Context.server(files["cert"], files["key"], cafile=files["cert"])
    admin = stdlib_client(files, version, client_cert=True)
    server, sess, reused = connect(server_ctx, admin, server_setup=required_any)
    assert server.peer_certificate is not None          # accepted, unverified
    # resuming into a connection that verifies: the self-signed "admin" certificate
    # must be checked, and fails (before: resumed, peer_certificate showed "admin")
    with pytest.raises((ssl.SSLError, tlsrekey.Error, ConnectionError)):
        server, _, reused = connect(server_ctx, admin, session=sess,
                                    server_setup=required_verified)
        pytest.fail("resumed an unverified certificate as verified (session_reused=%s, "
                    "peer %s)" % (reused, server.peer_certificate))


@pytest.mark.parametrize("version", VERSIONS, ids=["TLSv1.3", "TLSv1.2"])
def test_sessions_still_resume_between_connections_with_the_same_check(files, version):
    """The rule costs nothing where the checks agree: with no certificate asked on
    both connections, and with the same requirement set on both."""
    server_ctx = tlsrekey.Context.server(files["cert"], files["key"], cafile=files["cert"])
    client_ctx = stdlib_client(files, version)
    _, sess, reused = connect(server_ctx, client_ctx)
    server, _, reused = connect(server_ctx, client_ctx, session=sess)
    assert reused and server.session_reused
    admin = stdlib_client(files, version, client_cert=True)
    _, sess, _ = connect(server_ctx, admin, server_setup=required_any)
    server, _, reused = connect(server_ctx, admin, session=sess, server_setup=required_any)
    assert reused and server.session_reused
