"""A long-lived TLS 1.3 connection that updates its keys as it goes.

A server (in a thread) and a client on 127.0.0.1: the client streams 16 MiB and
gives its connection a rekey policy: before any write that would take the bytes sent
under one key past REKEY_BYTES, the core updates the keys itself, asking the server
to update its own too. For comparison, the first MANUAL_UPDATES updates are made by
hand with key_update(), the way to do it at moments of your own choosing.

The server only reads, so it answers the update requests itself with a zero-length
write (OpenSSL sends the reply lazily, with the next write: a peer that only reads
would otherwise never rotate its keys). Both ends print each KeyUpdate from their
event callbacks ("automatic" marks the policy's), then their counters.

    python examples/periodic_rekey.py
"""
import hashlib
import socket
import threading
from typing import Any

import tlsrekey

TOTAL = 16 * 1024 * 1024
CHUNK = 16 * 1024
REKEY_BYTES = 2 * 1024 * 1024
MANUAL_UPDATES = 2
TIMEOUT = 10.0

print_lock = threading.Lock()


def show(event: dict[str, Any]) -> None:
    """The event callback of both ends (it runs inside the call that saw the message;
    it may read the connection, not drive it)."""
    if not event["name"].startswith("key_update"):
        return
    kind = "requested" if event["request_update"] else "not requested"
    if event.get("automatic"):
        kind += ", automatic"
    stats = event["connection"].stats
    with print_lock:
        print("  %-6s %-20s (%s)  sent %d, received %d" % (
            event["role"], event["name"], kind, stats["key_updates_sent"],
            stats["key_updates_received"]))


def serve(listener: socket.socket, ctx: tlsrekey.Context, result: dict[str, Any]) -> None:
    sock, _ = listener.accept()
    with sock:
        sock.settimeout(TIMEOUT)
        conn = ctx.wrap(sock)
        conn.set_event_callback(show)
        digest = hashlib.sha256()
        received = 0
        while received < TOTAL:
            data = conn.read()
            if not data:
                break
            digest.update(data)
            received += len(data)
            if conn.get_key_update_type() != tlsrekey.KEY_UPDATE_NONE:
                conn.write(b"")            # the reply owed to an update request
        conn.write(digest.digest())
        result["stats"] = conn.stats
        conn.shutdown()
        conn.close()


def main() -> None:
    cert, key = tlsrekey.make_test_cert("localhost")
    server_ctx = tlsrekey.Context.server(cert, key)
    client_ctx = tlsrekey.Context.client(cafile=cert)
    result: dict[str, Any] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        server = threading.Thread(target=serve, args=(listener, server_ctx, result))
        server.start()
        with client_ctx.connect("127.0.0.1", port, server_hostname="localhost",
                                timeout=TIMEOUT) as conn:
            conn.set_event_callback(show)
            conn.do_handshake()
            print("connected: %s %s; streaming %d MiB, new keys every %d MiB"
                  % (conn.version, conn.cipher, TOTAL >> 20, REKEY_BYTES >> 20))
            digest = hashlib.sha256()
            block = bytes(range(256)) * (CHUNK // 256)
            blocks_per_key = REKEY_BYTES // CHUNK
            manual_blocks = MANUAL_UPDATES * blocks_per_key
            for i in range(TOTAL // CHUNK):
                if i < manual_blocks and i % blocks_per_key == blocks_per_key - 1:
                    # By hand: scheduled now, on the wire ahead of this write's data.
                    conn.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
                elif i == manual_blocks:
                    # From here on the core does it, before the write that would
                    # cross the threshold, so no key protects more than REKEY_BYTES.
                    conn.set_rekey_policy(bytes=REKEY_BYTES, request_peer=True)
                conn.write(block)
                digest.update(block)
            answer = conn.read(32)         # the server's digest of what it got
            assert answer == digest.digest(), "the data arrived changed"
            client_stats = conn.stats
            conn.shutdown()
        server.join(TIMEOUT)
    print("data intact (sha256 %s...)" % digest.hexdigest()[:16])
    for name, stats in (("client", client_stats), ("server", result["stats"])):
        print("%-6s key updates sent %d (requests %d), received %d (requests %d)" % (
            name, stats["key_updates_sent"], stats["key_update_requests_sent"],
            stats["key_updates_received"], stats["key_update_requests_received"]))
    print("client: %d updates by hand, %d by the rekey policy"
          % (MANUAL_UPDATES, client_stats["automatic_rekeys"]))
    updates = client_stats["key_updates_sent"]
    assert updates == MANUAL_UPDATES + client_stats["automatic_rekeys"]
    assert client_stats["automatic_rekeys"] >= 1
    assert result["stats"]["key_updates_received"] == updates
    assert client_stats["key_updates_received"] == updates      # every one requested


if __name__ == "__main__":
    main()
