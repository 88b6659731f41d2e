"""tlsrekey for asyncio: streams whose writer can update keys and renegotiate.

    reader, writer = await tlsrekey.asyncio.open_connection(host, port, ctx=ctx)
    writer.write(b"hello")
    writer.key_update(tlsrekey.KEY_UPDATE_REQUESTED)   # on the wire at once
    await writer.drain()
    data = await reader.read(100)

    server = await tlsrekey.asyncio.start_server(handle, "127.0.0.1", 0, ctx=ctx)

The reader is a plain asyncio.StreamReader; the writer is a StreamWriter of this
module, shaped like asyncio's (write, writelines, drain, close, is_closing,
wait_closed, get_extra_info) plus the rekey calls of a Connection.

Underneath, each connection is a tlsrekey Connection on the memory transport
(Context.memory()): the bytes asyncio receives are fed to it and whatever it wants to
send is drained to the TCP transport after every call, reads included (a read can
answer a key update request or carry a renegotiation on). The protocol also sends an
owed key update reply as soon as the request has been read, so a peer that asks is
answered even when this side only reads.
"""

import asyncio
import collections
from typing import Any, Awaitable, Callable, Deque, Iterable, List, Optional, Tuple, Union

import tlsrekey
from tlsrekey import Connection, Context, KeyUpdateType

__all__ = ["open_connection", "start_server", "StreamWriter"]

# Reads take at most this much from the connection at once.
_READ_SIZE = 65536
# asyncio's default StreamReader buffer limit.
_DEFAULT_LIMIT = 2 ** 16

ClientConnectedCallback = Callable[
    [asyncio.StreamReader, "StreamWriter"], Union[None, Awaitable[None]]]


class _TLSProtocol(asyncio.Protocol):
    """An asyncio Protocol that runs a memory-transport Connection over a TCP
    transport and feeds the decrypted stream to an asyncio.StreamReader."""

    def __init__(self, conn: Connection, reader: asyncio.StreamReader,
                 loop: asyncio.AbstractEventLoop,
                 on_handshake: Optional[Callable[["_TLSProtocol"], None]] = None) -> None:
        self.conn = conn
        self.reader = reader
        self.loop = loop
        self.transport: Optional[asyncio.Transport] = None
        self.writer: Optional["StreamWriter"] = None
        self.handshake_done: "asyncio.Future[None]" = loop.create_future()
        self.closed: "asyncio.Future[None]" = loop.create_future()
        self.exception: Optional[Exception] = None
        self._on_handshake = on_handshake
        self._pending: Deque[bytes] = collections.deque()   # written before it could go
        self._paused = False                                # the transport's buffer is full
        self._waiters: List["asyncio.Future[None]"] = []    # drain() and renegotiation
        self._eof_seen = False      # the peer's close_notify, or the TCP end
        self._shut = False          # our close_notify sent
        self._lost = False

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.reader.set_transport(transport)
        self.pump()                 # a client's ClientHello leaves now

    def data_received(self, data: bytes) -> None:
        if self.exception is not None:
            return
        try:
            self.conn.feed(data)
        except tlsrekey.Error as exc:
            self.fail(exc)
            return
        self.pump()

    def eof_received(self) -> bool:
        if self.exception is None and not self._eof_seen:
            try:
                self.conn.feed_eof()
            except tlsrekey.Error as exc:
                self.fail(exc)
                return False
            self.pump()                         # sees the end: clean or not
        if not self._eof_seen:
            self._eof_seen = True
            self.reader.feed_eof()
        return False                            # asyncio closes the transport

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost = True
        if not self.handshake_done.done():
            self.handshake_done.set_exception(
                exc or ConnectionResetError("the connection closed during the handshake"))
            self.handshake_done.exception()     # retrieved: no "never retrieved" noise
        if exc is None:
            if not self._eof_seen:
                self._eof_seen = True
                self.reader.feed_eof()
        elif self.exception is None:
            self.exception = exc
            self.reader.set_exception(exc)
        self._wake(exc or ConnectionResetError("connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)
        # The Connection stays open for questions (stats, version) until collected.

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # -- driving the connection ---------------------------------------------------

    def pump(self) -> None:
        """Moves the connection as far as it goes with what has arrived, then sends
        what it produced. Called after every event and every call that may write.

        An event callback's exception has no caller to reach here (asyncio calls
        data_received): it goes to the loop's exception handler, as asyncio does with
        a failing callback, and the connection, still usable, is moved on again.
        Each such exception came with an event that is now behind us, so this ends.
        """
        while self._pump_once():
            pass

    def _callback_failed(self, exc: BaseException) -> None:
        self.loop.call_exception_handler({
            "message": "tlsrekey: an event callback raised",
            "exception": exc,
            "protocol": self,
            "transport": self.transport,
        })

    def _pump_once(self) -> bool:
        """One pass of pump(); True when an event callback raised and the
        connection should be moved on again."""
        conn = self.conn
        if self.exception is not None or self._lost:
            return False
        try:
            if not self.handshake_done.done():
                try:
                    conn.do_handshake()
                except tlsrekey.WantReadError:
                    return False
                finally:
                    self.flush()
                self.handshake_done.set_result(None)
                if self._on_handshake is not None:
                    self._on_handshake(self)
            self._read_available()
            self._write_pending()
            if (not self._shut and conn.state != "closed"
                    and conn.get_key_update_type() != tlsrekey.KEY_UPDATE_NONE):
                # The reply owed to the peer's update request (our own updates leave
                # as soon as they are made): a zero-length write sends it.
                conn.write(b"")
        except (tlsrekey.WantReadError, tlsrekey.WantWriteError):
            pass
        except tlsrekey.CallbackError as exc:
            self.flush()
            self._callback_failed(exc)
            return True
        except tlsrekey.Error as exc:
            self.fail(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - an event callback's own exception
            self.flush()
            self._callback_failed(exc)
            return True
        finally:
            self.flush()
        self._wake()
        return False

    def _read_available(self) -> None:
        while not self._eof_seen:
            try:
                data = self.conn.read(_READ_SIZE)
            except tlsrekey.WantReadError:
                return
            if not data:                        # the peer's close_notify
                self._eof_seen = True
                self.reader.feed_eof()
                self._shutdown()                # answer it, as asyncio's ssl does
                if self.transport is not None:
                    self.flush()
                    self.transport.close()
                return
            self.reader.feed_data(data)

    def _write_pending(self) -> None:
        while self._pending:
            data = self._pending[0]
            try:
                self.conn.write(data)           # WantReadError: a handshake first
            except Exception as exc:
                # `written`: what went out before an event callback raised (0 when
                # the write is pending: the same data goes again)
                sent = getattr(exc, "written", 0)
                if sent >= len(data):
                    self._pending.popleft()
                elif sent > 0:
                    self._pending[0] = data[sent:]
                raise
            self._pending.popleft()

    def _shutdown(self) -> None:
        if self._shut or not self.handshake_done.done() or self.exception is not None:
            return
        self._shut = True
        try:
            self.conn.shutdown()
        except tlsrekey.Error:
            pass

    def flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            data = self.conn.drain()
        except tlsrekey.Error:
            return
        if data:
            self.transport.write(data)

    def fail(self, exc: Exception) -> None:
        """A fatal error: every waiter and the reader get it; the transport closes
        once the alert (if any) has gone out."""
        if self.exception is not None:
            return
        self.exception = exc
        self.flush()
        if not self.handshake_done.done():
            self.handshake_done.set_exception(exc)
            self.handshake_done.exception()
        self.reader.set_exception(exc)
        self._wake(exc)
        if self.transport is not None:
            self.transport.close()

    # -- for the writer -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.check()
        if self._shut or (self.transport is not None and self.transport.is_closing()):
            raise ConnectionResetError("the connection is closing")
        if data:
            self._pending.append(bytes(data))
        self.pump()

    def check(self) -> None:
        if self.exception is not None:
            raise self.exception

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._shutdown()
        self.flush()
        self.transport.close()

    async def wait_until(self, ready: Callable[[], bool]) -> None:
        """Waits until ready() is true, re-checked whenever the protocol moves."""
        while not ready():
            self.check()
            if self._lost:
                raise ConnectionResetError("connection lost")
            fut = self.loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)

    def writable(self) -> bool:
        return not self._paused and not self._pending

    def _wake(self, exc: Optional[BaseException] = None) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)
                    fut.exception()


class StreamWriter:
    """The writing half of a tlsrekey stream, shaped like asyncio.StreamWriter, with
    the rekey calls of a Connection. Made by open_connection() and start_server()."""

    def __init__(self, protocol: _TLSProtocol, reader: asyncio.StreamReader) -> None:
        assert protocol.transport is not None
        self._protocol = protocol
        self._reader = reader
        self._transport = protocol.transport

    def __repr__(self) -> str:
        return "<tlsrekey.asyncio.StreamWriter %r>" % (self._protocol.conn,)

    @property
    def transport(self) -> asyncio.Transport:
        """The TCP transport underneath (it carries TLS records, not your data)."""
        return self._transport

    @property
    def connection(self) -> Connection:
        """The tlsrekey Connection (memory transport) doing the TLS work: version,
        cipher, peer_certificate, set_event_callback, export_keying_material..."""
        return self._protocol.conn

    @property
    def stats(self) -> "dict[str, int]":
        """The connection's counters (Connection.stats)."""
        return self._protocol.conn.stats

    # -- asyncio.StreamWriter's calls ---------------------------------------------

    def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Encrypts data and hands it to the transport (or keeps it until a
        renegotiation under way allows it). Follow with `await drain()`."""
        self._protocol.write(bytes(data))

    def writelines(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def can_write_eof(self) -> bool:
        """False: TLS has no half-close here; close() sends close_notify."""
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS stream cannot write EOF; close() sends "
                                  "close_notify")

    async def drain(self) -> None:
        """Waits until the transport can take more and nothing written waits for a
        handshake; raises the connection's failure if it failed."""
        self._protocol.check()
        if self._transport.is_closing():
            await asyncio.sleep(0)      # as asyncio does: let connection_lost run
        await self._protocol.wait_until(self._protocol.writable)

    def close(self) -> None:
        """Sends close_notify and closes the transport once its buffer is out."""
        self._protocol.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    async def wait_closed(self) -> None:
        """Waits until the connection is lost (after close() or the peer's end)."""
        await asyncio.shield(self._protocol.closed)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info ("peername", "sockname", "socket", ...), plus
        "tlsrekey_connection" (the Connection), "version" and "cipher"."""
        conn = self._protocol.conn
        if name == "tlsrekey_connection":
            return conn
        if name == "version":
            return conn.version
        if name == "cipher":
            return conn.cipher
        return self._transport.get_extra_info(name, default)

    # -- the rekey calls -------------------------------------------------------------

    def key_update(self, updatetype: KeyUpdateType = KeyUpdateType.NOT_REQUESTED) -> None:
        """TLS 1.3: update our sending keys (REQUESTED: ask the peer to update its own
        too). Unlike Connection.key_update, the KeyUpdate is handed to the transport at
        once. StateError when not TLS 1.3."""
        self._protocol.check()
        self._protocol.conn.key_update(updatetype)
        self._protocol.write(b"")

    def get_key_update_type(self) -> KeyUpdateType:
        """The scheduled key update, KeyUpdateType.NONE when nothing is owed (the
        protocol sends updates, and replies to requests, as soon as it can)."""
        return self._protocol.conn.get_key_update_type()

    def renegotiate(self) -> None:
        """TLS 1.2: start a renegotiation (a server sends a HelloRequest). It goes on
        as data arrives; `await wait_renegotiated()` to know it is complete."""
        self._protocol.check()
        self._protocol.conn.renegotiate()
        self._start_handshake()

    def renegotiate_abbreviated(self) -> None:
        """Like renegotiate(), resuming the session (a client's abbreviated
        handshake)."""
        self._protocol.check()
        self._protocol.conn.renegotiate_abbreviated()
        self._start_handshake()

    def renegotiate_pending(self) -> bool:
        """True while a renegotiation is scheduled or under way."""
        return self._protocol.conn.renegotiate_pending()

    async def wait_renegotiated(self) -> None:
        """Waits until no renegotiation is pending (at once if none is)."""
        await self._protocol.wait_until(
            lambda: not self._protocol.conn.renegotiate_pending())

    def _start_handshake(self) -> None:
        try:
            self._protocol.conn.do_handshake()
        except tlsrekey.WantReadError:
            pass
        except tlsrekey.Error as exc:
            self._protocol.fail(exc)
            raise
        self._protocol.pump()


def _client_hostname(ctx: Context, host: Optional[str],
                     server_hostname: Optional[str]) -> Optional[str]:
    if ctx.role != "client":
        raise ValueError("ctx: open_connection needs a client context")
    return server_hostname if server_hostname is not None else host


async def open_connection(host: Optional[str] = None, port: Optional[int] = None, *,
                          ctx: Context, server_hostname: Optional[str] = None,
                          limit: int = _DEFAULT_LIMIT,
                          **kwargs: Any) -> Tuple[asyncio.StreamReader, StreamWriter]:
    """Connects to host:port, completes the TLS handshake and returns (reader,
    writer). ctx is a client Context; server_hostname (default: host) is the SNI name
    and the name checked against the certificate. limit is the reader's buffer limit;
    other keyword arguments go to loop.create_connection(). A failed handshake raises
    its tlsrekey error (CertificateError, ProtocolError...)."""
    loop = asyncio.get_running_loop()
    conn = ctx.memory(server_hostname=_client_hostname(ctx, host, server_hostname))
    reader = asyncio.StreamReader(limit=limit)
    protocol = _TLSProtocol(conn, reader, loop)
    # host/port may be None when kwargs has sock=, which the overloads do not say.
    create: Any = loop.create_connection
    transport, _ = await create(lambda: protocol, host, port, **kwargs)
    try:
        await protocol.handshake_done
    except BaseException:
        transport.close()
        raise
    writer = StreamWriter(protocol, reader)
    protocol.writer = writer
    return reader, writer


async def start_server(client_connected_cb: ClientConnectedCallback,
                       host: Optional[str] = None, port: Optional[int] = None, *,
                       ctx: Context, limit: int = _DEFAULT_LIMIT,
                       **kwargs: Any) -> asyncio.Server:
    """Starts a TLS server; client_connected_cb(reader, writer) is called (or, for a
    coroutine function, scheduled as a task) once each client's handshake is
    complete. ctx is a server Context. Returns the asyncio.Server; other keyword
    arguments go to loop.create_server(). A client whose handshake fails is
    dropped."""
    if ctx.role != "server":
        raise ValueError("ctx: start_server needs a server Context")
    loop = asyncio.get_running_loop()
    tasks: "set[asyncio.Task[None]]" = set()

    def connected(protocol: _TLSProtocol) -> None:
        writer = StreamWriter(protocol, protocol.reader)
        protocol.writer = writer
        try:
            result = client_connected_cb(protocol.reader, writer)
        except Exception as exc:   # as asyncio does: report it, drop the client
            loop.call_exception_handler({
                "message": "tlsrekey.asyncio: client_connected_cb failed",
                "exception": exc, "protocol": protocol})
            writer.close()
            return
        if asyncio.iscoroutine(result):
            task: "asyncio.Task[None]" = loop.create_task(result)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def factory() -> _TLSProtocol:
        reader = asyncio.StreamReader(limit=limit)
        return _TLSProtocol(ctx.memory(), reader, loop, on_handshake=connected)

    return await loop.create_server(factory, host, port, **kwargs)
