"""Errors: seed statement 12 (each OpenSSL failure becomes the exception of its status,
docs/design.md's list, with OpenSSL's library and reason, and nothing leaks into the
next call), the exception classes, and the fatal-error and EOF pitfalls."""
import builtins
import errno
import os
import socket
import subprocess
import sys

import pytest

import tlsrekey
from tlsrekey import _tlsrekey

from conftest import TIMEOUT, Concurrent, catch, memory_handshake, shuttle

EXPECTED_CLASSES = {
    "want_read": tlsrekey.WantReadError,
    "want_write": tlsrekey.WantWriteError,
    "closed": tlsrekey.ZeroReturnError,
    "syscall": tlsrekey.SyscallError,
    "protocol": tlsrekey.ProtocolError,
    "verify": tlsrekey.CertificateError,
    "state": tlsrekey.StateError,
    "timeout": tlsrekey.TimeoutError,
    "callback": tlsrekey.CallbackError,
    "arg": ValueError,
    "nomem": MemoryError,
}


# -- the classes ----------------------------------------------------------------

def test_every_core_status_has_a_python_class():
    names = [n for n in _tlsrekey._status_names() if n is not None]
    assert names[0] == "ok"
    assert set(names[1:]) == set(_tlsrekey._STATUS_CLASSES)
    assert _tlsrekey._STATUS_CLASSES == EXPECTED_CLASSES


@pytest.mark.parametrize("name", sorted(set(EXPECTED_CLASSES) - {"arg", "nomem"}))
def test_error_classes_derive_from_error_and_oserror(name):
    cls = EXPECTED_CLASSES[name]
    assert issubclass(cls, tlsrekey.Error)
    assert issubclass(cls, OSError)
    assert cls.status == name
    assert cls.__module__ == "tlsrekey"
    assert cls.__doc__


def test_timeout_error_is_also_the_builtin_timeout_error():
    assert issubclass(tlsrekey.TimeoutError, builtins.TimeoutError)
    assert issubclass(tlsrekey.TimeoutError, tlsrekey.Error)


def test_argument_errors_are_not_tlsrekey_errors():
    assert not issubclass(ValueError, tlsrekey.Error)


def test_a_user_raised_error_still_has_the_attributes():
    e = tlsrekey.StateError("mine")
    assert str(e) == "mine"
    assert e.status == "state" and e.reason is None and e.errors == ()


# -- 12: a real failure carries OpenSSL's details ------------------------------

def untrusted_memory_handshake(server_cert, trusted):
    client = tlsrekey.Context.client(trusted).memory("localhost")
    server = tlsrekey.Context.server(*server_cert).memory()
    with pytest.raises(tlsrekey.CertificateError) as info:
        memory_handshake(client, server)
    return client, server, info.value


def test_verify_failure_is_certificate_error_with_openssl_details(test_cert, other_cert):
    client, server, e = untrusted_memory_handshake(test_cert, other_cert[0])
    assert e.status == "verify"
    assert e.reason == "certificate verify failed"
    assert e.library == "SSL routines"
    assert e.verify_code == 18                       # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    assert "self-signed" in e.verify_message
    assert e.ssl_error == 1                          # SSL_ERROR_SSL
    assert e.errno is None
    assert e.alert is None                           # our own verdict, no peer's alert
    assert any("certificate verify failed" in line for line in e.errors)
    text = str(e)
    assert "\n" not in text and "certificate verify failed" in text
    # The server learns it from the client's alert.
    shuttle(client, server)
    with pytest.raises(tlsrekey.ProtocolError) as info:
        server.do_handshake()
    assert info.value.alert == 48                    # unknown_ca (RFC 8446 6.2)
    assert "unknown ca" in info.value.reason


def test_verify_failure_over_sockets(test_cert, other_cert):
    a, b = socket.socketpair()
    try:
        a.settimeout(TIMEOUT)
        b.settimeout(TIMEOUT)
        client = tlsrekey.Context.client(other_cert[0]).wrap(a, server_hostname="localhost")
        server = tlsrekey.Context.server(*test_cert).wrap(b)
        peer = Concurrent(catch(server.do_handshake))
        with pytest.raises(tlsrekey.CertificateError) as info:
            client.do_handshake()
        assert info.value.verify_code == 18
        assert isinstance(peer.result(), tlsrekey.ProtocolError)
        # The failure is remembered: every later call raises the same error class.
        for call in (client.do_handshake, client.read, lambda: client.write(b"x"),
                     client.shutdown):
            with pytest.raises(tlsrekey.CertificateError):
                call()
        assert client.state == "failed"
    finally:
        a.close()
        b.close()


def test_hostname_mismatch_is_certificate_error(test_cert):
    client = tlsrekey.Context.client(test_cert[0]).memory("wrong.example")
    server = tlsrekey.Context.server(*test_cert).memory()
    with pytest.raises(tlsrekey.CertificateError, match="hostname mismatch") as info:
        memory_handshake(client, server)
    assert info.value.verify_code == 62                # X509_V_ERR_HOSTNAME_MISMATCH


def test_a_getter_in_an_event_callback_keeps_the_failing_calls_error(test_cert):
    """peer_certificate read from an event callback while the handshake fails on a
    host name mismatch: the failure is still the certificate error, not a
    transport error that lost its reason."""
    client = tlsrekey.Context.client(test_cert[0]).memory("wrong.example")
    server = tlsrekey.Context.server(*test_cert).memory()
    seen = []

    def look(event):
        client.peer_certificate          # read while the failure is already queued
        seen.append(event["name"])
    client.set_event_callback(look)
    with pytest.raises(tlsrekey.CertificateError, match="hostname mismatch") as info:
        memory_handshake(client, server)
    assert info.value.verify_code == 62                # X509_V_ERR_HOSTNAME_MISMATCH
    assert "alert_sent" in seen                        # the getter ran mid-failure


def test_fatal_error_is_remembered_in_memory(test_cert, other_cert):
    client, server, first = untrusted_memory_handshake(test_cert, other_cert[0])
    for call in (client.do_handshake, client.read, lambda: client.write(b"x"),
                 client.shutdown, lambda: client.read_into(bytearray(10))):
        with pytest.raises(tlsrekey.CertificateError) as info:
            call()
        assert info.value.reason == first.reason
        assert info.value.verify_code == first.verify_code
    assert client.state == "failed"


def test_fatal_protocol_error_is_remembered(make_link):
    link = make_link(max_version="TLSv1.2")
    link.client.renegotiate()                 # refused by the server: fatal
    client_error, _ = link.both(catch(link.client.write, b"x"), catch(link.server.read))
    assert isinstance(client_error, tlsrekey.ProtocolError)
    for call in (link.client.do_handshake, link.client.read,
                 lambda: link.client.write(b"")):
        with pytest.raises(tlsrekey.ProtocolError, match="no renegotiation"):
            call()


def test_errors_do_not_leak_into_the_next_call(test_cert, other_cert):
    # A failure on one connection...
    untrusted_memory_handshake(test_cert, other_cert[0])
    # ...then a successful unrelated call on another one...
    client, server = tlsrekey.pair()
    client.write(b"fine")
    assert server.read() == b"fine"
    # ...and a later failure reports its own reason, not the earlier one.
    client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    with pytest.raises(tlsrekey.StateError) as info:
        client.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    assert info.value.reason == "key update already scheduled"
    assert not any("certificate" in line for line in info.value.errors)
    c12, s12 = tlsrekey.pair(max_version="TLSv1.2")
    c12.renegotiate()
    with pytest.raises(tlsrekey.ProtocolError) as info:
        c12.write(b"x")
    assert info.value.reason == "no renegotiation"
    assert all("certificate" not in line for line in info.value.errors)


def test_state_errors_carry_the_core_reason(make_link):
    link = make_link()
    with pytest.raises(tlsrekey.StateError) as info:
        link.client.renegotiate()
    e = info.value
    assert e.status == "state" and e.reason == "wrong ssl version"
    assert isinstance(e.errors, list)
    assert str(e).startswith("renegotiate")


# -- EOF, close_notify, timeouts ------------------------------------------------

@pytest.mark.parametrize("ignore", [False, True])
def test_eof_without_close_notify(socket_pair_factory, ignore):
    link = socket_pair_factory(ignore_unexpected_eof=ignore)
    link.server.write(b"last words")
    link.socks[1].close()                  # the server's socket goes, no close_notify
    assert link.client.read() == b"last words"
    if ignore:
        assert link.client.read() == b""
    else:
        with pytest.raises(tlsrekey.SyscallError, match="unexpected EOF") as info:
            link.client.read()
        assert info.value.reason == "unexpected eof while reading"
        assert info.value.status == "syscall"


@pytest.mark.parametrize("ignore", [False, True])
def test_eof_without_close_notify_memory(test_cert, ignore):
    client = tlsrekey.Context.client(test_cert[0], ignore_unexpected_eof=ignore).memory(
        "localhost")
    server = tlsrekey.Context.server(*test_cert).memory()
    memory_handshake(client, server)
    client.feed_eof()
    if ignore:
        assert client.read() == b""
    else:
        with pytest.raises(tlsrekey.SyscallError, match="unexpected EOF"):
            client.read()


@pytest.mark.parametrize("ignore", [False, True])
def test_eof_without_close_notify_pair(ignore):
    client, server = tlsrekey.pair(ignore_unexpected_eof=ignore)
    server.write(b"last words")
    server.close()                         # no close_notify
    assert client.read() == b"last words"
    if ignore:
        assert client.read() == b""
    else:
        with pytest.raises(tlsrekey.SyscallError, match="unexpected EOF"):
            client.read()


def test_pair_end_reads_what_was_sent_before_the_peer_closed():
    client, server = tlsrekey.pair()
    server.write(b"last words")
    server.shutdown()
    server.close()
    assert client.read() == b"last words"
    assert client.read() == b""


def test_pair_end_after_peer_closed_fails_cleanly():
    client, server = tlsrekey.pair()
    server.close()
    with pytest.raises(tlsrekey.SyscallError):
        client.read()
    with pytest.raises(tlsrekey.SyscallError):
        client.write(b"x")


def test_clean_close_reads_as_empty_bytes(make_link):
    link = make_link()
    link.server.write(b"bye")
    assert link.server.shutdown() is False      # ours sent, theirs not yet received
    assert link.client.read() == b"bye"
    assert link.client.read() == b""            # close_notify: no exception
    assert link.client.read_into(bytearray(8)) == 0
    assert link.client.state == "closed"


def test_timeout_is_tlsrekey_and_builtin_timeout_error(socket_pair_factory):
    link = socket_pair_factory()
    link.client.settimeout(0.2)
    with pytest.raises(builtins.TimeoutError) as info:
        link.client.read()
    assert isinstance(info.value, tlsrekey.TimeoutError)
    assert info.value.status == "timeout"
    # A timeout is not fatal.
    link.server.write(b"late")
    assert link.client.read() == b"late"


def test_want_read_on_non_blocking_socket(socket_pair_factory):
    link = socket_pair_factory()
    link.client.settimeout(0)
    with pytest.raises(tlsrekey.WantReadError) as info:
        link.client.read()
    assert info.value.status == "want_read"
    link.server.write(b"now")
    link.client.settimeout(TIMEOUT)
    assert link.client.read() == b"now"


def test_would_block_errors_carry_the_documented_attributes(socket_pair_factory):
    # WantReadError is raised on a lean path (P8): the same attributes as any error.
    link = socket_pair_factory()
    link.client.settimeout(0)
    for _ in range(2):      # the second from the same call site, nothing left over
        with pytest.raises(tlsrekey.WantReadError) as info:
            link.client.read_into(bytearray(8))
        e = info.value
        assert str(e) == "read: the operation needs data from the peer first"
        assert e.args == (str(e),)
        assert e.status == "want_read" and e.reason is None and e.library is None
        assert e.ssl_error == 0 and e.errno is None
        assert e.errors == [] and isinstance(e.errors, list)
        assert isinstance(e, tlsrekey.Error) and isinstance(e, OSError)
    pair_client, _ = tlsrekey.pair()
    with pytest.raises(tlsrekey.WantReadError) as info:
        pair_client.read()
    assert str(info.value) == "read: the operation needs data from the peer first"


def test_transport_failure_is_syscall_error_with_errno(socket_pair_factory):
    link = socket_pair_factory()
    link.socks[1].close()
    link.client.settimeout(1.0)
    with pytest.raises(tlsrekey.SyscallError) as info:
        for _ in range(100):
            link.client.write(b"x" * 65536)
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
    assert info.value.reason == os.strerror(info.value.errno)


def test_a_write_to_a_closed_peer_never_raises_sigpipe(tmp_path):
    """A program that does not ignore SIGPIPE (Python does; lua5.4, C programs and
    embedders may not) gets EPIPE as a SyscallError, not a dead process."""
    script = tmp_path / "child.py"
    script.write_text(
        "import signal, socket, threading, tlsrekey\n"
        "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
        "cert, key = tlsrekey.make_test_cert()\n"
        "a, b = socket.socketpair()\n"
        "c = tlsrekey.Context.client(cert).wrap(a, server_hostname='localhost')\n"
        "s = tlsrekey.Context.server(cert, key).wrap(b)\n"
        "t = threading.Thread(target=s.do_handshake); t.start()\n"
        "c.do_handshake(); t.join()\n"
        "s.close(); b.close()\n"
        "try:\n"
        "    for _ in range(100):\n"
        "        c.write(b'x' * 65536)\n"
        "except tlsrekey.SyscallError as e:\n"
        "    print('syscall', e.errno)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(tlsrekey.__file__)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.split()[0] == "syscall"
    assert int(proc.stdout.split()[1]) in (errno.EPIPE, errno.ECONNRESET)
