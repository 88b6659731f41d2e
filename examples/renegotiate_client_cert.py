"""A TLS 1.2 server that asks for a client certificate only when it needs one.

The classic use of renegotiation: the connection starts without client
authentication; when the client asks for something private, the server calls
set_verify_client() and renegotiate() on that one connection. The HelloRequest makes
the client start a new handshake, answered from inside its ordinary read (OpenSSL
does this without application code), in which it presents its certificate.

The server keeps reading while the renegotiation is pending (renegotiate_pending()):
its own do_handshake() only sends the HelloRequest; the rest of the handshake arrives
as records it must read. It reads non-blocking, so that it does not wait for
application data the client will not send before it gets its answer.

(TLS 1.3 has no renegotiation; its post-handshake authentication is another
mechanism.)

    python examples/renegotiate_client_cert.py
"""
import select
import socket
import threading

import tlsrekey

TIMEOUT = 10.0


def renegotiate_for_certificate(conn: tlsrekey.Connection, sock: socket.socket) -> bytes:
    """Asks this connection's client for a certificate; returns any application data
    read while the new handshake completed."""
    conn.set_verify_client(required=True)
    conn.renegotiate()
    conn.do_handshake()                  # sends the HelloRequest and returns
    conn.settimeout(0)
    early = b""
    try:
        while conn.renegotiate_pending():
            # records read ahead wait inside the connection: ask pending() first
            if conn.pending() == 0 and not select.select([sock], [], [], TIMEOUT)[0]:
                raise TimeoutError("the client did not renegotiate")
            try:
                early += conn.read()
            except tlsrekey.WantReadError:
                pass
    finally:
        conn.settimeout(TIMEOUT)
    return early


def serve(listener: socket.socket, ctx: tlsrekey.Context) -> None:
    sock, _ = listener.accept()
    with sock:
        sock.settimeout(TIMEOUT)
        conn = ctx.wrap(sock)
        pending = b""
        while True:
            while b"\n" not in pending:
                data = conn.read()
                if not data:
                    conn.close()
                    return
                pending += data
            line, _, pending = pending.partition(b"\n")
            if line == b"GET /public":
                conn.write(b"public: anyone may read this\n")
            elif line == b"GET /private":
                if conn.peer_certificate is None:
                    print("server: /private needs a certificate: renegotiating")
                    pending += renegotiate_for_certificate(conn, sock)
                cert = conn.peer_certificate
                assert cert is not None
                conn.write(b"private: hello %s\n" % cert["subject"].encode())
            else:
                conn.write(b"unknown\n")


def read_line(conn: tlsrekey.Connection) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        data = conn.read()
        if not data:
            raise ConnectionError("the server closed the connection")
        line += data
    return line


def main() -> None:
    server_cert, server_key = tlsrekey.make_test_cert("localhost")
    client_cert, client_key = tlsrekey.make_test_cert("alice")
    # The server trusts the client's (self-signed) certificate; it asks for none yet.
    server_ctx = tlsrekey.Context.server(server_cert, server_key, cafile=client_cert,
                                         max_version="TLSv1.2")
    client_ctx = tlsrekey.Context.client(cafile=server_cert, cert=client_cert,
                                         key=client_key, max_version="TLSv1.2")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        server = threading.Thread(target=serve, args=(listener, server_ctx))
        server.start()
        with client_ctx.connect("127.0.0.1", port, server_hostname="localhost",
                                timeout=TIMEOUT) as conn:
            conn.set_event_callback(
                lambda ev: print("client event:", ev["name"])
                if ev["name"] != "handshake_start" else None)
            conn.do_handshake()
            print("connected:", conn.version, conn.cipher)
            conn.write(b"GET /public\n")
            print(read_line(conn).decode().strip())
            conn.write(b"GET /private\n")
            print(read_line(conn).decode().strip())
            stats = conn.stats
            print("client: HelloRequests received %d, renegotiations %d"
                  % (stats["hello_requests_received"], stats["renegotiations"]))
            assert stats["renegotiations"] == 1
            conn.shutdown()
        server.join(TIMEOUT)


if __name__ == "__main__":
    main()
