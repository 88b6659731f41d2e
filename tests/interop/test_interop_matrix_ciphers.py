"""Cipher, group and certificate variety, and client certificates across a
renegotiation, against real peers. Our side insists on one cipher and one key
exchange group (so the handshake succeeds only if the peer does them too), then
rekeys: a requested key update on TLS 1.3, a renegotiation on TLS 1.2."""
import pytest

import tlsrekey

from conftest import matrix
from test_interop_matrix_tls12 import roundtrip_until_renegotiated

SUITES = [
    # (label, version, cipher, server certificate, group)
    ("AES-128-GCM/ECDSA/X25519", "1.3", "TLS_AES_128_GCM_SHA256", "ecdsa", "X25519"),
    ("AES-256-GCM/RSA/P-256", "1.3", "TLS_AES_256_GCM_SHA384", "rsa", "P-256"),
    ("CHACHA20/ECDSA/P-384", "1.3", "TLS_CHACHA20_POLY1305_SHA256", "ecdsa", "P-384"),
    ("ECDHE-RSA-AES128-GCM/X25519", "1.2", "ECDHE-RSA-AES128-GCM-SHA256", "rsa", "X25519"),
    ("ECDHE-ECDSA-AES256-GCM/P-256", "1.2", "ECDHE-ECDSA-AES256-GCM-SHA384", "ecdsa", "P-256"),
    # TLS 1.2 has no separate list for certificate curves: the groups a client
    # offers bound the server's ECDSA key too (RFC 8422 5.1), so P-384 alone
    # would rule out our P-256 ECDSA certificate. ChaCha20 goes with RSA here.
    ("ECDHE-RSA-CHACHA20/P-384", "1.2", "ECDHE-RSA-CHACHA20-POLY1305", "rsa", "P-384"),
]


def our_options(version, cipher, group):
    opts = {"groups": group}
    opts["ciphersuites" if version == "1.3" else "ciphers"] = cipher
    return opts


def rekey_and_check(s, version, cipher, role):
    assert s.ours.cipher == cipher
    assert s.ours.version == "TLSv" + version
    s.roundtrip()
    if version == "1.3":
        s.ours.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
        s.roundtrip()
        s.roundtrip()
        assert s.ours.stats["key_updates_sent"] == 1
        assert s.ours.stats["key_updates_received"] == 1
    elif role == "client":
        s.ours.renegotiate()
        roundtrip_until_renegotiated(s)
    else:
        s.ours.renegotiate()
        s.ours.do_handshake()
        s.settle(lambda: s.ours.stats["renegotiations"] == 1, "the new handshake")
        roundtrip_until_renegotiated(s)
    assert s.ours.cipher == cipher        # a renegotiation keeps what we allow


def make_cipher_case(label, version, cipher, cert, group, role):
    @matrix("%s %s, we %s" % (version, label, role))
    def test(interop, peer):
        spec = interop.spec(version=version, cert=cert,
                            allow_client_reneg=(version == "1.2" and role == "client"))
        ours = our_options(version, cipher, group)
        s = (interop.as_client(peer, spec, **ours) if role == "client"
             else interop.as_server(peer, spec, **ours))
        rekey_and_check(s, version, cipher, role)
    test.__name__ = "test_cipher_%s_%s_we_%s" % (
        version.replace(".", ""), label.replace("/", "_").replace("-", "_"), role)
    return test


for _case in SUITES:
    for _role in ("client", "server"):
        _t = make_cipher_case(*_case, _role)
        globals()[_t.__name__] = _t
del _case, _role, _t


# -- client certificates ---------------------------------------------------------

CLIENT_SUBJECT = "interop client"


# GnuTLS 3.7.9 clients fail a rehandshake whose ServerHello omits the session_ticket
# extension after the first handshake had one ('An unexpected TLS packet was
# received'); OpenSSL omits it when resumption on renegotiation is off, as
# set_verify_client makes it. A server that will do this turns TLS 1.2 tickets off
# (session_tickets=False; `openssl s_server -no_ticket` works the same way).


@matrix("1.2 client cert asked by renegotiation, we server", "openssl",
        "gnutls", "python-ssl", "pyOpenSSL",
        "LuaSec")
def test_client_certificate_requested_by_renegotiation(interop, peer):
    """A server that let a client in without a certificate asks for one in a
    renegotiation (set_verify_client), verifies it, and sees it afterwards."""
    certs = interop.certs
    spec = interop.spec(version="1.2", client_cert=True)
    tickets = {"session_tickets": False} if peer == "gnutls" else {}
    s = interop.as_server(peer, spec, cafile=certs.ca, **tickets)
    assert s.ours.peer_certificate is None
    s.roundtrip()
    s.ours.set_verify_client(required=True, verify=True)
    s.ours.renegotiate()
    s.ours.do_handshake()
    s.settle(lambda: s.ours.stats["renegotiations"] == 1, "the new handshake")
    roundtrip_until_renegotiated(s)
    assert s.ours.session_reused is False     # a full handshake, or no certificate
    cert = s.ours.peer_certificate
    assert cert is not None, "the client sent no certificate in the renegotiation"
    assert CLIENT_SUBJECT in cert["subject"]
    assert "tlsrekey interop CA" in cert["issuer"]


@matrix("1.2 peer asks our client cert by renegotiation, we client", "openssl")
def test_peer_requests_client_certificate_by_renegotiation(interop, peer):
    certs = interop.certs
    s = interop.as_client(peer, interop.spec(version="1.2", no_resumption_on_reneg=True),
                          cert=certs.client[0], key=certs.client[1])
    s.roundtrip()
    s.peer_initiated(lambda: (s.peer.renegotiate(client_cert=True),
                              s.peer.renegotiation_done(2)))
    roundtrip_until_renegotiated(s)
    assert s.ours.session_reused is False
    out = s.peer.proc.output
    assert b"interop client" in out       # s_server prints the client's certificate
    assert b"verify error" not in out


@matrix("1.3 mutual TLS + KU, we client")
def test_mutual_tls13_key_update_as_client(interop, peer):
    certs = interop.certs
    s = interop.as_client(peer, interop.spec(require_client_cert=True),
                          cert=certs.client[0], key=certs.client[1])
    s.roundtrip()
    s.ours.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    s.roundtrip()
    s.roundtrip()
    assert s.ours.stats["key_updates_received"] == 1


@matrix("1.3 mutual TLS + KU, we server")
def test_mutual_tls13_key_update_as_server(interop, peer):
    certs = interop.certs
    s = interop.as_server(peer, interop.spec(client_cert=True),
                          verify_client=True, cafile=certs.ca)
    s.roundtrip()
    cert = s.ours.peer_certificate
    assert cert is not None and CLIENT_SUBJECT in cert["subject"]
    s.ours.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
    s.roundtrip()
    s.roundtrip()
    assert s.ours.stats["key_updates_received"] == 1


@matrix("1.3 client without cert refused, we server", "openssl", "python-ssl")
def test_missing_client_certificate_is_refused(interop, peer):
    """verify_client=True and a client with no certificate: our handshake fails
    with a clear error (in TLS 1.3 the client learns it only after its Finished)."""
    certs = interop.certs
    s = interop.as_server(peer, interop.spec(), handshake=False, verify_client=True,
                          cafile=certs.ca)
    with pytest.raises((tlsrekey.ProtocolError, tlsrekey.CertificateError)) as info:
        s.ours.do_handshake()
    assert "certificate" in info.value.reason
    assert s.ours.state == "failed"
