"""pyOpenSSL: memory BIOs ("pair") and a socket ("socket").

pyOpenSSL has renegotiate() but no key update (W3 is "n/a"). It runs on the OpenSSL
that its cryptography wheel bundles (reported in the results), whose default groups
start with a post-quantum hybrid: the groups are pinned through the cffi binding
pyOpenSSL itself uses (SSL_CTX_set1_curves_list), for want of a method. Its clients
verify the chain; pyOpenSSL has no host name check to turn on.
"""

import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

from OpenSSL import SSL  # noqa: E402
from OpenSSL._util import lib as _lib  # noqa: E402

OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8   # SSL_OP_BIT(8), OpenSSL 3; not exported
BUFSZ = 65536                            # bio_read size: a few records


def contexts(args):
    v = SSL.TLS1_2_VERSION if args.tls12 else SSL.TLS1_3_VERSION
    ctxs = []
    for server in (False, True):
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(v)
        ctx.set_max_proto_version(v)
        ctx.set_tls13_ciphersuites(B.SUITE13.encode())
        ctx.set_cipher_list(B.CIPHER12.encode())
        groups = (B.GROUPS12 if args.tls12 else B.GROUPS13).encode()
        if _lib.SSL_CTX_set1_curves_list(ctx._context, groups) != 1:
            B.fail("cannot set the groups")
        if server:
            ctx.use_certificate_chain_file(args.cert)
            ctx.use_privatekey_file(args.key)
            ctx.set_options(OP_ALLOW_CLIENT_RENEGOTIATION)
        else:
            ctx.load_verify_locations(args.cert)
            ctx.set_verify(SSL.VERIFY_PEER)
        ctxs.append(ctx)
    return ctxs


def new_conn(ctx, server, sock=None):
    conn = SSL.Connection(ctx, sock)
    if server:
        conn.set_accept_state()
    else:
        conn.set_connect_state()
        conn.set_tlsext_host_name(B.HOST.encode())
    return conn


def negotiated(args, conn, wire_group=None):
    group = conn.get_group_name() or wire_group
    return B.check(args, conn.get_protocol_version_name(), conn.get_cipher_name(), group)


def move(src, dst):
    """Bytes waiting in src's memory BIO go to dst; returns them (b"" if none)."""
    try:
        data = src.bio_read(BUFSZ)
    except SSL.WantReadError:
        return b""
    dst.bio_write(data)
    return data


# ---- memory BIOs ------------------------------------------------------------------

def mem_pair(cctx, sctx):
    c, s = new_conn(cctx, False), new_conn(sctx, True)
    group = None
    for _ in range(20):
        cdone = sdone = False
        try:
            c.do_handshake()
            cdone = True
        except SSL.WantReadError:
            pass
        move(c, s)
        try:
            s.do_handshake()
            sdone = True
        except SSL.WantReadError:
            pass
        data = move(s, c)
        if group is None:
            group = B.server_hello_group_in_records(data)
        if cdone and sdone:
            return c, s, group
    B.fail("handshake does not progress")


def run_pair(args):
    if args.workload == "W3":
        B.na("pyOpenSSL has no key update API")
    cctx, sctx = contexts(args)
    n = args.count
    if args.workload in ("W4", "MEM"):
        rb = bytearray(1)
        c, s, group = mem_pair(cctx, sctx)
        neg = negotiated(args, c, group)
        keep = [] if args.workload == "MEM" else None
        gc.collect()
        rss0 = B.rss()
        B.start()
        for _ in range(n):
            c, s, _ = mem_pair(cctx, sctx)
            s.send(b"x")
            move(s, c)
            c.recv_into(rb)
            if keep is not None:
                keep.append((c, s))
        B.stop()
        if keep is not None:
            gc.collect()
            B.emit(ops=n, rss_delta=B.rss() - rss0, negotiated=neg)
        else:
            B.emit(ops=n, **B.timing(), negotiated=neg)
        return

    c, s, group = mem_pair(cctx, sctx)
    neg = negotiated(args, c, group)
    cw, sw, cr, sr = c.send, s.send, c.recv_into, s.recv_into
    cbr, cbw, sbr, sbw = c.bio_read, c.bio_write, s.bio_read, s.bio_write
    if args.workload == "W1":
        buf, rb, CH = b"x" * B.CHUNK, bytearray(B.CHUNK), B.CHUNK
        B.start()
        for _ in range(n):
            cw(buf)
            sbw(cbr(BUFSZ))
            if sr(rb) != CH:
                B.fail("short read")
        B.stop()
    elif args.workload == "W2":
        msg, rb, M = b"m" * B.MSG, bytearray(B.MSG), B.MSG
        B.start()
        for _ in range(n):
            cw(msg)
            sbw(cbr(BUFSZ))
            sr(rb, M)
            sw(rb)
            cbw(sbr(BUFSZ))
            cr(rb, M)
        B.stop()
    elif args.workload == "W3b":
        rb = bytearray(1)
        B.start()
        for _ in range(n):
            if not c.renegotiate():
                B.fail("renegotiate refused")
            for _ in range(20):           # the client's write runs the handshake
                try:
                    cw(b"x")
                    break
                except SSL.WantReadError:
                    move(c, s)
                    try:
                        sr(rb, 1)
                        B.fail("server read data before the renegotiation finished")
                    except SSL.WantReadError:
                        move(s, c)
            else:
                B.fail("renegotiation does not progress")
            move(c, s)
            sr(rb, 1)
        B.stop()
        if c.total_renegotiations() != n:
            B.fail(f"expected {n} renegotiations, saw {c.total_renegotiations()}")
    B.emit(ops=n, **B.timing(), negotiated=neg)


# ---- sockets ----------------------------------------------------------------------

def read_exact(conn, buf, n):
    view = memoryview(buf)
    got = 0
    while got < n:
        got += conn.recv_into(view[got:n])


def run_socket_conns(args, cctx, sctx):
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
            conn = new_conn(sctx, True, sock)
            conn.do_handshake()
            conn.sendall(b"x")
        else:
            sock = B.connect(args.path)
            conn = new_conn(cctx, False, sock)
            conn.do_handshake()
            read_exact(conn, rb, 1)
            if i < 0:
                neg = negotiated(args, conn)
        if mem and i >= 0:
            keep.append((conn, sock))
        else:
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
    if args.workload == "W3":
        B.na("pyOpenSSL has no key update API")
    cctx, sctx = contexts(args)
    if args.workload in ("W4", "MEM"):
        return run_socket_conns(args, cctx, sctx)
    n, server = args.count, args.server
    sock = B.socketpair_end(args)
    conn = new_conn(sctx if server else cctx, server, sock)
    conn.do_handshake()
    neg = None if server else negotiated(args, conn)
    w, r = conn.sendall, conn.recv_into
    rb = bytearray(B.CHUNK)
    if server:
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
                if r(rb, M) != M:
                    read_exact(conn, rb, M)
                w(rb)
        else:
            msg = b"m" * M
            for _ in range(n):
                w(msg)
                if r(rb, M) != M:
                    read_exact(conn, rb, M)
    elif args.workload == "W3b":
        if server:
            rb = bytearray(1)
            for _ in range(n):
                r(rb, 1)
        else:
            for _ in range(n):
                conn.renegotiate()
                w(b"x")          # the blocking write runs the whole handshake
            if conn.total_renegotiations() != n:
                B.fail(f"expected {n} renegotiations, saw {conn.total_renegotiations()}")
    if server:
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
