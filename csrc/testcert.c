/*
 * testcert.c - throwaway self-signed certificates, made in memory, so that a server
 * needs no files to start (REPL, tests, benchmarks).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static int add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static char *bio_text(BIO *b, size_t *len)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (out == NULL)
        return NULL;
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}

static int valid_name(const char *cn)
{
    size_t n = strlen(cn);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)cn[i];
        /* commas would split the subjectAltName list */
        if (ch < 0x21 || ch > 0x7e || ch == ',')
            return 0;
    }
    return 1;
}

trk_status trk_make_test_cert(const char *common_name, char **cert_pem, size_t *cert_len,
                              char **key_pem, size_t *key_len, trk_error *err)
{
    trk__err_clear();
    *cert_pem = *key_pem = NULL;
    *cert_len = *key_len = 0;
    if (common_name == NULL || !valid_name(common_name))
        return trk__fail(err, TRK_ARG, "invalid common name",
                         "a test certificate's name is 1 to 64 printable ASCII "
                         "characters, without spaces or commas (an internationalized "
                         "name in its IDNA form, xn--...)");
    unsigned char probe[16];
    int is_ip = inet_pton(AF_INET, common_name, probe) == 1 ||
                inet_pton(AF_INET6, common_name, probe) == 1;
    char san[256];
    if (is_ip)
        snprintf(san, sizeof san, "IP:%s", common_name);
    else if (strcmp(common_name, "localhost") == 0)
        snprintf(san, sizeof san, "DNS:localhost,IP:127.0.0.1,IP:::1");
    else
        snprintf(san, sizeof san, "DNS:%s", common_name);

    trk_status st = TRK_OK;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    unsigned char serial[8];
    BIGNUM *bn = NULL;
    if (key == NULL || cert == NULL || cb == NULL || kb == NULL ||
        RAND_bytes(serial, sizeof serial) != 1) {
        st = trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot create a test certificate");
        goto done;
    }
    serial[0] &= 0x7f; /* a positive serial number */
    bn = BN_bin2bn(serial, sizeof serial, NULL);
    X509_NAME *name = X509_get_subject_name(cert);
    if (bn == NULL || !X509_set_version(cert, X509_VERSION_3) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) ||
        !X509_gmtime_adj(X509_getm_notBefore(cert), -24L * 3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert), 30L * 24 * 3600) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)common_name, -1, -1, 0) ||
        !X509_set_issuer_name(cert, name) || !X509_set_pubkey(cert, key) ||
        !add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(cert, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(cert, NID_ext_key_usage, "serverAuth,clientAuth") ||
        !add_ext(cert, NID_subject_key_identifier, "hash") ||
        !add_ext(cert, NID_subject_alt_name, san) ||
        !X509_sign(cert, key, EVP_sha256()) || !PEM_write_bio_X509(cb, cert) ||
        !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL)) {
        st = trk__fail_openssl(err, TRK_ARG, NULL, "cannot create a test certificate");
        goto done;
    }
    *cert_pem = bio_text(cb, cert_len);
    *key_pem = bio_text(kb, key_len);
    if (*cert_pem == NULL || *key_pem == NULL) {
        free(*cert_pem);
        free(*key_pem);
        *cert_pem = *key_pem = NULL;
        st = trk__fail(err, TRK_NOMEM, "out of memory", "cannot copy the certificate");
    }
done:
    BN_free(bn);
    BIO_free(cb);
    BIO_free(kb);
    X509_free(cert);
    EVP_PKEY_free(key);
    trk__err_clear();
    return st;
}
