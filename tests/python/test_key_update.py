"""TLS 1.3 key update: seed statements 1-5 of SSL_key_update(3), each over the
in-memory pair and over a socket pair, and the key update pitfalls of issue 2."""
import pytest

import tlsrekey
from tlsrekey import KeyUpdateType

from conftest import TIMEOUT, Concurrent, wait_readable


def exchange(link, rounds=3):
    """Data keeps flowing both ways."""
    c, s = link.client, link.server
    for i in range(rounds):
        msg = b"c%d" % i
        assert c.write(msg) == len(msg)
        assert s.read() == msg
        msg = b"s%d" % i
        assert s.write(msg) == len(msg)
        assert c.read() == msg


# -- 1 ------------------------------------------------------------------------

def test_key_update_not_requested_updates_only_our_keys(make_link):
    link = make_link()
    c, s = link.client, link.server
    c.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    c.write(b"after update")
    assert s.read() == b"after update"

    assert c.stats["key_updates_sent"] == 1
    assert c.stats["key_update_requests_sent"] == 0
    assert s.stats["key_updates_received"] == 1
    assert s.stats["key_update_requests_received"] == 0
    # The peer was told, not asked: it owes nothing and does not update its own.
    assert s.get_key_update_type() is KeyUpdateType.NONE
    exchange(link)
    assert s.stats["key_updates_sent"] == 0
    assert c.stats["key_updates_received"] == 0


def test_key_update_default_type_is_not_requested(make_link):
    link = make_link()
    link.client.key_update()
    assert link.client.get_key_update_type() is KeyUpdateType.NOT_REQUESTED


# -- 2 ------------------------------------------------------------------------

def test_key_update_requested_makes_peer_update(make_link):
    link = make_link()
    c, s = link.client, link.server
    c.key_update(KeyUpdateType.REQUESTED)
    c.write(b"one")
    assert s.read() == b"one"
    assert s.stats["key_update_requests_received"] == 1
    s.write(b"two")                     # carries the server's own KeyUpdate
    assert c.read() == b"two"

    assert c.stats["key_updates_sent"] == 1
    assert c.stats["key_update_requests_sent"] == 1
    assert c.stats["key_updates_received"] == 1
    assert c.stats["key_update_requests_received"] == 0   # a reply asks for none
    assert s.stats["key_updates_sent"] == 1
    exchange(link)
    assert c.stats["key_updates_sent"] == 1 and s.stats["key_updates_sent"] == 1


def test_key_update_both_ways_many_times(make_link):
    link = make_link()
    c, s = link.client, link.server
    for i in range(5):
        for sender, receiver in ((c, s), (s, c)):
            sender.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
            sender.write(b"x%d" % i)
            assert receiver.read() == b"x%d" % i
            receiver.write(b"y%d" % i)
            assert sender.read() == b"y%d" % i
    # Each side sent 5 requested updates and 5 replies.
    for conn in (c, s):
        assert conn.stats["key_updates_sent"] == 10
        assert conn.stats["key_update_requests_sent"] == 5
        assert conn.stats["key_updates_received"] == 10
        assert conn.stats["key_update_requests_received"] == 5


# -- 3 ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [tlsrekey.KEY_UPDATE_NONE, KeyUpdateType.NONE, -1, 2,
                                   7, -2, 2**40, -(2**70)])
def test_key_update_none_or_unknown_value_is_rejected(make_link, value):
    link = make_link()
    with pytest.raises(ValueError, match="updatetype") as info:
        link.client.key_update(value)
    assert not isinstance(info.value, tlsrekey.Error)
    # Nothing was scheduled, nothing harmed.
    assert link.client.get_key_update_type() is KeyUpdateType.NONE
    link.client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    link.client.write(b"ok")
    assert link.server.read() == b"ok"


@pytest.mark.parametrize("value", [True, False, 1.0, "requested", b"\x01", None])
def test_key_update_wrong_type_is_type_error(make_link, value):
    link = make_link()
    with pytest.raises(TypeError, match="updatetype"):
        link.client.key_update(value)
    assert link.client.get_key_update_type() is KeyUpdateType.NONE


def test_key_update_accepts_plain_ints(make_link):
    link = make_link()
    link.client.key_update(1)
    assert link.client.get_key_update_type() is KeyUpdateType.REQUESTED
    link.client.write(b"go")
    assert link.server.read() == b"go"
    link.client.key_update(updatetype=0)
    assert link.client.get_key_update_type() is KeyUpdateType.NOT_REQUESTED


# -- 4 ------------------------------------------------------------------------

def test_key_update_on_tls12_is_state_error_naming_the_version(make_link):
    link = make_link(max_version="TLSv1.2")
    assert link.client.version == "TLSv1.2"
    for conn in (link.client, link.server):
        with pytest.raises(tlsrekey.StateError, match="TLSv1.2") as info:
            conn.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
        assert info.value.reason == "wrong ssl version"
        assert info.value.status == "state"
    link.client.write(b"still fine")
    assert link.server.read() == b"still fine"


def test_key_update_before_handshake_is_state_error_memory(test_cert):
    client = tlsrekey.Context.client(test_cert[0]).memory("localhost")
    with pytest.raises(tlsrekey.StateError, match="handshake") as info:
        client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    assert info.value.reason == "handshake not complete"
    assert client.state == "new"


def test_key_update_before_handshake_is_state_error_socket(test_cert):
    import socket
    a, b = socket.socketpair()
    try:
        a.settimeout(TIMEOUT)
        conn = tlsrekey.Context.client(test_cert[0]).wrap(a, server_hostname="localhost")
        with pytest.raises(tlsrekey.StateError, match="handshake"):
            conn.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
        conn.close()
    finally:
        a.close()
        b.close()


# -- 5 ------------------------------------------------------------------------

def test_key_update_waits_for_the_next_io(make_link):
    link = make_link()
    c, s = link.client, link.server
    records = c.stats["records_written"]
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    assert c.get_key_update_type() is KeyUpdateType.REQUESTED
    assert c.stats["key_updates_sent"] == 0
    assert c.stats["records_written"] == records          # nothing went out
    if link.kind == "socket":
        assert not wait_readable(link.socks[1], 0.2)
    # (On a pair, any call on the server would move the client, which is I/O for
    # it: so the server is left alone here.)

    c.write(b"now")
    assert c.get_key_update_type() is KeyUpdateType.NONE
    assert c.stats["key_updates_sent"] == 1
    assert s.read() == b"now"
    assert s.stats["key_updates_received"] == 1


def test_key_update_goes_out_with_a_read(make_link):
    link = make_link()
    c, s = link.client, link.server
    c.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    s.write(b"for the client")
    assert c.read() == b"for the client"    # the scheduled update left with this read
    assert c.get_key_update_type() is KeyUpdateType.NONE
    assert c.stats["key_updates_sent"] == 1
    assert link.server_nonblocking_read() == b""
    assert s.stats["key_updates_received"] == 1


def test_do_handshake_forces_a_scheduled_key_update(make_link):
    link = make_link()
    c, s = link.client, link.server
    c.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    c.do_handshake()
    assert c.get_key_update_type() is KeyUpdateType.NONE
    assert c.stats["key_updates_sent"] == 1
    assert link.server_nonblocking_read() == b""
    assert s.stats["key_updates_received"] == 1


def test_key_update_now_puts_it_on_the_wire(make_link):
    link = make_link()
    c, s = link.client, link.server
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED, now=True)
    assert c.get_key_update_type() is KeyUpdateType.NONE
    assert c.stats["key_updates_sent"] == 1
    assert link.server_nonblocking_read() == b""   # the peer counts it on reading
    assert s.stats["key_updates_received"] == 1
    assert s.stats["key_update_requests_received"] == 1


# -- pitfalls -----------------------------------------------------------------

def test_second_key_update_while_scheduled_names_the_scheduled_type(make_link):
    link = make_link()
    c, s = link.client, link.server
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    with pytest.raises(tlsrekey.StateError, match="requested") as info:
        c.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    assert info.value.reason == "key update already scheduled"
    # The first one is still the one scheduled, and the connection is usable.
    assert c.get_key_update_type() is KeyUpdateType.REQUESTED
    c.write(b"data")
    assert s.read() == b"data"
    assert c.stats["key_updates_sent"] == 1
    assert c.stats["key_update_requests_sent"] == 1
    c.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)     # free again
    exchange(link)
    assert c.stats["key_updates_sent"] == 2


def test_key_update_after_want_write_is_state_error_until_the_write_completes(
        socket_pair_factory):
    link = socket_pair_factory()
    c, s = link.client, link.server
    c.settimeout(0)
    chunk = b"x" * 65536
    # Fill the socket buffers: the server does not read, so a write must block.
    for _ in range(1000):
        try:
            c.write(chunk)
        except tlsrekey.WantWriteError:
            break
    else:
        pytest.fail("the socket never filled up")

    with pytest.raises(tlsrekey.StateError, match="pending") as info:
        c.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)
    assert info.value.reason == "bad write retry"
    assert c.get_key_update_type() is KeyUpdateType.NONE

    # Let the server read while the client finishes its write (same data).
    received = bytearray()
    for _ in range(10000):
        try:
            c.write(chunk)
            break
        except tlsrekey.WantWriteError:
            received += s.read(65536)
    else:
        pytest.fail("the pending write never completed")
    c.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED)        # now accepted
    c.settimeout(TIMEOUT)

    def read_to_end():
        while not received.endswith(b"END"):
            received.extend(s.read(65536))

    reader = Concurrent(read_to_end)
    c.write(b"END")
    reader.result()
    assert set(received[:-3]) == {ord("x")}
    assert c.stats["key_updates_sent"] == 1
    assert s.stats["key_updates_received"] == 1


def test_peer_update_request_is_owed_until_our_next_write(make_link):
    link = make_link()
    c, s = link.client, link.server
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    c.write(b"please update")
    assert s.read() == b"please update"
    # The server's own code never asked for an update, yet one is scheduled: the
    # reply it owes.
    assert s.get_key_update_type() is KeyUpdateType.NOT_REQUESTED
    assert s.stats["key_updates_sent"] == 0
    # do_handshake() does not send the owed reply...
    s.do_handshake()
    assert s.get_key_update_type() is KeyUpdateType.NOT_REQUESTED
    assert s.stats["key_updates_sent"] == 0
    # ...a zero-length write does, with no application data.
    written = s.stats["bytes_written"]
    assert s.write(b"") == 0
    assert s.get_key_update_type() is KeyUpdateType.NONE
    assert s.stats["key_updates_sent"] == 1
    assert s.stats["bytes_written"] == written
    if link.kind == "socket":
        c.settimeout(0)
    with pytest.raises(tlsrekey.WantReadError):
        c.read()
    assert c.stats["key_updates_received"] == 1
    assert c.stats["bytes_read"] == 0


def test_reader_that_never_writes_never_rotates_its_keys(make_link):
    link = make_link()
    c, s = link.client, link.server
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    for i in range(3):
        c.write(b"m%d" % i)
        assert s.read() == b"m%d" % i
    assert s.stats["key_updates_sent"] == 0
    assert s.get_key_update_type() is KeyUpdateType.NOT_REQUESTED


def test_key_update_repr_shows_the_pending_update(make_link):
    link = make_link()
    c = link.client
    assert "key_update" not in repr(c)
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    r = repr(c)
    assert r.startswith("<tlsrekey.Connection client TLSv1.3 ")
    assert "established" in r and r.endswith("key_update=requested>")


def test_key_update_events_are_reported(make_link):
    link = make_link()
    c, s = link.client, link.server
    seen = []
    c.set_event_callback(lambda ev: seen.append(("client", ev["name"],
                                                  ev.get("request_update"))))
    s.set_event_callback(lambda ev: seen.append(("server", ev["name"],
                                                  ev.get("request_update"))))
    c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    c.write(b"a")
    assert s.read() == b"a"
    s.write(b"b")
    assert c.read() == b"b"
    assert seen == [
        ("client", "key_update_sent", True),
        ("server", "key_update_received", True),
        ("server", "key_update_sent", False),
        ("client", "key_update_received", False),
    ]


# -- any interleaving ----------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_step = st.tuples(st.sampled_from(["client", "server"]),
                  st.sampled_from([None, 0, 1]),
                  st.integers(min_value=0, max_value=40000))


@settings(max_examples=40, deadline=None)
@given(st.lists(_step, min_size=1, max_size=12))
def test_data_survives_any_mix_of_writes_and_key_updates(steps):
    client, server = tlsrekey.pair()
    ends = {"client": (client, server), "server": (server, client)}
    expected_sent = {"client": 0, "server": 0}
    for who, update, size in steps:
        sender, receiver = ends[who]
        if update is not None and sender.get_key_update_type() is KeyUpdateType.NONE:
            sender.key_update(update)
            expected_sent[who] += 1
        payload = bytes([size % 251]) * size
        assert sender.write(payload) == size
        got = b""
        while len(got) < size:
            got += receiver.read(65536)
        assert got == payload
    # Flush owed replies both ways (a reply read can make the other end owe one:
    # three turns settle it), then every update sent was received.
    for who in ("client", "server", "client"):
        sender, receiver = ends[who]
        if sender.get_key_update_type() is not KeyUpdateType.NONE:
            expected_sent[who] += 1
        sender.write(b"")
        try:
            receiver.read()
        except tlsrekey.WantReadError:
            pass
    assert client.stats["key_updates_sent"] == server.stats["key_updates_received"]
    assert server.stats["key_updates_sent"] == client.stats["key_updates_received"]
    assert client.stats["key_updates_sent"] >= expected_sent["client"]
    assert server.stats["key_updates_sent"] >= expected_sent["server"]
    assert client.get_key_update_type() is KeyUpdateType.NONE
    assert server.get_key_update_type() is KeyUpdateType.NONE
