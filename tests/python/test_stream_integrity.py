"""Every byte of a stream arrives once and in order over a real socket, whatever the
records, key changes and read pattern; and pending() keeps its promise.

A tlsrekey server writes records of random sizes over TCP on 127.0.0.1, with key
updates (requested and not) on TLS 1.3 and renegotiations on TLS 1.2 between them.
A tlsrekey client reads them with random read sizes, switching between blocking,
timeout and non-blocking modes. The non-blocking reader polls: it reads while
pending() says something is waiting or the socket is readable, and otherwise waits
on the socket. Once the server has written everything, a reader that comes to rest
(pending() 0, socket not readable) must hold the whole stream: a record hidden inside
the library while pending() says 0 would hang a real poller.
"""
import hashlib
import random
import select
import socket
import threading

import pytest

import tlsrekey
from conftest import TIMEOUT, Concurrent

SEEDS = range(8)


def _stream_pieces(rng, count):
    """(action, data) steps of the server: action is None, "ku", "ku-req" or
    "reneg"; data is what it writes after it."""
    steps = []
    for i in range(count):
        r = rng.random()
        action = None
        if r < 0.12:
            action = "ku"
        elif r < 0.24:
            action = "ku-req"
        elif r < 0.30:
            action = "reneg"
        size = rng.choice([1, 5, 64, rng.randrange(1, 3000), rng.randrange(1, 16385),
                           rng.randrange(16385, 40001)])
        seed = hashlib.sha256(b"%d" % i).digest()
        data = (seed * (size // len(seed) + 1))[:size]
        steps.append((action, data))
    return steps


def _tcp_pair():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        a = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
        b, _ = listener.accept()
    finally:
        listener.close()
    b.settimeout(TIMEOUT)
    return a, b


def _readable(sock, timeout):
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_stream_with_key_changes_arrives_whole_in_every_read_mode(test_cert, version,
                                                                    seed):
    rng = random.Random("%s-%d" % (version, seed))
    cert, key = test_cert
    steps = _stream_pieces(rng, 60)
    if version == "TLSv1.3":
        steps = [("ku" if a == "reneg" else a, d) for a, d in steps]
    else:
        steps = [("reneg" if a in ("ku", "ku-req") else a, d) for a, d in steps]
    expected = b"".join(d for _, d in steps)

    a, b = _tcp_pair()
    server_ctx = tlsrekey.Context.server(cert, key, max_version=version)
    client_ctx = tlsrekey.Context.client(cert, max_version=version)
    client = client_ctx.wrap(a, server_hostname="localhost")
    server = server_ctx.wrap(b)
    done = threading.Event()
    stop = threading.Event()

    def serve():
        server.settimeout(TIMEOUT)
        server.do_handshake()
        for action, data in steps:
            if stop.is_set():
                return
            if action == "ku":
                server.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
            elif action == "ku-req":
                server.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
            elif action == "reneg":
                server.renegotiate()
                _finish_renegotiation(server)
            server.write(data)
        done.set()
        # Stay until the client has read all: a requested update's reply and the
        # client's renegotiation messages come to us while it reads.
        while not stop.is_set():
            server.settimeout(0.05)
            try:
                server.read()
            except (tlsrekey.WantReadError, tlsrekey.TimeoutError):
                pass
            except tlsrekey.ZeroReturnError:
                return

    writer = Concurrent(serve)
    got = bytearray()
    try:
        client.settimeout(TIMEOUT)
        client.do_handshake()
        rests = 0
        while True:
            mode = rng.choice(["blocking", "timeout", "poll", "poll"])
            want = rng.choice([1, 7, 100, 4096, 16384, 65536])
            if mode != "poll":
                if len(got) == len(expected):
                    break
                client.settimeout(None if mode == "blocking" else TIMEOUT)
                got += client.read(min(want, len(expected) - len(got)))
                continue
            client.settimeout(0)
            for _ in range(rng.randrange(1, 40)):
                try:
                    got += client.read(want)
                except tlsrekey.WantReadError:
                    assert client.pending() == 0, "pending() > 0 after WantReadError"
                    if not _readable(a, 0.02):
                        break
            if client.pending() == 0 and not _readable(a, 0):
                # at rest: once everything was written, everything must be here
                if done.is_set() and _quiet(a):
                    assert len(got) == len(expected), (
                        "came to rest with %d of %d bytes: pending() said 0 while "
                        "data had arrived" % (len(got), len(expected)))
                    break
                rests += 1
                assert rests < 2000, "the stream never completed"
                _readable(a, 0.05)
        assert bytes(got) == expected
        if version == "TLSv1.3":
            assert client.stats["key_updates_received"] == sum(
                1 for act, _ in steps if act in ("ku", "ku-req"))
        else:
            # Renegotiations requested back to back merge, and the last may still be
            # under way: at least one completed in the middle of the stream.
            assert client.stats["handshakes"] >= 2
    finally:
        stop.set()
        try:
            writer.result()
        finally:
            client.close()
            server.close()
            a.close()
            b.close()


def _finish_renegotiation(server):
    """A server's renegotiation goes on only while it reads: read (the client sends
    no data) until the new handshake has completed. A server that only writes meanwhile
    is another matter (the client meets application data after its ClientHello)."""
    server.settimeout(0.05)
    try:
        for _ in range(400):
            if not server.renegotiate_pending():
                return
            try:
                server.read()
            except (tlsrekey.WantReadError, tlsrekey.TimeoutError):
                pass
        raise AssertionError("the renegotiation did not complete")
    finally:
        server.settimeout(TIMEOUT)


def _quiet(sock):
    """Nothing more on its way: the writer has finished, give the loopback a moment
    to deliver the last segment, then the socket still shows nothing."""
    return not _readable(sock, 0.2)
