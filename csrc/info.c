/*
 * info.c - what a connection can tell about itself: version, cipher, ALPN, session
 * reuse, secure renegotiation, state, the peer's certificate, exported keys.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

const char *trk_role_name(trk_role role)
{
    return role == TRK_SERVER ? "server" : "client";
}

const char *trk_conn_version(const trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL || !conn->handshake_done)
        return NULL;
    return SSL_get_version(conn->ssl);
}

const char *trk_conn_cipher(const trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL || !conn->handshake_done)
        return NULL;
    const SSL_CIPHER *c = SSL_get_current_cipher(conn->ssl);
    return c != NULL ? SSL_CIPHER_get_name(c) : NULL;
}

const char *trk_conn_group(const trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL || !conn->handshake_done)
        return NULL;
    int nid = SSL_get_negotiated_group(conn->ssl);
    return nid != NID_undef && nid != 0 ? SSL_group_to_name(conn->ssl, nid) : NULL;
}

void trk_conn_alpn(const trk_conn *conn, const unsigned char **proto, size_t *len)
{
    unsigned int l = 0;
    *proto = NULL;
    if (conn != NULL && conn->ssl != NULL)
        SSL_get0_alpn_selected(conn->ssl, proto, &l);
    *len = l;
}

int trk_conn_session_reused(const trk_conn *conn)
{
    return conn != NULL && conn->ssl != NULL && SSL_session_reused(conn->ssl) == 1;
}

int trk_conn_secure_renegotiation(const trk_conn *conn)
{
    return conn != NULL && conn->ssl != NULL &&
           SSL_get_secure_renegotiation_support(conn->ssl) == 1;
}

int trk_conn_handshake_done(const trk_conn *conn)
{
    return conn != NULL && conn->handshake_done;
}

const char *trk_conn_state(const trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL)
        return "released";
    if (conn->fatal != NULL)
        return "failed";
    if (conn->sent_shutdown || conn->closed_by_peer)
        return "closed";
    if (!conn->handshake_done)
        return conn->hs.in_handshake ? "handshaking" : "new";
    if (conn->hs.in_handshake || SSL_renegotiate_pending(conn->ssl))
        return "renegotiating";
    return "established";
}

static void name_line(X509_NAME *name, char *out, size_t cap)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return;
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
    int n = BIO_read(b, out, (int)cap - 1);
    out[n > 0 ? n : 0] = '\0';
    BIO_free(b);
}

static void time_line(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;
    out[0] = '\0';
    if (t != NULL && ASN1_TIME_to_tm(t, &tm) == 1)
        strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void san_line(X509 *cert, char *out, size_t cap)
{
    out[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL)
        return;
    size_t used = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        char item[300] = "";
        if (gn->type == GEN_DNS) {
            snprintf(item, sizeof item, "DNS:%.*s", ASN1_STRING_length(gn->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
        } else if (gn->type == GEN_IPADD) {
            const unsigned char *a = ASN1_STRING_get0_data(gn->d.iPAddress);
            int l = ASN1_STRING_length(gn->d.iPAddress);
            if (l == 4) {
                snprintf(item, sizeof item, "IP Address:%d.%d.%d.%d", a[0], a[1], a[2],
                         a[3]);
            } else if (l == 16) {
                int k = snprintf(item, sizeof item, "IP Address:");
                for (int j = 0; j < 16; j += 2)
                    k += snprintf(item + k, sizeof item - (size_t)k, "%s%x",
                                  j ? ":" : "", (a[j] << 8) | a[j + 1]);
            }
        } else {
            continue;
        }
        int w = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", item);
        if (w < 0 || (size_t)w >= cap - used)
            break;
        used += (size_t)w;
    }
    GENERAL_NAMES_free(names);
}

trk_status trk_conn_peer_certificate(const trk_conn *conn, trk_cert_info *info,
                                     unsigned char **der, size_t *der_len,
                                     trk_error *err)
{
    trk__err_clear_getter();
    *der = NULL;
    *der_len = 0;
    if (conn == NULL || conn->ssl == NULL)
        return trk__fail(err, TRK_STATE, "connection is closed",
                         "peer_certificate: the connection is closed");
    X509 *cert = SSL_get1_peer_certificate(conn->ssl);
    if (cert == NULL)
        return TRK_OK;
    int n = i2d_X509(cert, NULL);
    unsigned char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf == NULL) {
        X509_free(cert);
        return trk__fail(err, TRK_NOMEM, "out of memory",
                         "cannot copy the peer certificate");
    }
    unsigned char *p = buf;
    i2d_X509(cert, &p);
    if (info != NULL) {
        name_line(X509_get_subject_name(cert), info->subject, sizeof info->subject);
        name_line(X509_get_issuer_name(cert), info->issuer, sizeof info->issuer);
        info->serial[0] = '\0';
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        if (hex != NULL)
            snprintf(info->serial, sizeof info->serial, "%s", hex);
        OPENSSL_free(hex);
        BN_free(bn);
        time_line(X509_get0_notBefore(cert), info->not_before, sizeof info->not_before);
        time_line(X509_get0_notAfter(cert), info->not_after, sizeof info->not_after);
        san_line(cert, info->san, sizeof info->san);
    }
    X509_free(cert);
    trk__err_clear_getter();
    *der = buf;
    *der_len = (size_t)n;
    return TRK_OK;
}

trk_status trk_conn_export_keying_material(const trk_conn *conn, unsigned char *out,
                                           size_t out_len, const char *label,
                                           const unsigned char *context,
                                           size_t context_len, trk_error *err)
{
    trk__err_clear_getter();
    if (conn == NULL || conn->ssl == NULL)
        return trk__fail(err, TRK_STATE, "connection is closed",
                         "export_keying_material: the connection is closed");
    if (!conn->handshake_done)
        return trk__fail(err, TRK_STATE, "handshake not complete",
                         "export_keying_material: the handshake has not completed");
    if (label == NULL || out_len == 0)
        return trk__fail(err, TRK_ARG, "invalid argument",
                         "export_keying_material needs a label and a positive length");
    /* TLS 1.3 exports through HKDF-Expand, which stops at 255 hash lengths
     * (RFC 5869 2.3); OpenSSL's answer past that reads as an internal error. */
    const SSL_CIPHER *cipher = SSL_get_current_cipher(conn->ssl);
    const EVP_MD *md = cipher ? SSL_CIPHER_get_handshake_digest(cipher) : NULL;
    if (SSL_version(conn->ssl) == TLS1_3_VERSION && md != NULL &&
        out_len > 255 * (size_t)EVP_MD_get_size(md))
        return trk__fail(err, TRK_ARG, "invalid length",
                         "export_keying_material: at most %d bytes with %s",
                         255 * EVP_MD_get_size(md), SSL_CIPHER_get_name(cipher));
    if (SSL_export_keying_material((SSL *)conn->ssl, out, out_len, label, strlen(label),
                                   context, context_len, context != NULL) != 1)
        return trk__fail_openssl(err, TRK_STATE, NULL,
                                 "export_keying_material failed");
    return TRK_OK;
}

const char *trk_openssl_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

void trk_free(void *p)
{
    free(p);
}
