"""write() does what it says or says exactly what it did (issue 15, items 1, 2, 6).

- It sends all of the data, or raises WantWriteError/WantReadError/TimeoutError
  having kept its place: the same call again finishes it, with or without a rekey
  policy splitting the data between key updates.
- A write while another write is pending is refused with StateError naming the
  pending write; the connection is not harmed.
- When an event callback raises during a write, the exception says how many bytes
  already went out (``written``): the rest is what a retry sends."""
import socket

import pytest

import tlsrekey

from conftest import TIMEOUT, socket_link


def drain(conn, limit=1 << 20):
    """What has arrived at conn, without waiting."""
    out = bytearray()
    conn.settimeout(0)
    try:
        while len(out) < limit:
            out.extend(conn.read())
    except tlsrekey.WantReadError:
        pass
    finally:
        conn.settimeout(TIMEOUT)
    return bytes(out)


def small_buffers(link):
    for s in link.socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


@pytest.mark.parametrize("timeout", [0, 0.05], ids=["nonblocking", "timeout"])
@pytest.mark.parametrize("policy", [None, 3000], ids=["no-policy", "policy-3000"])
def test_a_write_sends_everything_or_raises_and_the_same_call_finishes_it(
        test_cert, timeout, policy):
    link = socket_link(*test_cert, max_version="TLSv1.3")
    client, server = link.client, link.server
    try:
        small_buffers(link)
        if policy:
            client.set_rekey_policy(bytes=policy)
        client.settimeout(timeout)
        sent = bytearray()
        got = bytearray()
        raised = 0
        for i in range(40):
            data = bytes([65 + i % 26]) * 9000
            while True:
                try:
                    n = client.write(data)
                except (tlsrekey.WantWriteError, tlsrekey.WantReadError,
                        tlsrekey.TimeoutError):
                    raised += 1
                    got.extend(drain(server))
                    continue
                assert n == len(data), "a short count: the caller would drop the tail"
                sent.extend(data)
                break
        client.settimeout(TIMEOUT)
        while len(got) < len(sent):
            got.extend(server.read())
        assert raised > 0, "the socket never filled: the test proved nothing"
        assert bytes(got) == bytes(sent)
        if policy:
            assert client.stats["automatic_rekeys"] >= len(sent) // policy - 1
    finally:
        link.close()


@pytest.mark.parametrize("other", [b"", b"other data", None],
                         ids=["empty", "other-data", "same-length-prefix"])
def test_another_write_while_one_is_pending_is_a_harmless_state_error(
        test_cert, other):
    link = socket_link(*test_cert, max_version="TLSv1.3")
    client, server = link.client, link.server
    try:
        small_buffers(link)
        client.settimeout(0)
        data = b"p" * 50000
        sent = bytearray()
        while True:
            try:
                sent.extend(data[:client.write(data)])
            except tlsrekey.WantWriteError:
                break
        if other is None:
            other = data[:1000]              # shorter: OpenSSL says "bad length"
        with pytest.raises(tlsrekey.StateError) as info:
            client.write(other)
        assert "pending" in str(info.value)
        assert "%d bytes" % len(data) in str(info.value)
        # the connection is whole: the pending write finishes, every byte arrives once
        client.settimeout(TIMEOUT)
        got = bytearray()
        while True:
            got.extend(drain(server))
            try:
                client.settimeout(0)
                assert client.write(data) == len(data)
                break
            except tlsrekey.WantWriteError:
                pass
        sent.extend(data)
        client.settimeout(TIMEOUT)
        client.write(b"end")
        sent.extend(b"end")
        while len(got) < len(sent):
            got.extend(server.read())
        assert bytes(got) == bytes(sent)
    finally:
        link.close()


def test_a_pending_write_after_a_timeout_refuses_an_empty_write(test_cert):
    """write(b"") after a write that timed out is refused, not fatal."""
    link = socket_link(*test_cert, max_version="TLSv1.3")
    client, server = link.client, link.server
    try:
        small_buffers(link)
        client.settimeout(0.05)
        data = b"t" * 50000
        with pytest.raises(tlsrekey.TimeoutError):
            while True:
                client.write(data)
        with pytest.raises(tlsrekey.StateError):
            client.write(b"")
        assert client.state == "established"
    finally:
        link.close()


class Boom(Exception):
    pass


@pytest.mark.parametrize("policy", [None, 4000], ids=["no-policy", "policy-4000"])
def test_a_raising_callback_during_a_write_says_how_much_went_out(policy):
    """The callback raises at the key update the write sends: the data (or the part
    of it the policy let out) reached the peer, and the exception says how much, so
    a retry of the rest doubles nothing."""
    client, server = tlsrekey.pair(max_version="TLSv1.3")
    data = b"".join(b"PAY-%04d;" % i for i in range(1000))     # 9000 bytes

    def callback(event):
        if event["name"] == "key_update_sent":
            raise Boom()
    client.set_event_callback(callback)
    if policy:
        client.set_rekey_policy(bytes=policy)
    else:
        client.key_update(tlsrekey.KEY_UPDATE_NOT_REQUESTED, now=False)
    with pytest.raises(Boom) as info:
        client.write(data)
    written = info.value.written
    assert 0 < written <= len(data)
    client.set_event_callback(None)
    assert client.write(data[written:]) == len(data) - written
    got = bytearray()
    while len(got) < len(data):
        got.extend(server.read())
    assert bytes(got) == data


def test_a_callback_failure_in_a_call_that_failed_is_not_reported_again(test_cert):
    """The callback raises in a write that then fails on its own (the peer closed
    during the renegotiation the write drove): that write reports both; the next
    reads, the callback removed, give the stashed data and then b"" at the close,
    not a stale CallbackError (issue 15, item 5)."""
    link = socket_link(*test_cert, max_version="TLSv1.2", allow_client_renegotiation=True)
    client, server = link.client, link.server
    try:
        def callback(event):
            if event["name"] == "handshake_start":
                raise Boom()
        client.set_event_callback(callback)
        client.renegotiate()                    # scheduled: the next I/O performs it
        server.write(b"before the close")
        server.shutdown()
        with pytest.raises(Exception) as info:
            client.write(b"x")
        assert isinstance(info.value, Boom) or isinstance(info.value.__context__, Boom)
        client.set_event_callback(None)
        got = bytearray()
        while True:
            data = client.read()
            if not data:
                break
            got.extend(data)
        assert bytes(got) == b"before the close"
    finally:
        link.close()
