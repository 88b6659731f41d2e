"""python -m tlsrekey: an interactive TLS console, in the manner of openssl s_client
and s_server, that shows every key update and renegotiation as it happens.

    python -m tlsrekey connect HOST:PORT [--tls1_2|--tls1_3] [--cafile F] [--insecure]
                                         [--servername N] [--alpn P] [--keylog F]
    python -m tlsrekey serve [--port P] [--cert F --key F] [--allow-client-renegotiation]
                             [--echo] [--once]

Lines typed are sent (with their newline); data received is printed. A line holding
only one of these letters is a command, as in s_client/s_server:

    k   key update (update_not_requested)    K   key update, requesting the peer's
    R   renegotiate (TLS 1.2)                r   abbreviated renegotiation (TLS 1.2)
    Q   close the connection and quit        q   (serve) close it, keep listening

and :stats, :info, :askcert (serve: renegotiate asking for a client certificate),
:help. Every KeyUpdate, HelloRequest, handshake and alert, sent or received, is
printed from the connection's event callback, with the counters it moved.

One thread, one selectors loop over standard input and the socket; the connection
is non-blocking (WantReadError/WantWriteError tell the loop what to wait for).
Exit status: 0 after a clean end, 1 when the connection failed, 2 for bad usage.
"""

import argparse
import collections
import os
import selectors
import socket
import sys
import time
from typing import Any, Callable, Deque, List, Optional, TextIO, Tuple

import tlsrekey

HELP = """\
commands (a line holding only the command):
  k          key update (update_not_requested): our sending keys change
  K          key update (update_requested): the peer is asked to change its own too
  R          renegotiate (TLS 1.2; a server sends a HelloRequest)
  r          abbreviated renegotiation, resuming the session (TLS 1.2 client)
  Q          send close_notify and quit
  q          serve: close this connection, keep listening for the next
  :stats     the connection's counters
  :info      version, cipher, certificate, pending key update / renegotiation
  :askcert   serve: renegotiate asking for a client certificate (TLS 1.2)
  :help      this text
any other line is sent to the peer, with its newline."""

# How long Q waits for the peer's close_notify before giving up.
CLOSE_WAIT = 2.0

# Exit statuses.
OK, FAILED, USAGE = 0, 1, 2


class Output:
    """stdout, keeping track of whether the cursor is at the start of a line, so that
    an event line never glues itself to the end of received data."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream or sys.stdout
        self.at_line_start = True

    def data(self, text: str) -> None:
        if text:
            self.stream.write(text)
            self.stream.flush()
            self.at_line_start = text.endswith("\n")

    def line(self, text: str) -> None:
        if not self.at_line_start:
            self.stream.write("\n")
        self.stream.write(text + "\n")
        self.stream.flush()
        self.at_line_start = True


def describe_event(ev: dict[str, Any], stats: dict[str, int]) -> str:
    """One line for an event dict, with the counters it moved."""
    name = str(ev["name"])
    if name.startswith("key_update_"):
        direction = name[len("key_update_"):]
        kind = "update_requested" if ev.get("request_update") else "update_not_requested"
        if ev.get("automatic"):
            kind += ", by the rekey policy"
        return ("KeyUpdate %s (%s)   [KeyUpdates sent %d, received %d; requests sent %d, "
                "received %d]" % (direction, kind, stats["key_updates_sent"],
                                  stats["key_updates_received"],
                                  stats["key_update_requests_sent"],
                                  stats["key_update_requests_received"]))
    if name.startswith("hello_request_"):
        return "HelloRequest %s   [HelloRequests sent %d, received %d]" % (
            name[len("hello_request_"):], stats["hello_requests_sent"],
            stats["hello_requests_received"])
    if name.startswith("alert_"):
        level = {1: "warning", 2: "fatal"}.get(int(ev.get("alert_level", 0)), "?")
        return "alert %s: %s %s (%s)   [alerts sent %d, received %d]" % (
            name[len("alert_"):], level, ev.get("alert_text", ""),
            ev.get("alert_description"), stats["alerts_sent"], stats["alerts_received"])
    if name == "handshake_start":
        return "handshake started"
    if name == "handshake_done":
        return "handshake done   [handshakes %d]" % stats["handshakes"]
    if name == "renegotiation_done":
        return "renegotiation done   [renegotiations %d, handshakes %d]" % (
            stats["renegotiations"], stats["handshakes"])
    return name


def describe_error(exc: BaseException) -> str:
    """An exception as one readable line."""
    return "error: %s: %s" % (type(exc).__name__, exc)


def info_lines(conn: tlsrekey.Connection) -> List[str]:
    lines = [
        "role %s, state %s" % (conn.role, conn.state),
        "version %s, cipher %s, ALPN %s" % (conn.version, conn.cipher, conn.alpn),
        "session reused %s, secure renegotiation %s" % (conn.session_reused,
                                                         conn.secure_renegotiation),
        "key update scheduled: %s, renegotiation pending: %s" % (
            conn.get_key_update_type().name, conn.renegotiate_pending()),
    ]
    cert = conn.peer_certificate
    if cert is None:
        lines.append("peer certificate: none")
    else:
        lines.append("peer certificate: subject %s, issuer %s, valid until %s" % (
            cert["subject"], cert["issuer"], cert["not_after"]))
    return lines


def stats_lines(conn: tlsrekey.Connection) -> List[str]:
    stats = conn.stats
    width = max(len(k) for k in stats)
    return ["%-*s %d" % (width, k, v) for k, v in stats.items()]


class Session:
    """One TLS connection driven by the loop: the actions typed (data to send, key
    updates, renegotiations) queue up and are carried out in order, each retried
    after WantWriteError/WantReadError with the same arguments, as OpenSSL asks."""

    def __init__(self, conn: tlsrekey.Connection, out: Output, *, lazy_reply: bool = False,
                 echo: bool = False) -> None:
        self.conn = conn
        self.out = out
        self.lazy_reply = lazy_reply
        self.echo = echo
        self.actions: Deque[Tuple[str, Any]] = collections.deque()
        self.established = False
        self.finished = False      # the connection is over (closed or failed)
        self.failed = False
        self.closing = False       # Q/q typed: close_notify sent, waiting for the peer's
        self.want_write = False    # the loop must wait until the socket is writable
        self.owed_reply = False
        conn.set_event_callback(self.on_event)

    # -- events ---------------------------------------------------------------

    def on_event(self, ev: dict[str, Any]) -> None:
        # Runs inside the core call that saw the message; it may read, not drive.
        self.out.line("* " + describe_event(ev, ev["connection"].stats))
        if ev["name"] == "key_update_received" and ev.get("request_update"):
            if self.lazy_reply:
                self.out.line("* the reply is owed: it leaves with our next write "
                              "(get_key_update_type() = NOT_REQUESTED until then)")
            else:
                self.owed_reply = True

    # -- what the user typed ----------------------------------------------------

    def command(self, line: str) -> Optional[str]:
        """A line from stdin. Returns "quit" or "next" for Q / q, else None."""
        text = line.rstrip("\r\n")
        if text in ("k", "K"):
            self.actions.append(("key_update", text == "K"))
        elif text in ("R", "r"):
            self.actions.append(("renegotiate", text == "r"))
        elif text in ("Q", "q"):
            self.start_close()
            return "quit" if text == "Q" else "next"
        elif text == ":stats":
            for s in stats_lines(self.conn):
                self.out.line("  " + s)
        elif text == ":info":
            for s in info_lines(self.conn):
                self.out.line("  " + s)
        elif text == ":askcert":
            self.actions.append(("askcert", None))
        elif text == ":help":
            self.out.line(HELP)
        elif text.startswith(":"):
            self.out.line("unknown command %s (:help lists them)" % text)
        else:
            self.actions.append(("write", line.encode()))
        return None

    # -- driving the connection ----------------------------------------------------

    def step(self) -> None:
        """Moves everything forward as far as it goes without waiting."""
        self.want_write = False
        if not self.established:
            if not self.guard(self.handshake):
                return
            if not self.established:
                return
        self.guard(self.read_all)
        if self.owed_reply and not self.finished:
            self.owed_reply = False
            self.out.line("* answering the peer's update request now (a write of 0 bytes)")
            self.actions.appendleft(("write", b""))
        self.guard(self.run_actions)
        if self.closing and not self.finished:
            self.guard(self.finish_close)

    def guard(self, fn: Callable[[], None]) -> bool:
        """Runs fn; a failure prints one line. Returns False when the connection is
        over."""
        if self.finished:
            return False
        try:
            fn()
        except tlsrekey.WantWriteError:
            self.want_write = True
        except tlsrekey.WantReadError:
            pass
        except tlsrekey.ZeroReturnError:
            self.out.line("* the peer closed the connection")
            self.finished = True
        except (tlsrekey.Error, ValueError) as exc:
            self.out.line(describe_error(exc))
            if self.conn.state in ("failed", "closed", "released"):
                self.finished = True
                self.failed = self.conn.state == "failed" or not self.established
        return not self.finished

    def handshake(self) -> None:
        self.conn.do_handshake()
        self.established = True
        conn = self.conn
        self.out.line("* connected: %s, %s%s" % (
            conn.version, conn.cipher, ", ALPN %s" % conn.alpn if conn.alpn else ""))

    def read_all(self) -> None:
        while True:
            data = self.conn.read()
            if not data:
                if self.closing:        # ours went out with Q; this is the answer
                    self.out.line("* closed (close_notify sent and received)")
                else:
                    self.out.line("* the peer closed the connection (close_notify)")
                    self.answer_close()
                self.finished = True
                return
            self.out.data(data.decode("utf-8", "replace"))
            if self.echo:
                self.actions.append(("write", data))

    def run_actions(self) -> None:
        while self.actions:
            kind, arg = self.actions[0]
            try:
                self.run_one(kind, arg)
            except tlsrekey.StateError as exc:
                # Not for now (wrong version, one already scheduled, ...): harmless.
                self.actions.popleft()
                self.out.line(describe_error(exc))
                continue
            self.actions.popleft()

    def run_one(self, kind: str, arg: Any) -> None:
        conn = self.conn
        if kind == "write":
            conn.write(arg)
        elif kind == "key_update":
            if conn.get_key_update_type() == tlsrekey.KEY_UPDATE_NONE:
                conn.key_update(tlsrekey.KEY_UPDATE_REQUESTED if arg
                                else tlsrekey.KEY_UPDATE_NOT_REQUESTED)
            # Scheduled; a zero-length write puts it on the wire now. If that write
            # must wait, this action is retried: the update is not scheduled twice.
            conn.write(b"")
        elif kind == "renegotiate":
            if not conn.renegotiate_pending():
                if arg:
                    conn.renegotiate_abbreviated()
                else:
                    conn.renegotiate()
                self.out.line("* renegotiation scheduled (pending: %s)"
                              % conn.renegotiate_pending())
            self.nudge_handshake()
        elif kind == "askcert":
            if conn.role != "server":
                raise tlsrekey.StateError(":askcert is for the serve side")
            conn.set_verify_client(required=False, verify=False)
            conn.renegotiate()
            self.out.line("* renegotiation scheduled, asking for a client certificate")
            self.nudge_handshake()

    def nudge_handshake(self) -> None:
        # A server's do_handshake sends the HelloRequest and returns; a client's sends
        # its ClientHello and then needs the peer (WantReadError): the reads of the
        # loop carry the handshake on from there.
        try:
            self.conn.do_handshake()
        except tlsrekey.WantReadError:
            pass

    def answer_close(self) -> None:
        # The peer's close_notify is answered with ours before the socket closes
        # (RFC 8446 6.1): a peer that waits for it, as our own Q does, then ends
        # cleanly instead of with "unexpected EOF". One that is gone already (openssl
        # s_client quits at once) makes the answer fail, which ends nothing more.
        try:
            self.conn.shutdown()
        except tlsrekey.Error:
            pass

    def start_close(self) -> None:
        if self.closing or self.finished:
            return
        self.closing = True
        self.actions.clear()

    def finish_close(self) -> None:
        if self.conn.shutdown():
            self.out.line("* closed (close_notify sent and received)")
            self.finished = True


class Loop:
    """The selectors loop: standard input and one connection's socket."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.sel = selectors.DefaultSelector()
        self.stdin_open = True
        self.stdin_buf = b""
        try:
            self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        except (ValueError, OSError):   # no usable stdin (closed, or a regular file)
            self.stdin_open = False

    def read_stdin_lines(self) -> Optional[List[str]]:
        """Lines available on stdin (None once stdin has ended)."""
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            self.sel.unregister(sys.stdin.fileno())
            self.stdin_open = False
            return None
        self.stdin_buf += data
        *lines, self.stdin_buf = self.stdin_buf.split(b"\n")
        return [line.decode("utf-8", "replace") + "\n" for line in lines]


def run_session(loop: Loop, session: Session, sock: socket.socket, *,
                stdin_eof_closes: bool,
                close_deadline: float = CLOSE_WAIT) -> Tuple[int, Optional[str]]:
    """Drives one session until it ends. Returns (status, how) with how "quit",
    "next" or None (the connection ended by itself)."""
    how = None
    fd = sock.fileno()
    loop.sel.register(fd, selectors.EVENT_READ, "sock")
    deadline = None
    try:
        session.step()
        while not session.finished:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if session.want_write
                                             else 0)
            loop.sel.modify(fd, events, "sock")
            timeout = None
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
            ready = loop.sel.select(timeout)
            if deadline is not None and time.monotonic() >= deadline:
                loop.out.line("* the peer did not answer close_notify; closing anyway")
                break
            for key, _ in ready:
                if key.data == "stdin":
                    lines = loop.read_stdin_lines()
                    if lines is None:
                        if stdin_eof_closes:
                            session.start_close()
                            how = how or "quit"
                        continue
                    for line in lines:
                        if session.closing:
                            break
                        what = session.command(line)
                        if what is not None:
                            how = what
            session.step()
            if session.closing and deadline is None:
                deadline = time.monotonic() + close_deadline
    finally:
        loop.sel.unregister(fd)
        session.conn.close()
    return (FAILED if session.failed else OK), how


# --- connect ------------------------------------------------------------------

def split_host_port(text: str) -> Tuple[str, int]:
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("expected HOST:PORT, got %r" % text)
    return host, int(port)


def version_limits(args: argparse.Namespace) -> Tuple[str, Optional[str]]:
    if args.tls1_2:
        return "TLSv1.2", "TLSv1.2"
    if args.tls1_3:
        return "TLSv1.3", "TLSv1.3"
    return "TLSv1.2", None


def alpn_list(values: Optional[List[str]]) -> Optional[List[str]]:
    if not values:
        return None
    return [p for v in values for p in v.split(",") if p]


def cmd_connect(args: argparse.Namespace, out: Output) -> int:
    try:
        host, port = split_host_port(args.target)
    except ValueError as exc:
        out.line("error: %s" % exc)
        return USAGE
    min_v, max_v = version_limits(args)
    try:
        ctx = tlsrekey.Context.client(
            cafile=args.cafile, verify=not args.insecure, min_version=min_v,
            max_version=max_v, alpn=alpn_list(args.alpn), keylog=args.keylog)
    except (tlsrekey.Error, ValueError, TypeError) as exc:
        out.line(describe_error(exc))
        return USAGE
    try:
        sock = socket.create_connection((host, port), timeout=args.timeout)
    except OSError as exc:
        out.line("error: cannot connect to %s:%d: %s" % (host, port, exc.strerror or exc))
        return FAILED
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            conn = ctx.wrap(sock, server_hostname=args.servername or host)
        except (tlsrekey.Error, ValueError) as exc:
            out.line(describe_error(exc))
            return FAILED
        out.line("* TCP connected to %s:%d; handshaking (type :help for commands)"
                 % (host, port))
        loop = Loop(out)
        session = Session(conn, out, lazy_reply=args.lazy_reply)
        status, _ = run_session(loop, session, sock, stdin_eof_closes=True)
    return status


# --- serve --------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    if args.key is not None and args.cert is None:
        out.line("error: --key needs --cert")
        return USAGE
    min_v, max_v = version_limits(args)
    cert, key = args.cert, args.key
    if cert is None:
        cert, key = tlsrekey.make_test_cert("localhost")
        out.line("* using a throwaway self-signed certificate for localhost")
    try:
        ctx = tlsrekey.Context.server(
            cert, key, allow_client_renegotiation=args.allow_client_renegotiation,
            min_version=min_v, max_version=max_v, alpn=alpn_list(args.alpn),
            keylog=args.keylog, cafile=args.cafile)
    except (tlsrekey.Error, ValueError, TypeError) as exc:
        out.line(describe_error(exc))
        return USAGE
    try:
        listener = socket.create_server((args.host, args.port))
    except OSError as exc:
        out.line("error: cannot listen on %s:%d: %s" % (args.host, args.port,
                                                          exc.strerror or exc))
        return FAILED
    status = OK
    loop = Loop(out)
    with listener:
        out.line("* listening on %s:%d (type :help for commands)"
                 % listener.getsockname()[:2])
        while True:
            sock = accept(loop, listener)
            if sock is None:
                return status
            with sock:
                peer = sock.getpeername()
                out.line("* accepted %s:%d" % peer[:2])
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                session = Session(ctx.wrap(sock), out, lazy_reply=args.lazy_reply,
                                  echo=args.echo)
                status, how = run_session(loop, session, sock, stdin_eof_closes=False)
                out.line("* connection with %s:%d ended" % peer[:2])
            if how == "quit" or args.once:
                return status


def accept(loop: Loop, listener: socket.socket) -> Optional[socket.socket]:
    """Waits for a client, handling stdin meanwhile (Q quits). None to quit."""
    listener.setblocking(False)
    loop.sel.register(listener, selectors.EVENT_READ, "listener")
    try:
        while True:
            for key, _ in loop.sel.select():
                if key.data == "listener":
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        continue
                    return sock
                lines = loop.read_stdin_lines()
                for line in lines or ():
                    text = line.strip()
                    if text == "Q":
                        return None
                    if text == ":help":
                        loop.out.line(HELP)
                    elif text:
                        loop.out.line("(no connection yet: %r ignored)" % text)
    finally:
        loop.sel.unregister(listener)


# --- the command line ---------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tlsrekey",
        description="An interactive TLS console with key update (TLS 1.3) and "
                    "renegotiation (TLS 1.2): type k, K, R, r, Q or :help once "
                    "connected.")
    sub = p.add_subparsers(dest="command", metavar="{connect,serve}")
    sub.required = True

    def common(sp: argparse.ArgumentParser) -> None:
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--tls1_2", action="store_true", help="TLS 1.2 only")
        g.add_argument("--tls1_3", action="store_true", help="TLS 1.3 only")
        sp.add_argument("--alpn", action="append", metavar="P",
                        help="ALPN protocol(s) to offer/accept (repeat or comma-separate)")
        sp.add_argument("--keylog", metavar="F",
                        help="append NSS key log lines (SSLKEYLOGFILE format) to F")
        sp.add_argument("--lazy-reply", action="store_true",
                        help="do not answer a peer's key update request at once: the "
                             "reply then leaves with the next line typed (OpenSSL's "
                             "own behaviour)")

    c = sub.add_parser("connect", help="connect to a TLS server (like openssl s_client)")
    c.add_argument("target", metavar="HOST:PORT")
    c.add_argument("--cafile", metavar="F", help="trusted certificates (PEM file)")
    c.add_argument("--insecure", action="store_true",
                   help="do not verify the server's certificate or name")
    c.add_argument("--servername", metavar="N",
                   help="SNI name and the name checked in the certificate "
                        "(default: HOST)")
    c.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the TCP connection (default 10)")
    common(c)

    s = sub.add_parser("serve", help="accept TLS clients (like openssl s_server)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on "
                   "(default 127.0.0.1)")
    s.add_argument("--port", type=int, default=4433, metavar="P",
                   help="port to listen on (default 4433; 0 picks a free one)")
    s.add_argument("--cert", metavar="F", help="certificate (PEM file; default: a "
                   "throwaway self-signed one for localhost)")
    s.add_argument("--key", metavar="F", help="private key (PEM file; default: in --cert)")
    s.add_argument("--cafile", metavar="F",
                   help="CAs for client certificates (see :askcert)")
    s.add_argument("--allow-client-renegotiation", action="store_true",
                   help="accept renegotiations the client starts (TLS 1.2)")
    s.add_argument("--echo", action="store_true", help="send received data back")
    s.add_argument("--once", action="store_true",
                   help="exit after the first connection, with its status")
    common(s)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output()
    try:
        if args.command == "connect":
            return cmd_connect(args, out)
        return cmd_serve(args, out)
    except KeyboardInterrupt:
        out.line("* interrupted")
        return 130
