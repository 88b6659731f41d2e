"""make demo, the Python half.

TLS 1.3: a client and a server over a real socket on 127.0.0.1 (the server's calls
run in a thread of their own), the client's key update with update_requested, and
the server answering with its own. TLS 1.2: tlsrekey.pair() in memory, renegotiation
started by the client and then by the server (HelloRequest). Each end's events and
counters are printed.
"""
import socket
from concurrent.futures import ThreadPoolExecutor

import tlsrekey

TIMEOUT = 10.0


def say(text):
    print("  " + text)


class Events:
    """Collects both ends' events (callbacks run on whichever thread drives a
    connection) and prints them between steps, so the output is in order."""

    def __init__(self):
        self.seen = []

    def watch(self, conn):
        conn.set_event_callback(self.seen.append)

    def show(self):
        for ev in self.seen:
            what = ev["name"]
            if "request_update" in ev:
                what += " (update_requested)" if ev["request_update"] else " (update_not_requested)"
            elif "alert_text" in ev:
                what += " (%s)" % ev["alert_text"]
            say("      %-6s event: %s" % (ev["role"], what))
        self.seen.clear()


def counters(client, server, names):
    cs, ss = client.stats, server.stats
    say("%-30s %8s %8s" % ("counter", "client", "server"))
    for k in names:
        say("%-30s %8d %8d" % (k, cs[k], ss[k]))


def tls13_over_a_socket():
    print("\nTLS 1.3: key update, over a socket")
    cert, key = tlsrekey.make_test_cert("localhost")
    server_ctx = tlsrekey.Context.server(cert, key)
    client_ctx = tlsrekey.Context.client(cafile=cert)
    events = Events()
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="server") as thread:
        port = listener.getsockname()[1]

        def accept():
            sock, _ = listener.accept()
            sock.settimeout(TIMEOUT)
            conn = server_ctx.wrap(sock)
            conn.do_handshake()
            return conn, sock

        accepting = thread.submit(accept)
        client = client_ctx.connect("127.0.0.1", port, server_hostname="localhost",
                                    timeout=TIMEOUT)
        client.do_handshake()
        server, server_sock = accepting.result(TIMEOUT)

        def on_server(fn, *args):
            """Runs one call of the server's in its thread and waits for it."""
            return thread.submit(fn, *args).result(TIMEOUT)

        def send(data, to_server=True):
            src, dst = (client, server) if to_server else (server, client)
            say("%s -> %s: %r" % (src.role, dst.role, data))
            if to_server:
                client.write(data)
                got = on_server(server.read)
            else:
                on_server(server.write, data)
                got = client.read()
            assert got == data, (got, data)
            events.show()

        events.watch(client)
        events.watch(server)
        say("handshaken on 127.0.0.1:%d: %s, %s" % (port, client.version, client.cipher))
        send(b"hello")

        client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
        say("client.key_update(KEY_UPDATE_REQUESTED): scheduled, nothing sent yet")
        say("client.get_key_update_type() -> %r" % client.get_key_update_type())
        send(b"after the update")
        say("client.get_key_update_type() -> %r (sent with that write)"
            % client.get_key_update_type())
        say("server.get_key_update_type() -> %r (the reply it owes)"
            % server.get_key_update_type())
        send(b"ok", to_server=False)
        say("server.get_key_update_type() -> %r (replied with that write)"
            % server.get_key_update_type())
        counters(client, server, ["key_updates_sent", "key_updates_received",
                                  "key_update_requests_sent",
                                  "key_update_requests_received"])
        client.close()
        on_server(server.close)
        server_sock.close()


def tls12_in_memory():
    print("\nTLS 1.2: renegotiation, tlsrekey.pair() in memory")
    client, server = tlsrekey.pair(max_version="TLSv1.2", allow_client_renegotiation=True)
    events = Events()
    events.watch(client)
    events.watch(server)

    def send(src, dst, data):
        say("%s -> %s: %r" % (src.role, dst.role, data))
        src.write(data)
        got = dst.read()
        assert got == data, (got, data)
        events.show()

    def pending():
        say("pending: client %s, server %s; session reused: %s"
            % (client.renegotiate_pending(), server.renegotiate_pending(),
               client.session_reused))

    say("handshaken: %s, %s" % (client.version, client.cipher))
    client.renegotiate()
    say("client.renegotiate() (full)   pending: %s" % client.renegotiate_pending())
    send(client, server, b"during")
    send(server, client, b"done")
    pending()

    server.renegotiate()
    say("server.renegotiate() (HelloRequest)   pending: %s" % server.renegotiate_pending())
    send(server, client, b"ping")
    send(client, server, b"pong")
    pending()
    counters(client, server, ["handshakes", "renegotiations", "hello_requests_sent",
                              "hello_requests_received"])
    client.close()
    server.close()


def main():
    print("tlsrekey %s (Python) on %s" % (tlsrekey.__version__, tlsrekey.OPENSSL_VERSION))
    tls13_over_a_socket()
    tls12_in_memory()


if __name__ == "__main__":
    main()
