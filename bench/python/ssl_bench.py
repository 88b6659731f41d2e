"""Python's ssl module: SSLObject + MemoryBIO ("pair") and SSLSocket ("socket").

The ssl module can set neither TLS 1.3 ciphersuites nor groups, so this program pins
them the only way it can: an OpenSSL configuration file (openssl-pin.cnf) whose
system_default section every SSL_CTX in the process picks up. It must be in the
environment before libssl initialises, hence before `import ssl`. The result is
checked like everywhere else; the group is read off the wire (ServerHello).

It has no key update and no renegotiation: W3 and W3b are "n/a".
"""

import os

os.environ["OPENSSL_CONF"] = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "openssl-pin.cnf")

import gc  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def contexts(args):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)    # verifies, checks host names
    c.load_verify_locations(args.cert)
    s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    s.load_cert_chain(args.cert, args.key)
    for ctx in (c, s):
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return c, s


def negotiated(args, conn, group):
    return B.check(args, conn.version(), conn.cipher()[0], group)


# ---- SSLObject + MemoryBIO ------------------------------------------------------

def mem_pair(cctx, sctx):
    """A handshaken pair; also returns the group seen in the server's first flight."""
    cin, cout, sin, sout = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = cctx.wrap_bio(cin, cout, server_hostname=B.HOST)
    s = sctx.wrap_bio(sin, sout, server_side=True)
    group = None
    for _ in range(20):
        cdone = sdone = False
        try:
            c.do_handshake()
            cdone = True
        except ssl.SSLWantReadError:
            pass
        sin.write(cout.read())
        try:
            s.do_handshake()
            sdone = True
        except ssl.SSLWantReadError:
            pass
        data = sout.read()
        if group is None:
            group = B.server_hello_group_in_records(data)
        cin.write(data)
        if cdone and sdone:
            return c, s, (cin, cout, sin, sout), group
    B.fail("handshake does not progress")


def run_pair(args):
    if args.workload in ("W3", "W3b"):
        B.na("the ssl module has no " +
             ("key update" if args.workload == "W3" else "renegotiation") + " API")
    cctx, sctx = contexts(args)
    n = args.count
    if args.workload in ("W4", "MEM"):
        rb = bytearray(1)
        c, s, _, group = mem_pair(cctx, sctx)
        neg = negotiated(args, c, group)
        keep = [] if args.workload == "MEM" else None
        gc.collect()
        rss0 = B.rss()
        B.start()
        for _ in range(n):
            c, s, (cin, cout, sin, sout), _ = mem_pair(cctx, sctx)
            s.write(b"x")
            cin.write(sout.read())
            c.read(1, rb)
            if keep is not None:
                keep.append((c, s, cin, cout, sin, sout))
        B.stop()
        if keep is not None:
            gc.collect()
            B.emit(ops=n, rss_delta=B.rss() - rss0, negotiated=neg)
        else:
            B.emit(ops=n, **B.timing(), negotiated=neg)
        return

    c, s, (cin, cout, sin, sout), group = mem_pair(cctx, sctx)
    neg = negotiated(args, c, group)
    cw, sw, cr, sr = c.write, s.write, c.read, s.read
    cinw, coutr, sinw, soutr = cin.write, cout.read, sin.write, sout.read
    if args.workload == "W1":
        buf, rb, CH = b"x" * B.CHUNK, bytearray(B.CHUNK), B.CHUNK
        B.start()
        for _ in range(n):
            cw(buf)
            sinw(coutr())
            if sr(CH, rb) != CH:
                B.fail("short read")
        B.stop()
    elif args.workload == "W2":
        msg, rb, M = b"m" * B.MSG, bytearray(B.MSG), B.MSG
        B.start()
        for _ in range(n):
            cw(msg)
            sinw(coutr())
            sr(M, rb)
            sw(rb)
            cinw(soutr())
            cr(M, rb)
        B.stop()
    B.emit(ops=n, **B.timing(), negotiated=neg)


# ---- SSLSocket --------------------------------------------------------------------

def read_exact(conn, buf, n):
    view = memoryview(buf)
    got = 0
    while got < n:
        k = conn.recv_into(view[got:n])
        if k == 0:
            B.fail("EOF")
        got += k


def client_socket(cctx, sock, args, check):
    """wrap_socket handshakes at once; for the check, the group comes from the
    ServerHello seen by the (private, test-only) message callback."""
    seen = []
    if check:
        def cb(conn, direction, version, content_type, msg_type, data):
            if direction == "read" and msg_type == ssl._TLSMessageType.SERVER_HELLO:
                seen.append(B.server_hello_group(data))
        cctx._msg_callback = cb
    conn = cctx.wrap_socket(sock, server_hostname=B.HOST)
    if check:
        cctx._msg_callback = None
        return conn, (seen[0] if seen else "?")
    return conn, None


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
            conn = sctx.wrap_socket(lsock.accept()[0], server_side=True)
            conn.sendall(b"x")
        else:
            conn, group = client_socket(cctx, B.connect(args.path), args, i < 0)
            read_exact(conn, rb, 1)
            if i < 0:
                neg = negotiated(args, conn, group)
        if mem and i >= 0:
            keep.append(conn)
        else:
            conn.close()
    B.stop()
    if mem:
        gc.collect()
        B.emit(ops=n, rss_delta=B.rss() - rss0, negotiated=neg)
    elif args.server:
        B.emit(ops=n, **B.timing())
    else:
        B.emit(ops=n, **B.timing(), negotiated=neg)


def run_socket(args):
    if args.workload in ("W3", "W3b"):
        B.na("the ssl module has no " +
             ("key update" if args.workload == "W3" else "renegotiation") + " API")
    cctx, sctx = contexts(args)
    if args.workload in ("W4", "MEM"):
        return run_socket_conns(args, cctx, sctx)
    n, server = args.count, args.server
    sock = B.socketpair_end(args)
    if server:
        conn, neg = sctx.wrap_socket(sock, server_side=True), None
    else:
        conn, group = client_socket(cctx, sock, args, True)
        neg = negotiated(args, conn, group)
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
                k = r(rb)
                if k == 0:
                    B.fail("EOF")
                left -= k
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
