#!/usr/bin/env python3
"""Leak loop (issue 4): create / handshake / key update / close cycles, error paths
and odd teardown orders, with the resident set size measured from /proc/self/statm.

    PYTHONPATH=python .venv/bin/python tests/soak/leak_loop.py [cycles] [max_growth_mb]

(default 100,000 cycles and 1 MiB; make test runs 2,000 with 0.5 MiB)

Each cycle does one of these, in turn:
  pair        a TLS 1.3 pair, key updates both ways with data, close in either order
  pair12      a TLS 1.2 pair with a renegotiation, the context dropped first
  memory      two memory-transport ends handshaken by hand, a key update, shutdown
  socket      a socket pair; the socket closed under the connection, then dropped
  verify      a handshake that fails certificate verification (CertificateError)
  corrupt     a record with a flipped bit (ProtocolError), then every call replays it
  eof         EOF without close_notify mid-stream (SyscallError)
  args        refused arguments and wrong-state calls (ValueError, TypeError, StateError)
  callback    an event callback that raises, re-raised by the call
  cycle       a reference cycle through the event callback, left to the collector

The cycles are split evenly between the kinds; each kind runs alone, first a
warm-up (a fifth of its cycles, at most 200), then the rest with the RSS measured
before and after: the growth of every kind must stay under max_growth_mb (default
1 MiB). Mixed together the heap takes a few thousand cycles to settle, so kinds are
measured apart; a leak of a few hundred bytes per cycle shows in a 100,000-cycle run.
Exit status 1 on a leak. The last line is `leak loop: N cycles ... ok|LEAK in ...`.
"""
import gc
import os
import socket
import sys
import time

import tlsrekey

PAGE = os.sysconf("SC_PAGE_SIZE")
CERT, KEY = tlsrekey.make_test_cert()
OTHER_CERT, _ = tlsrekey.make_test_cert("other.example")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def expect(exc, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc:
        return
    raise AssertionError("%s did not raise %s" % (fn, exc))


def memory_handshake(c, s):
    for _ in range(10):
        done = 0
        for conn in (c, s):
            try:
                conn.do_handshake()
                done += 1
            except tlsrekey.WantReadError:
                pass
            s.feed(c.drain())
            c.feed(s.drain())
        if done == 2:
            return
    raise AssertionError("memory handshake did not finish")


def cycle_pair(i):
    c, s = tlsrekey.pair(cert=CERT, key=KEY)
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    c.write(b"ping %d" % i)
    assert s.read() == b"ping %d" % i
    s.write(b"pong")
    assert c.read() == b"pong"
    s.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED, now=True)
    s.write(b"y")
    assert c.read() == b"y"
    assert c.stats["key_updates_received"] == 2
    if i % 2:
        c.close()
        del s
    else:
        s.close()
        del c


def cycle_pair12(i):
    cctx = tlsrekey.Context.client(CERT, max_version="TLSv1.2")
    sctx = tlsrekey.Context.server(CERT, KEY, max_version="TLSv1.2",
                                   allow_client_renegotiation=True)
    c, s = tlsrekey._tlsrekey._pair(cctx, sctx, "localhost")
    del cctx, sctx                        # the connections keep them alive
    c.renegotiate()
    c.write(b"after")
    assert s.read() == b"after"
    assert c.stats["renegotiations"] == 1
    del s, c


def cycle_memory(i):
    cctx = tlsrekey.Context.client(CERT)
    sctx = tlsrekey.Context.server(CERT, KEY, num_tickets=i % 3)
    c, s = cctx.memory(server_hostname="localhost"), sctx.memory()
    memory_handshake(c, s)
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    c.write(b"m")
    s.feed(c.drain())
    assert s.read() == b"m"
    s.write(b"")
    c.feed(s.drain())
    expect(tlsrekey.WantReadError, c.read)
    c.shutdown()
    s.feed(c.drain())
    assert s.read() == b""
    s.shutdown()


def cycle_socket(i):
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    c = tlsrekey.Context.client(CERT).wrap(a, server_hostname="localhost")
    s = tlsrekey.Context.server(CERT, KEY).wrap(b)
    # a handshake needs both ends at once: the server's first flight is tiny, so
    # non-blocking turns suffice
    a.settimeout(0)
    b.settimeout(0)
    c.settimeout(0)
    s.settimeout(0)
    for _ in range(20):
        for conn in (c, s):
            try:
                conn.do_handshake()
            except (tlsrekey.WantReadError, tlsrekey.WantWriteError):
                pass
        if c.version and s.version:
            break
    a.close()                              # the socket goes first, under the connection
    try:
        c.write(b"into a closed socket")
    except (tlsrekey.SyscallError, tlsrekey.StateError, tlsrekey.WantWriteError,
            tlsrekey.WantReadError):
        pass
    del c                                  # then the connection
    s.close()
    b.close()


def cycle_verify(i):
    try:
        tlsrekey.pair(cert=CERT, key=KEY, cafile=OTHER_CERT)
    except tlsrekey.CertificateError:
        return
    raise AssertionError("verification did not fail")


def cycle_corrupt(i):
    cctx = tlsrekey.Context.client(CERT)
    sctx = tlsrekey.Context.server(CERT, KEY)
    c, s = cctx.memory(server_hostname="localhost"), sctx.memory()
    memory_handshake(c, s)
    c.write(b"tamper")
    wire = bytearray(c.drain())
    wire[-1] ^= 1
    s.feed(bytes(wire))
    expect(tlsrekey.ProtocolError, s.read)
    expect(tlsrekey.ProtocolError, s.write, b"x")
    expect(tlsrekey.ProtocolError, s.do_handshake)


def cycle_eof(i):
    cctx = tlsrekey.Context.client(CERT)
    sctx = tlsrekey.Context.server(CERT, KEY)
    c, s = cctx.memory(server_hostname="localhost"), sctx.memory()
    memory_handshake(c, s)
    c.write(b"cut")
    s.feed(c.drain()[:-3])
    s.feed_eof()
    expect(tlsrekey.SyscallError, s.read)


def cycle_args(i):
    c, s = tlsrekey.pair(cert=CERT, key=KEY)
    expect(ValueError, c.key_update, tlsrekey.KEY_UPDATE_NONE)
    expect(TypeError, c.key_update, "requested")
    expect(ValueError, c.read, -1)
    expect(TypeError, c.write, "text")
    expect(tlsrekey.StateError, c.renegotiate)
    c.key_update()
    expect(tlsrekey.StateError, c.key_update)
    expect(ValueError, tlsrekey.Context, "dealer")
    expect(ValueError, tlsrekey.Context.client, cafile=b"not pem")
    c.close()
    expect(tlsrekey.StateError, c.read)
    expect(tlsrekey.StateError, c.export_keying_material, "x", 16)


def cycle_callback(i):
    c, s = tlsrekey.pair(cert=CERT, key=KEY)

    def boom(event):
        raise RuntimeError("from a callback %d" % i)
    s.set_event_callback(boom)
    c.key_update()
    c.write(b"cb")
    expect(RuntimeError, s.read)
    s.set_event_callback(None)
    assert s.read() == b"cb"


def cycle_cycle(i):
    c, s = tlsrekey.pair(cert=CERT, key=KEY)
    holder = {"conn": c}
    c.set_event_callback(lambda ev, h=holder: h.setdefault("seen", ev["name"]))
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED, now=True)
    del c, s, holder                      # a cycle: conn -> callback -> holder -> conn
    if i % 10 == 0:
        gc.collect()                      # what the collector frees must be freed


CYCLES = [cycle_pair, cycle_pair12, cycle_memory, cycle_socket, cycle_verify,
          cycle_corrupt, cycle_eof, cycle_args, cycle_callback, cycle_cycle]


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    limit_mb = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    per_kind = max(20, cycles // len(CYCLES))
    warmup = max(50, min(200, per_kind // 5))
    start = time.monotonic()
    first = rss()
    for i in range(30):                  # every kind once or thrice: the heap grows
        for fn in CYCLES:                # to its working size here, not in a kind
            fn(i)
    worst, failed = 0.0, []
    for fn in CYCLES:
        # Each kind alone: the heap settles after a few cycles of one pattern, so a
        # growth after that is what the kind leaves behind.
        for i in range(warmup):
            fn(i)
        gc.collect()
        base = rss()
        for i in range(warmup, per_kind):
            fn(i)
        gc.collect()
        growth = (rss() - base) / 2 ** 20
        worst = max(worst, growth)
        print("  %-16s %6d cycles  RSS %+7.2f MiB" % (fn.__name__[6:], per_kind - warmup,
                                                      growth), flush=True)
        if growth >= limit_mb:
            failed.append(fn.__name__)
    end = rss()
    ok = not failed
    print("leak loop: %d cycles in %.1f s, RSS %.1f -> %.1f MiB, largest growth of one "
          "kind %+.2f MiB, limit %.1f MiB per kind: %s"
          % (per_kind * len(CYCLES), time.monotonic() - start, first / 2 ** 20,
             end / 2 ** 20, worst, limit_mb, "ok" if ok else "LEAK in " + ", ".join(failed)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
