"""tlsrekey (Python): the benchmark workloads over the in-memory pair and over sockets.
Arguments and output: benchlib.py / bench/c/limit.c."""

import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

import tlsrekey  # noqa: E402


def contexts(args):
    v = "TLSv1.2" if args.tls12 else "TLSv1.3"
    common = dict(min_version=v, max_version=v, ciphersuites=B.SUITE13,
                  ciphers=B.CIPHER12, groups=B.GROUPS12 if args.tls12 else B.GROUPS13,
                  release_buffers=args.release_buffers)
    server = tlsrekey.Context.server(args.cert, args.key,
                                     allow_client_renegotiation=True, **common)
    client = tlsrekey.Context.client(cafile=args.cert, **common)
    return client, server


def negotiated(args, conn):
    return B.check(args, conn.version, conn.cipher, conn.group)


def make_pair(cctx, sctx):
    # one pair of contexts for every pair, as W4 wants
    return tlsrekey.pair(client_ctx=cctx, server_ctx=sctx, server_hostname=B.HOST)


def read_exact(conn, buf, n):
    view = memoryview(buf)
    got = 0
    while got < n:
        got += conn.read_into(view[got:n])


def run_pair(args):
    cctx, sctx = contexts(args)
    n = args.count
    if args.workload in ("W4", "MEM"):
        rb = bytearray(1)
        c, s = make_pair(cctx, sctx)
        neg = negotiated(args, c)
        c.close()
        s.close()
        keep = [] if args.workload == "MEM" else None
        gc.collect()
        rss0 = B.rss()
        B.start()
        for _ in range(n):
            c, s = make_pair(cctx, sctx)
            s.write(b"x")
            c.read_into(rb)
            if keep is not None:
                keep.append((c, s))
            else:
                c.close()
                s.close()
        B.stop()
        if keep is not None:
            gc.collect()
            B.emit(ops=n, rss_delta=B.rss() - rss0, negotiated=neg)
        else:
            B.emit(ops=n, **B.timing(), negotiated=neg)
        return

    c, s = make_pair(cctx, sctx)
    neg = negotiated(args, c)
    cw, sw, cr, sr = c.write, s.write, c.read_into, s.read_into
    if args.workload == "W1":
        buf, rb, CH = b"x" * B.CHUNK, bytearray(B.CHUNK), B.CHUNK
        B.start()
        for _ in range(n):
            cw(buf)
            if sr(rb) != CH:
                read_exact(s, rb, CH)  # never in practice: one record per write
        B.stop()
    elif args.workload == "W2":
        msg, rb, M = b"m" * B.MSG, bytearray(B.MSG), B.MSG
        B.start()
        for _ in range(n):
            cw(msg)
            if sr(rb) != M:
                read_exact(s, rb, M)
            sw(rb)
            if cr(rb) != M:
                read_exact(c, rb, M)
        B.stop()
    elif args.workload == "W3":
        ku, rb = c.key_update, bytearray(1)
        B.start()
        for _ in range(n):
            ku()
            cw(b"x")
            sr(rb)
        B.stop()
        if c.stats["key_updates_sent"] != n or s.stats["key_updates_received"] != n:
            B.fail(f"expected {n} key updates, stats say {c.stats}")
    elif args.workload == "W3b":
        reneg, rb = c.renegotiate, bytearray(1)
        B.start()
        for _ in range(n):
            reneg()
            cw(b"x")      # the pair runs the handshake inside this write
            sr(rb)
        B.stop()
        if c.stats["renegotiations"] != n or c.session_reused:
            B.fail(f"expected {n} full renegotiations, stats say {c.stats}")
    B.emit(ops=n, **B.timing(), negotiated=neg)


def run_socket_conns(args, cctx, sctx):
    """W4 and MEM: one Unix-socket connection per handshake (see limit.c)."""
    n, mem, rb = args.count, args.workload == "MEM", bytearray(1)
    lsock = B.listen(args.path) if args.server else None
    neg = None
    keep = []
    rss0 = 0
    for i in range(-1, n):
        if i == 0:
            gc.collect()
            rss0 = B.rss()
            B.start()
        if args.server:
            sock = lsock.accept()[0]
            conn = sctx.wrap(sock)
            conn.do_handshake()
            conn.write(b"x")
        else:
            sock = B.connect(args.path)
            conn = cctx.wrap(sock, server_hostname=B.HOST)
            conn.do_handshake()
            conn.read_into(rb)
            if i < 0:
                neg = negotiated(args, conn)
        if mem and i >= 0:
            keep.append(conn)   # as a user would: the connection holds its socket
        else:
            conn.close()
            sock.close()
    B.stop()
    if mem:
        gc.collect()
        B.emit(ops=n, rss_delta=B.rss() - rss0, negotiated=neg)
    elif args.server:
        B.emit(ops=n, **B.timing())
    else:
        B.emit(ops=n, **B.timing(), negotiated=neg)


def run_socket(args):
    cctx, sctx = contexts(args)
    if args.workload in ("W4", "MEM"):
        return run_socket_conns(args, cctx, sctx)
    n, server = args.count, args.server
    sock = B.socketpair_end(args)
    conn = sctx.wrap(sock) if server else cctx.wrap(sock, server_hostname=B.HOST)
    conn.do_handshake()
    neg = None if server else negotiated(args, conn)
    w, r = conn.write, conn.read_into
    rb = bytearray(B.CHUNK)
    if server:                       # line the two processes up
        read_exact(conn, rb, 1)
        w(b"s")
    else:
        w(b"s")
        read_exact(conn, rb, 1)
    B.start()
    if args.workload == "W1":
        if server:
            left = n * B.CHUNK
            while left > 0:
                left -= r(rb)
        else:
            buf = b"x" * B.CHUNK
            for _ in range(n):
                w(buf)
    elif args.workload == "W2":
        M = B.MSG
        rb = bytearray(M)
        if server:
            for _ in range(n):
                if r(rb) != M:
                    read_exact(conn, rb, M)
                w(rb)
        else:
            msg = b"m" * M
            for _ in range(n):
                w(msg)
                if r(rb) != M:
                    read_exact(conn, rb, M)
    elif args.workload in ("W3", "W3b"):
        if server:
            rb = bytearray(1)
            for _ in range(n):
                r(rb)
        else:
            rekey = conn.key_update if args.workload == "W3" else conn.renegotiate
            for _ in range(n):
                rekey()
                w(b"x")
            key = "key_updates_sent" if args.workload == "W3" else "renegotiations"
            if conn.stats[key] != n:
                B.fail(f"expected {n} {key}, stats say {conn.stats}")
    if server:                       # everything read: the client's clock stops
        w(b"d")
        B.emit(ops=n, **B.timing())
    else:
        read_exact(conn, rb, 1)
        B.emit(ops=n, **B.stop(), negotiated=neg)


def main():
    args = B.parse_args()
    if args.transport == "pair":
        run_pair(args)
    else:
        run_socket(args)


if __name__ == "__main__":
    main()
