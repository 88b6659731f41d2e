/*
 * context.c - trk_ctx: an SSL_CTX with safe defaults and a reference count.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* Never prompt on a terminal for a key passphrase: a binding must not hang. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf, (void)size, (void)rwflag, (void)userdata;
    return 0;
}

static void keylog_line(const SSL *ssl, const char *line)
{
    trk_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (ctx == NULL)
        return;
    pthread_mutex_lock(&ctx->lock);
    if (ctx->keylog != NULL) {
        BIO_printf(ctx->keylog, "%s\n", line);
        (void)BIO_flush(ctx->keylog);
    }
    pthread_mutex_unlock(&ctx->lock);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    trk_ctx *ctx = arg;
    unsigned char *sel = NULL;
    int answer = SSL_TLSEXT_ERR_NOACK;
    (void)ssl;
    pthread_mutex_lock(&ctx->lock);
    if (ctx->alpn != NULL) {
        answer = SSL_TLSEXT_ERR_ALERT_FATAL;
        if (SSL_select_next_proto(&sel, outlen, ctx->alpn, (unsigned int)ctx->alpn_len,
                                  in, inlen) == OPENSSL_NPN_NEGOTIATED) {
            /* `sel` points into our list, which a setter may free once the lock is
             * let go: answer with the same name in the client's list, which lives
             * as long as OpenSSL needs the answer. */
            for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
                if (in[i] == *outlen && i + 1u + in[i] <= inlen &&
                    memcmp(in + i + 1, sel, *outlen) == 0) {
                    *out = in + i + 1;
                    answer = SSL_TLSEXT_ERR_OK;
                    break;
                }
            }
        }
    }
    pthread_mutex_unlock(&ctx->lock);
    return answer;
}

void trk__sid_ctx_for(int verify_mode, int accept_any, unsigned char *out, unsigned *len)
{
    int m = verify_mode & (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    *len = (unsigned)snprintf((char *)out, SSL_MAX_SID_CTX_LENGTH, "tlsrekey/verify=%d%s",
                              m, accept_any ? "/any" : "");
}

static void ctx_sid_for_verify(trk_ctx *ctx, int verify_mode)
{
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    unsigned len;
    trk__sid_ctx_for(verify_mode, 0, sid, &len);
    SSL_CTX_set_session_id_context(ctx->ssl_ctx, sid, len);
}

static trk_status ctx_new(trk_role role, int dtls, trk_ctx **out, trk_error *err)
{
    trk__err_clear();
    *out = NULL;
    if (role != TRK_CLIENT && role != TRK_SERVER)
        return trk__fail(err, TRK_ARG, "invalid role", "role must be client or server");
    trk_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return trk__fail(err, TRK_NOMEM, "out of memory", "cannot allocate a context");
    if (dtls)
        ctx->ssl_ctx = SSL_CTX_new(role == TRK_CLIENT ? DTLS_client_method()
                                                      : DTLS_server_method());
    else
        ctx->ssl_ctx = SSL_CTX_new(role == TRK_CLIENT ? TLS_client_method()
                                                      : TLS_server_method());
    if (ctx->ssl_ctx == NULL) {
        free(ctx);
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot create an SSL_CTX");
    }
    ctx->role = role;
    atomic_init(&ctx->refs, 1);
    pthread_mutex_init(&ctx->lock, NULL);
    trk_rekey_policy_default(&ctx->policy);
    SSL_CTX *s = ctx->ssl_ctx;
    SSL_CTX_set_app_data(s, ctx);
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_mode(s, SSL_MODE_AUTO_RETRY | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Insecure legacy renegotiation is never allowed, in either role. */
    SSL_CTX_clear_options(s, SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION |
                                 SSL_OP_LEGACY_SERVER_CONNECT);
    SSL_CTX_set_default_passwd_cb(s, no_passphrase);
    if (role == TRK_CLIENT) {
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
        ctx->check_hostname = 1;
    } else {
        SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
        ctx_sid_for_verify(ctx, SSL_VERIFY_NONE);
        SSL_CTX_set_alpn_select_cb(s, alpn_select, ctx);
    }
    if (dtls && !trk__dtls_ctx_init(ctx)) {
        trk_ctx_free(ctx);
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot set up a DTLS context");
    }
    trk__err_clear();
    *out = ctx;
    return TRK_OK;
}

trk_status trk_ctx_new(trk_role role, trk_ctx **out, trk_error *err)
{
    return ctx_new(role, 0, out, err);
}

trk_status trk_ctx_new_dtls(trk_role role, trk_ctx **out, trk_error *err)
{
    return ctx_new(role, 1, out, err);
}

void trk_ctx_up_ref(trk_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

void trk_ctx_free(trk_ctx *ctx)
{
    /* the last reference sees every write made through the others (acq_rel) */
    if (ctx == NULL || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) > 1)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    BIO_free(ctx->keylog);
    free(ctx->alpn);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
    trk__err_clear();
}

trk_role trk_ctx_role(const trk_ctx *ctx)
{
    return ctx->role;
}

/* In order, oldest first, per protocol: DTLS version numbers count downwards
 * (DTLS 1.2 is 0xFEFD, DTLS 1.0 0xFEFF), so order is compared by rank. */
static const struct {
    const char *name;
    int version;
    int dtls;
    int rank;
} versions[] = {
    {"TLSv1", TLS1_VERSION, 0, 1},
    {"TLSv1.1", TLS1_1_VERSION, 0, 2},
    {"TLSv1.2", TLS1_2_VERSION, 0, 3},
    {"TLSv1.3", TLS1_3_VERSION, 0, 4},
    {"DTLSv1", DTLS1_VERSION, 1, 1},
    {"DTLSv1.2", DTLS1_2_VERSION, 1, 3},
};

static int version_rank(int version)
{
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
        if (versions[i].version == version)
            return versions[i].rank;
    return 0;
}

static trk_status parse_version(const trk_ctx *ctx, const char *name, int *version,
                                trk_error *err)
{
    if (name == NULL) {
        *version = 0;
        return TRK_OK;
    }
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
        if (strcmp(versions[i].name, name) == 0 && versions[i].dtls == ctx->dtls) {
            *version = versions[i].version;
            return TRK_OK;
        }
    if (ctx->dtls)
        return trk__fail(err, TRK_ARG, "unknown version",
                         "unknown DTLS version '%.40s' (expected DTLSv1.2, or DTLSv1 "
                         "where OpenSSL allows it)",
                         name);
    return trk__fail(err, TRK_ARG, "unknown version",
                     "unknown TLS version '%.40s' (expected TLSv1.2 or TLSv1.3; "
                     "TLSv1 and TLSv1.1 where OpenSSL allows them)",
                     name);
}

static trk_status set_version(trk_ctx *ctx, const char *name, int is_max,
                              trk_error *err)
{
    int v = 0;
    trk_status st = parse_version(ctx, name, &v, err);
    if (st != TRK_OK)
        return st;
    int lo = version_rank(is_max ? (int)SSL_CTX_get_min_proto_version(ctx->ssl_ctx) : v);
    int hi = version_rank(is_max ? v : (int)SSL_CTX_get_max_proto_version(ctx->ssl_ctx));
    if (lo != 0 && hi != 0 && lo > hi)
        return trk__fail(err, TRK_ARG, "min version above max version",
                         "the minimum TLS version is above the maximum");
    int ok = is_max ? SSL_CTX_set_max_proto_version(ctx->ssl_ctx, v)
                    : SSL_CTX_set_min_proto_version(ctx->ssl_ctx, v);
    if (!ok)
        return trk__fail_openssl(err, TRK_ARG, NULL, "cannot set the %s version",
                                 is_max ? "maximum" : "minimum");
    return TRK_OK;
}

trk_status trk_ctx_set_min_version(trk_ctx *ctx, const char *name, trk_error *err)
{
    trk__err_clear();
    return set_version(ctx, name, 0, err);
}

trk_status trk_ctx_set_max_version(trk_ctx *ctx, const char *name, trk_error *err)
{
    trk__err_clear();
    return set_version(ctx, name, 1, err);
}

static BIO *pem_bio(const char *data, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    return BIO_new_mem_buf(data, (int)len);
}

trk_status trk_ctx_use_certificate(trk_ctx *ctx, const char *data, size_t len,
                                   int is_pem, trk_error *err)
{
    trk__err_clear();
    if (data == NULL)
        return trk__fail(err, TRK_ARG, "no certificate", "no certificate given");
    if (!is_pem) {
        if (SSL_CTX_use_certificate_chain_file(ctx->ssl_ctx, data) != 1)
            return trk__fail_openssl(err, TRK_ARG, NULL,
                                     "cannot load the certificate file '%.200s'", data);
        trk__err_clear();
        return TRK_OK;
    }
    BIO *bio = pem_bio(data, len);
    if (bio == NULL)
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot read the certificate");
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL);
    if (leaf == NULL || SSL_CTX_use_certificate(ctx->ssl_ctx, leaf) != 1) {
        X509_free(leaf);
        BIO_free(bio);
        return trk__fail_openssl(err, TRK_ARG, NULL,
                                 "cannot load the certificate from PEM");
    }
    X509_free(leaf);
    SSL_CTX_clear_chain_certs(ctx->ssl_ctx);
    X509 *extra;
    while ((extra = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx->ssl_ctx, extra) != 1) {
            X509_free(extra);
            BIO_free(bio);
            return trk__fail_openssl(err, TRK_ARG, NULL,
                                     "cannot add a chain certificate from PEM");
        }
    }
    BIO_free(bio);
    trk__err_clear(); /* the end of the PEM stream ("no start line") is expected */
    return TRK_OK;
}

/* Whether the PEM text holds a "-----BEGIN ...<label>" line ("PRIVATE KEY-----"
 * matches RSA, EC, encrypted and PKCS#8 keys alike). */
static int has_pem_label(const char *data, size_t len, const char *label)
{
    size_t llen = strlen(label);
    for (size_t i = 0; i + 10 + llen <= len; i++) {
        if (memcmp(data + i, "-----BEGIN", 10) != 0)
            continue;
        for (size_t j = i + 10; j + llen <= len && data[j] != '\n'; j++)
            if (memcmp(data + j, label, llen) == 0)
                return 1;
    }
    return 0;
}

trk_status trk_ctx_use_private_key(trk_ctx *ctx, const char *data, size_t len,
                                   int is_pem, trk_error *err)
{
    trk__err_clear();
    if (data == NULL)
        return trk__fail(err, TRK_ARG, "no key", "no private key given");
    if (!is_pem) {
        if (SSL_CTX_use_PrivateKey_file(ctx->ssl_ctx, data, SSL_FILETYPE_PEM) != 1)
            return trk__fail_openssl(err, TRK_ARG, NULL,
                                     "cannot load the private key file '%.200s'", data);
    } else {
        BIO *bio = pem_bio(data, len);
        if (bio == NULL)
            return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot read the key");
        EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        BIO_free(bio);
        if (pkey == NULL && !has_pem_label(data, len, "PRIVATE KEY-----")) {
            /* A certificate alone, most likely (the shims look for the key in the
             * certificate's PEM when none is given): OpenSSL's "unsupported" or
             * "no start line" would not say so. */
            trk__err_clear();
            return trk__fail(err, TRK_ARG, "no private key",
                             "the PEM given holds no private key");
        }
        if (pkey == NULL || SSL_CTX_use_PrivateKey(ctx->ssl_ctx, pkey) != 1) {
            EVP_PKEY_free(pkey);
            return trk__fail_openssl(err, TRK_ARG, NULL,
                                     "cannot load the private key from PEM");
        }
        EVP_PKEY_free(pkey);
    }
    if (SSL_CTX_get0_certificate(ctx->ssl_ctx) != NULL &&
        SSL_CTX_check_private_key(ctx->ssl_ctx) != 1)
        return trk__fail_openssl(err, TRK_ARG, NULL,
                                 "the private key does not match the certificate");
    trk__err_clear();
    return TRK_OK;
}

trk_status trk_ctx_check(const trk_ctx *ctx, const char **option, trk_error *err)
{
    const char *at_fault = NULL;
    trk_status st = TRK_OK;
    trk__err_clear();
    if (ctx == NULL)
        return trk__fail(err, TRK_ARG, "no context", "a context is required");
    int has_cert = SSL_CTX_get0_certificate(ctx->ssl_ctx) != NULL;
    int has_key = SSL_CTX_get0_privatekey(ctx->ssl_ctx) != NULL;
    if (!has_cert && (ctx->role == TRK_SERVER || has_key)) {
        at_fault = "cert";
        st = has_key ? trk__fail(err, TRK_ARG, "no certificate",
                                 "a private key was given without its certificate")
                     : trk__fail(err, TRK_ARG, "no certificate",
                                 "a server needs a certificate and its private key");
    } else if (has_cert && !has_key) {
        at_fault = "key";
        st = trk__fail(err, TRK_ARG, "no private key",
                       "the certificate was given without its private key");
    }
    if (option != NULL)
        *option = at_fault;
    return st;
}

trk_status trk_ctx_load_verify(trk_ctx *ctx, const char *data, size_t len, int is_pem,
                               const char *capath, trk_error *err)
{
    trk__err_clear();
    if (data != NULL && is_pem) {
        BIO *bio = pem_bio(data, len);
        if (bio == NULL)
            return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot read the CA PEM");
        STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(bio, NULL, no_passphrase,
                                                            NULL);
        BIO_free(bio);
        if (infos == NULL)
            return trk__fail_openssl(err, TRK_ARG, NULL, "cannot parse the CA PEM");
        X509_STORE *store = SSL_CTX_get_cert_store(ctx->ssl_ctx);
        int added = 0;
        for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
            X509_INFO *info = sk_X509_INFO_value(infos, i);
            if (info->x509 != NULL && X509_STORE_add_cert(store, info->x509) == 1)
                added++;
        }
        sk_X509_INFO_pop_free(infos, X509_INFO_free);
        if (added == 0)
            return trk__fail(err, TRK_ARG, "no certificate in CA PEM",
                             "the CA PEM holds no certificate");
        data = NULL;
    }
    if (data != NULL || capath != NULL) {
        if (SSL_CTX_load_verify_locations(ctx->ssl_ctx, data, capath) != 1)
            return trk__fail_openssl(err, TRK_ARG, NULL,
                                     "cannot load CA certificates from '%.200s'",
                                     data != NULL ? data : capath);
    }
    trk__err_clear();
    return TRK_OK;
}

trk_status trk_ctx_load_default_verify(trk_ctx *ctx, trk_error *err)
{
    trk__err_clear();
    if (SSL_CTX_set_default_verify_paths(ctx->ssl_ctx) != 1)
        return trk__fail_openssl(err, TRK_ARG, NULL,
                                 "cannot load the system trust store");
    trk__err_clear();
    return TRK_OK;
}

trk_status trk_ctx_set_verify(trk_ctx *ctx, trk_verify_mode mode, trk_error *err)
{
    trk__err_clear();
    int flags;
    switch (mode) {
    case TRK_VERIFY_NONE:
        flags = SSL_VERIFY_NONE;
        break;
    case TRK_VERIFY_OPTIONAL:
        flags = SSL_VERIFY_PEER;
        break;
    case TRK_VERIFY_REQUIRED:
        flags = SSL_VERIFY_PEER;
        if (ctx->role == TRK_SERVER)
            flags |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        break;
    default:
        return trk__fail(err, TRK_ARG, "invalid verify mode", "unknown verify mode %d",
                         (int)mode);
    }
    SSL_CTX_set_verify(ctx->ssl_ctx, flags, NULL);
    if (ctx->role == TRK_SERVER)
        ctx_sid_for_verify(ctx, flags);
    return TRK_OK;
}

trk_status trk_ctx_set_check_hostname(trk_ctx *ctx, int on, trk_error *err)
{
    trk__err_clear();
    if (on && ctx->role != TRK_CLIENT)
        return trk__fail(err, TRK_ARG, "client only",
                         "check_hostname applies to client contexts only");
    ctx->check_hostname = on != 0;
    return TRK_OK;
}

int trk_ctx_check_hostname(const trk_ctx *ctx)
{
    return ctx->check_hostname;
}

trk_status trk_ctx_set_ciphers(trk_ctx *ctx, const char *list, trk_error *err)
{
    trk__err_clear();
    if (list == NULL || SSL_CTX_set_cipher_list(ctx->ssl_ctx, list) != 1)
        return trk__fail_openssl(err, TRK_ARG, NULL, "no usable cipher in '%.100s'",
                                 list ? list : "");
    return TRK_OK;
}

trk_status trk_ctx_set_ciphersuites(trk_ctx *ctx, const char *list, trk_error *err)
{
    trk__err_clear();
    if (list == NULL || SSL_CTX_set_ciphersuites(ctx->ssl_ctx, list) != 1)
        return trk__fail_openssl(err, TRK_ARG, NULL,
                                 "no usable TLS 1.3 ciphersuite in '%.100s'",
                                 list ? list : "");
    return TRK_OK;
}

trk_status trk_ctx_set_groups(trk_ctx *ctx, const char *list, trk_error *err)
{
    trk__err_clear();
    if (list == NULL || SSL_CTX_set1_groups_list(ctx->ssl_ctx, list) != 1)
        return trk__fail_openssl(err, TRK_ARG, NULL, "no usable group in '%.100s'",
                                 list ? list : "");
    return TRK_OK;
}

trk_status trk_ctx_set_alpn(trk_ctx *ctx, const char *const *protos, size_t n,
                            trk_error *err)
{
    trk__err_clear();
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = protos[i] ? strlen(protos[i]) : 0;
        if (l == 0 || l > 255)
            return trk__fail(err, TRK_ARG, "invalid alpn protocol",
                             "ALPN protocol names must be 1 to 255 bytes long");
        total += 1 + l;
    }
    unsigned char *wire = NULL;
    if (n > 0) {
        wire = malloc(total);
        if (wire == NULL)
            return trk__fail(err, TRK_NOMEM, "out of memory", "cannot store ALPN");
        unsigned char *p = wire;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(protos[i]);
            *p++ = (unsigned char)l;
            memcpy(p, protos[i], l);
            p += l;
        }
    }
    if (ctx->role == TRK_CLIENT &&
        SSL_CTX_set_alpn_protos(ctx->ssl_ctx, wire, (unsigned int)total) != 0) {
        free(wire);
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot set ALPN");
    }
    pthread_mutex_lock(&ctx->lock);
    unsigned char *old = ctx->alpn;
    ctx->alpn = wire;
    ctx->alpn_len = total;
    pthread_mutex_unlock(&ctx->lock);
    free(old);
    return TRK_OK;
}

trk_status trk_ctx_set_session_cache(trk_ctx *ctx, int on, trk_error *err)
{
    (void)err;
    trk__err_clear();
    SSL_CTX_set_session_cache_mode(ctx->ssl_ctx,
                                   on ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
    return TRK_OK;
}

trk_status trk_ctx_set_num_tickets(trk_ctx *ctx, int n, trk_error *err)
{
    trk__err_clear();
    if (n < 0 || n > 64)
        return trk__fail(err, TRK_ARG, "invalid ticket count",
                         "num_tickets must be between 0 and 64, not %d", n);
    SSL_CTX_set_num_tickets(ctx->ssl_ctx, (size_t)n);
    return TRK_OK;
}

trk_status trk_ctx_set_session_tickets(trk_ctx *ctx, int on, trk_error *err)
{
    (void)err;
    trk__err_clear();
    if (on)
        SSL_CTX_clear_options(ctx->ssl_ctx, SSL_OP_NO_TICKET);
    else
        SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_TICKET);
    return TRK_OK;
}

trk_status trk_ctx_set_keylog_file(trk_ctx *ctx, const char *path, trk_error *err)
{
    trk__err_clear();
    BIO *bio = NULL;
    if (path != NULL) {
        /* The file holds traffic secrets: made readable by its owner only (an
         * existing file keeps its mode), appended to, never inherited by a child. */
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            return trk__fail(err, TRK_ARG, strerror(errno),
                             "cannot open the key log file '%.200s': %s", path,
                             strerror(errno));
        bio = BIO_new_fd(fd, BIO_CLOSE);
        if (bio == NULL) {
            close(fd);
            return trk__fail_openssl(err, TRK_NOMEM, NULL,
                                     "cannot open the key log file '%.200s'", path);
        }
    }
    pthread_mutex_lock(&ctx->lock);
    BIO *old = ctx->keylog;
    ctx->keylog = bio;
    pthread_mutex_unlock(&ctx->lock);
    BIO_free(old);
    SSL_CTX_set_keylog_callback(ctx->ssl_ctx, bio ? keylog_line : NULL);
    return TRK_OK;
}

trk_status trk_ctx_set_keylog_from_env(trk_ctx *ctx, trk_error *err)
{
    const char *path = getenv("SSLKEYLOGFILE");
    return trk_ctx_set_keylog_file(ctx, path != NULL && path[0] != '\0' ? path : NULL,
                                   err);
}

static void set_option(SSL_CTX *s, uint64_t opt, int on)
{
    if (on)
        SSL_CTX_set_options(s, opt);
    else
        SSL_CTX_clear_options(s, opt);
}

trk_status trk_ctx_set_renegotiation(trk_ctx *ctx, int allow_client, int none,
                                     trk_error *err)
{
    trk__err_clear();
    if (allow_client && none)
        return trk__fail(err, TRK_ARG, "conflicting renegotiation options",
                         "allow_client_renegotiation and no_renegotiation exclude "
                         "each other");
    set_option(ctx->ssl_ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION, allow_client);
    set_option(ctx->ssl_ctx, SSL_OP_NO_RENEGOTIATION, none);
    return TRK_OK;
}

trk_status trk_ctx_set_ignore_unexpected_eof(trk_ctx *ctx, int on, trk_error *err)
{
    (void)err;
    trk__err_clear();
    set_option(ctx->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF, on);
    return TRK_OK;
}

trk_status trk_ctx_set_release_buffers(trk_ctx *ctx, int on, trk_error *err)
{
    (void)err;
    trk__err_clear();
    if (on)
        SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    else
        SSL_CTX_clear_mode(ctx->ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    return TRK_OK;
}
