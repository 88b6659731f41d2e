"""Long-haul runs for `make soak` (not part of make test): ten thousand key updates
over real sockets and against real peers, every byte verified, and a thousand
renegotiations. SOAK_KEY_UPDATES / SOAK_RENEGOTIATIONS change the counts."""
import os
import socket
import sys
import threading

import pytest

import tlsrekey

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import peers  # noqa: E402

UPDATES = int(os.environ.get("SOAK_KEY_UPDATES", "10000"))
RENEGOTIATIONS = int(os.environ.get("SOAK_RENEGOTIATIONS", "1000"))
TIMEOUT = 20.0
CERT, KEY = tlsrekey.make_test_cert()


def chunk(i):
    return (b"%08d|" % i) * (1 + i % 13)


def read_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        data = conn.read(n - len(buf))
        assert data, "closed after %d of %d bytes" % (len(buf), n)
        buf += data
    return bytes(buf)


def echo_server(conn):
    while True:
        data = conn.read()
        if not data:
            break
        conn.write(data)
    conn.shutdown()


def socket_link(**options):
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    client = tlsrekey.Context.client(CERT, **{k: v for k, v in options.items()
                                              if k != "allow_client_renegotiation"}
                                     ).wrap(a, server_hostname="localhost")
    server = tlsrekey.Context.server(CERT, KEY, **options).wrap(b)
    t = threading.Thread(target=server.do_handshake, daemon=True)
    t.start()
    client.do_handshake()
    t.join(TIMEOUT)
    return client, server, (a, b)


def test_key_updates_over_a_socket_pair():
    client, server, socks = socket_link()
    t = threading.Thread(target=echo_server, args=(server,), daemon=True)
    t.start()
    try:
        for i in range(UPDATES):
            client.key_update(tlsrekey.KEY_UPDATE_REQUESTED if i % 2
                              else tlsrekey.KEY_UPDATE_NOT_REQUESTED)
            data = chunk(i)
            client.write(data)
            assert read_exact(client, len(data)) == data
        client.shutdown()
        t.join(TIMEOUT)
        assert not t.is_alive()
        assert client.stats["key_updates_sent"] == UPDATES
        assert server.stats["key_updates_received"] == UPDATES
        assert client.stats["key_updates_received"] == server.stats["key_updates_sent"]
        assert client.stats["key_updates_received"] == UPDATES // 2
    finally:
        for s in socks:
            s.close()


def test_renegotiations_over_a_socket_pair():
    client, server, socks = socket_link(max_version="TLSv1.2",
                                        allow_client_renegotiation=True)
    t = threading.Thread(target=echo_server, args=(server,), daemon=True)
    t.start()
    try:
        for i in range(RENEGOTIATIONS):
            (client.renegotiate_abbreviated if i % 2 else client.renegotiate)()
            data = chunk(i)
            client.write(data)
            assert read_exact(client, len(data)) == data
        client.shutdown()
        t.join(TIMEOUT)
        assert client.stats["renegotiations"] == RENEGOTIATIONS
        assert server.stats["renegotiations"] == RENEGOTIATIONS
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    class C:
        pass
    d = tmp_path_factory.mktemp("soak-certs")
    (d / "cert.pem").write_bytes(CERT)
    (d / "key.pem").write_bytes(KEY)
    c = C()
    c.ca = str(d / "cert.pem")
    c.client = (str(d / "cert.pem"), str(d / "key.pem"))
    c.server = lambda kind: (str(d / "cert.pem"), str(d / "key.pem"))
    return c


@pytest.mark.parametrize("name", ["openssl", "python-ssl", "pyOpenSSL", "LuaSec"])
def test_key_updates_against_a_real_peer(certs, name):
    """GnuTLS is left out: it refuses more than 8 key updates a second."""
    peer = peers.start_server(name, peers.Spec(certs))
    try:
        conn = tlsrekey.Context.client(certs.ca).connect(
            "127.0.0.1", peer.port, server_hostname="localhost", timeout=TIMEOUT)
        conn.do_handshake()
        for i in range(UPDATES):
            conn.key_update(tlsrekey.KEY_UPDATE_REQUESTED if i % 2
                            else tlsrekey.KEY_UPDATE_NOT_REQUESTED)
            data = peers.text_data("%d" % i, 40) if not peer.binary else chunk(i)
            conn.write(data)
            if not peer.echoes:
                peer.relay(data)
            assert read_exact(conn, len(data)) == data
        assert conn.stats["key_updates_sent"] == UPDATES
        assert conn.stats["key_updates_received"] == UPDATES // 2
        conn.close()
    finally:
        peer.stop()
