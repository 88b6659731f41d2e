"""Lifetimes, close, threads and event callbacks: a connection keeps its context,
socket and callback alive, a pair does not keep its peer alive, deleting in any order
never crashes, a closed connection raises StateError, one connection used from
several threads is serialised, and callback exceptions come back to the caller."""
import gc
import itertools
import socket
import sys
import threading
import time
import weakref

import pytest

import tlsrekey

from conftest import TIMEOUT, Concurrent


class Callback:
    """A weak-referenceable event callback that records event names."""

    def __init__(self):
        self.names = []

    def __call__(self, event):
        self.names.append(event["name"])


def collect():
    for _ in range(3):
        gc.collect()


# -- what a connection keeps alive -----------------------------------------------

class WeakContext(tlsrekey.Context):
    """A Context subclass that can be weakly referenced."""


def test_connection_keeps_its_context(test_cert):
    client_ctx = WeakContext.client(test_cert[0])
    server_ctx = WeakContext.server(*test_cert)
    client, server = tlsrekey._tlsrekey._pair(client_ctx, server_ctx, "localhost")
    refs = [weakref.ref(client_ctx), weakref.ref(server_ctx)]
    del client_ctx, server_ctx
    collect()
    assert all(r() is not None for r in refs)
    assert client.context is refs[0]() and server.context is refs[1]()
    client.write(b"still works")
    assert server.read() == b"still works"
    del client, server
    collect()
    assert all(r() is None for r in refs)


def test_connection_keeps_its_socket_and_never_closes_it(test_cert):
    a, b = socket.socketpair()
    b.settimeout(TIMEOUT)
    client = tlsrekey.Context.client(test_cert[0]).wrap(a, server_hostname="localhost")
    server = tlsrekey.Context.server(*test_cert).wrap(b)
    ref = weakref.ref(a)
    del a
    collect()
    assert ref() is not None                    # held by the connection
    peer = Concurrent(server.read)
    client.write(b"kept")
    assert peer.result() == b"kept"
    client.close()
    collect()
    assert ref() is None                        # released by close()
    server.close()
    b.close()


def test_connection_keeps_its_callback():
    client, server = tlsrekey.pair()
    cb = Callback()
    ref = weakref.ref(cb)
    client.set_event_callback(cb)
    del cb
    collect()
    assert ref() is not None
    client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED, now=True)
    assert ref().names == ["key_update_sent"]
    client.set_event_callback(None)
    collect()
    assert ref() is None


def test_pair_does_not_keep_its_peer_alive():
    client, server = tlsrekey.pair()
    ref = weakref.ref(server)
    del server
    collect()
    assert ref() is None
    with pytest.raises(tlsrekey.SyscallError, match="freed"):
        client.write(b"nobody there")


def test_cycle_through_a_callback_is_collected():
    client, server = tlsrekey.pair()
    client.set_event_callback(lambda event: client.stats)   # client -> fn -> client
    refs = [weakref.ref(client), weakref.ref(server)]
    client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED, now=True)
    del client, server
    collect()
    assert [r() for r in refs] == [None, None]


@pytest.mark.parametrize("order", list(itertools.permutations(
    ["client", "server", "client_ctx", "server_ctx"])))
def test_deleting_in_any_order_never_crashes(test_cert, order):
    objs = {
        "client_ctx": tlsrekey.Context.client(test_cert[0]),
        "server_ctx": tlsrekey.Context.server(*test_cert),
    }
    objs["client"], objs["server"] = tlsrekey._tlsrekey._pair(
        objs["client_ctx"], objs["server_ctx"], "localhost")
    objs["client"].set_event_callback(Callback())
    objs["client"].write(b"x")
    survivors = list(objs)
    for name in order:
        survivors.remove(name)
        del objs[name]
        collect()
        for other in survivors:
            if other in ("client", "server"):
                conn = objs[other]
                repr(conn)
                conn.stats
                try:
                    conn.write(b"y")
                except tlsrekey.SyscallError:
                    pass                        # its peer is gone: that is all


def test_socket_and_context_deleted_before_the_connection(test_cert):
    a, b = socket.socketpair()
    try:
        conn = tlsrekey.Context.client(test_cert[0]).wrap(a, server_hostname="localhost")
        del a
        collect()
        del conn
        collect()
    finally:
        b.close()


# -- close ------------------------------------------------------------------------

def all_calls(conn):
    return {
        "do_handshake": conn.do_handshake,
        "read": conn.read,
        "read_into": lambda: conn.read_into(bytearray(4)),
        "write": lambda: conn.write(b"x"),
        "write_empty": lambda: conn.write(b""),
        "shutdown": conn.shutdown,
        "key_update": lambda: conn.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED),
        "renegotiate": conn.renegotiate,
        "renegotiate_abbreviated": conn.renegotiate_abbreviated,
        "set_verify_client": conn.set_verify_client,
        "export_keying_material": lambda: conn.export_keying_material("x", 8),
        "peer_certificate": lambda: conn.peer_certificate,
    }


CALLS = ["do_handshake", "read", "read_into", "write", "write_empty", "shutdown",
         "key_update", "renegotiate", "renegotiate_abbreviated", "set_verify_client",
         "export_keying_material", "peer_certificate"]


@pytest.mark.parametrize("call", CALLS)
def test_use_after_close_is_state_error(make_link, call):
    link = make_link()
    conn = link.server
    conn.close()
    conn.close()                                  # idempotent
    with pytest.raises(tlsrekey.StateError, match="closed"):
        all_calls(conn)[call]()


def test_closed_connection_still_answers_questions(make_link):
    link = make_link()
    conn = link.client
    conn.close()
    assert conn.state == "released"
    assert conn.version is None and conn.cipher is None and conn.alpn is None
    assert conn.pending() == 0
    assert conn.renegotiate_pending() is False
    assert conn.get_key_update_type() is tlsrekey.KeyUpdateType.NONE
    assert conn.fileno() == -1
    assert isinstance(conn.stats, dict)
    assert "released" in repr(conn)


def test_with_block_closes(test_cert):
    client, server = tlsrekey.pair()
    with client as c:
        assert c is client
        c.write(b"in block")
    assert client.state == "released"
    with pytest.raises(tlsrekey.StateError):
        client.write(b"after")


def test_with_block_closes_on_exception():
    client, _ = tlsrekey.pair()
    with pytest.raises(KeyError):
        with client:
            raise KeyError("boom")
    assert client.state == "released"


# -- threads ----------------------------------------------------------------------

def test_one_connection_from_many_threads_is_serialised():
    client, server = tlsrekey.pair()
    n_threads, n_writes, size = 8, 50, 3000

    def writer(i):
        msg = bytes([65 + i]) * size
        for _ in range(n_writes):
            assert client.write(msg) == size
            if _ % 10 == 0:
                client.stats, repr(client), client.pending()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 3)
    assert not any(t.is_alive() for t in threads)
    got = bytearray()
    total = n_threads * n_writes * size
    while len(got) < total:
        got += server.read(65536)
    assert len(got) == total
    # Each write arrived whole: the data is runs of `size` equal bytes.
    for off in range(0, total, size):
        chunk = got[off:off + size]
        assert chunk == bytes([chunk[0]]) * size
    for i in range(n_threads):
        assert got.count(bytes([65 + i])) == n_writes * size


def test_both_ends_of_a_pair_from_two_threads():
    client, server = tlsrekey.pair()
    rounds = 200

    def client_side():
        for i in range(rounds):
            client.write(b"c%04d" % i)

    def server_side():
        got = b""
        while len(got) < rounds * 5:
            try:
                got += server.read()
            except tlsrekey.WantReadError:
                time.sleep(0.001)             # the client has not written yet
        return got

    reader = Concurrent(server_side)
    client_side()
    got = reader.result()
    assert got == b"".join(b"c%04d" % i for i in range(rounds))


def test_blocking_read_releases_the_gil(socket_pair_factory):
    link = socket_pair_factory()
    link.client.settimeout(1.0)
    blocked = Concurrent(lambda: pytest.raises(tlsrekey.TimeoutError, link.client.read))
    count = 0
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        count += 1
    blocked.result()
    # With the GIL held by the read this loop could not have run at all.
    assert count > 10000


def test_make_test_cert_from_threads():
    results = []
    threads = [threading.Thread(target=lambda: results.append(tlsrekey.make_test_cert()))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert len(results) == 4 and len({r[0] for r in results}) == 4


# -- event callbacks --------------------------------------------------------------

def test_event_dict_contents():
    client, server = tlsrekey.pair()
    events = []
    client.set_event_callback(events.append)
    client.key_update(tlsrekey.KEY_UPDATE_REQUESTED, now=True)
    client.shutdown()
    ku, alert = events
    expected = {"name": "key_update_sent", "role": "client", "connection": client,
                "request_update": True}
    assert {k: ku[k] for k in expected} == expected
    assert ku.get("automatic", False) is False      # we asked for this one ourselves
    assert set(ku) <= set(expected) | {"automatic"}
    assert alert["name"] == "alert_sent"
    assert alert["alert_level"] == 1 and alert["alert_description"] == 0
    assert alert["alert_text"] == "close notify"


def test_callback_exception_is_re_raised_by_the_call_that_triggered_it():
    client, server = tlsrekey.pair()

    def boom(event):
        raise RuntimeError("from the callback: " + event["name"])

    client.set_event_callback(boom)
    with pytest.raises(RuntimeError, match="key_update_sent"):
        client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED, now=True)
    # The connection stays usable and the update did go out.
    assert client.stats["key_updates_sent"] == 1
    client.set_event_callback(None)
    client.write(b"after")
    assert server.read() == b"after"


def test_peer_callback_exception_is_raised_by_the_call_that_moved_it():
    client, server = tlsrekey.pair()

    def boom(event):
        raise LookupError("server saw " + event["name"])

    server.set_event_callback(boom)
    client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    # Writing on the client moves the server, whose callback fails.
    with pytest.raises(LookupError, match="key_update_received"):
        client.write(b"x")
        client.read()                 # (whichever call moved the server)


def test_peer_callback_failure_does_not_linger_on_the_peer():
    # The client's write moves the server through the renegotiation handshake, so
    # the server's callback runs inside the client's call: that call raises, and
    # the server's next call is not haunted by it.
    client, server = tlsrekey.pair(max_version="TLSv1.2",
                                   allow_client_renegotiation=True)
    fail = [True]

    def sometimes(event):
        if fail[0]:
            raise LookupError("once")

    server.set_event_callback(sometimes)
    client.renegotiate()
    with pytest.raises(LookupError):
        client.write(b"x")
    fail[0] = False
    assert server.read() == b"x"
    assert server.stats["renegotiations"] == 1


def test_callback_failure_during_read_loses_no_data():
    client, server = tlsrekey.pair()

    def boom(event):
        raise RuntimeError(event["name"])

    client.set_event_callback(boom)
    server.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    server.write(b"payload")
    with pytest.raises(RuntimeError, match="key_update_received"):
        client.read()
    client.set_event_callback(None)
    server.write(b"next")
    got = b""
    while len(got) < len(b"payloadnext"):
        got += client.read()
    assert got == b"payloadnext"


def test_callback_may_read_but_not_drive_its_connection():
    client, server = tlsrekey.pair()
    seen = []

    def reader(event):
        seen.append((client.stats["key_updates_sent"], client.state, repr(client)))
        client.write(b"from inside")            # driving: refused

    client.set_event_callback(reader)
    with pytest.raises(tlsrekey.StateError, match="callback"):
        client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED, now=True)
    assert seen and seen[0][0] == 1
    client.set_event_callback(None)
    client.write(b"outside")
    assert server.read() == b"outside"


@pytest.mark.parametrize("call", [
    lambda c: c.do_handshake(), lambda c: c.shutdown(), lambda c: c.close(),
    lambda c: c.read(), lambda c: c.key_update(), lambda c: c.renegotiate(),
    lambda c: c.set_rekey_policy(records=5),
], ids=["do_handshake", "shutdown", "close", "read", "key_update", "renegotiate",
        "set_rekey_policy"])
def test_every_driving_call_is_refused_inside_a_callback(call):
    client, server = tlsrekey.pair()
    errors = []

    def driver(event):
        try:
            call(client)
        except tlsrekey.StateError as exc:
            errors.append(exc)

    client.set_event_callback(driver)
    client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED, now=True)
    assert len(errors) == 1 and "callback" in str(errors[0])
    client.set_event_callback(None)
    client.write(b"still usable")
    assert server.read() == b"still usable"


def test_callback_must_be_callable():
    client, _ = tlsrekey.pair()
    with pytest.raises(TypeError):
        client.set_event_callback(42)
