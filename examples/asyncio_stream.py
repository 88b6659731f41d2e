"""asyncio streams that update their keys while they stream.

tlsrekey.asyncio.start_server / open_connection give an asyncio.StreamReader and a
StreamWriter that also has key_update(), renegotiate(), renegotiate_pending(),
get_key_update_type() and stats. Here three clients each stream 4 MiB to an echo
server on 127.0.0.1, updating their keys every 512 KiB (every other time asking the
server for its own update, which the server's protocol answers at once), while the
server updates its own keys every 1 MiB it echoes. Every byte is checked.

    python examples/asyncio_stream.py
"""
import asyncio
import hashlib
import os

import tlsrekey
import tlsrekey.asyncio

CLIENTS = 3
TOTAL = 4 * 1024 * 1024
CHUNK = 64 * 1024
CLIENT_REKEY = 512 * 1024
SERVER_REKEY = 1024 * 1024


async def echo(reader: asyncio.StreamReader, writer: tlsrekey.asyncio.StreamWriter) -> None:
    since_rekey = 0
    while data := await reader.read(CHUNK):
        writer.write(data)
        since_rekey += len(data)
        if since_rekey >= SERVER_REKEY:
            since_rekey = 0
            writer.key_update()
        await writer.drain()
    stats = writer.stats
    print("server side of a connection: key updates sent %d, received %d"
          % (stats["key_updates_sent"], stats["key_updates_received"]))
    writer.close()


async def client(n: int, port: int, ctx: tlsrekey.Context) -> None:
    reader, writer = await tlsrekey.asyncio.open_connection(
        "127.0.0.1", port, ctx=ctx, server_hostname="localhost")
    sent, got = hashlib.sha256(), hashlib.sha256()

    async def send() -> None:
        since_rekey, updates = 0, 0
        for _ in range(TOTAL // CHUNK):
            data = os.urandom(CHUNK)
            sent.update(data)
            writer.write(data)
            since_rekey += len(data)
            if since_rekey >= CLIENT_REKEY:
                since_rekey = 0
                updates += 1
                writer.key_update(tlsrekey.KEY_UPDATE_REQUESTED if updates % 2
                                  else tlsrekey.KEY_UPDATE_NOT_REQUESTED)
            await writer.drain()

    async def receive() -> None:
        left = TOTAL
        while left:
            data = await reader.read(min(left, CHUNK))
            if not data:
                raise ConnectionError("the server closed early")
            got.update(data)
            left -= len(data)

    await asyncio.gather(send(), receive())
    assert got.digest() == sent.digest(), "the echo differs"
    stats = writer.stats
    print("client %d: %s, echo intact; key updates sent %d (requests %d), received %d"
          % (n, writer.connection.version, stats["key_updates_sent"],
             stats["key_update_requests_sent"], stats["key_updates_received"]))
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    cert, key = tlsrekey.make_test_cert("localhost")
    server_ctx = tlsrekey.Context.server(cert, key)
    client_ctx = tlsrekey.Context.client(cafile=cert)
    server = await tlsrekey.asyncio.start_server(echo, "127.0.0.1", 0, ctx=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await asyncio.gather(*(client(n, port, client_ctx) for n in range(CLIENTS)))
        await asyncio.sleep(0.05)          # let the handlers see the clients' close


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 30))
