/* util.h - contexts and pairs for the core's C tests, made from a throwaway cert. */
#ifndef TRK_TEST_UTIL_H
#define TRK_TEST_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "tlsrekey.h"

typedef struct pair_opts {
    const char *max_version;        /* NULL: TLS 1.3 */
    int allow_client_renegotiation;
    int no_renegotiation;
} pair_opts;

static char *u_cert, *u_key;
static size_t u_cert_len, u_key_len;

static inline void u_certs(void)
{
    if (u_cert == NULL) {
        trk_error e;
        if (trk_make_test_cert("localhost", &u_cert, &u_cert_len, &u_key, &u_key_len,
                               &e) != TRK_OK) {
            fprintf(stderr, "make_test_cert: %s\n", e.message);
            exit(2);
        }
    }
}

static inline void u_free_certs(void)
{
    trk_free(u_cert);
    trk_free(u_key);
    u_cert = u_key = NULL;
}

/* Client and server contexts for the throwaway certificate. */
static inline int u_contexts(const pair_opts *o, trk_ctx **cctx, trk_ctx **sctx)
{
    trk_error e;
    u_certs();
    if (trk_ctx_new(TRK_CLIENT, cctx, &e) || trk_ctx_new(TRK_SERVER, sctx, &e))
        return 0;
    if (trk_ctx_use_certificate(*sctx, u_cert, u_cert_len, 1, &e) ||
        trk_ctx_use_private_key(*sctx, u_key, u_key_len, 1, &e) ||
        trk_ctx_load_verify(*cctx, u_cert, u_cert_len, 1, NULL, &e))
        return 0;
    if (o && o->max_version &&
        (trk_ctx_set_max_version(*cctx, o->max_version, &e) ||
         trk_ctx_set_max_version(*sctx, o->max_version, &e)))
        return 0;
    if (o && trk_ctx_set_renegotiation(*sctx, o->allow_client_renegotiation,
                                       o->no_renegotiation, &e))
        return 0;
    if (o && o->no_renegotiation && trk_ctx_set_renegotiation(*cctx, 0, 1, &e))
        return 0;
    return 1;
}

/* A handshaken pair; the contexts are released (the connections hold them). */
static inline int u_pair(const pair_opts *o, trk_conn **c, trk_conn **s)
{
    trk_ctx *cctx = NULL, *sctx = NULL;
    trk_error e;
    int ok = u_contexts(o, &cctx, &sctx) &&
             trk_pair_new(cctx, sctx, "localhost", c, s, &e) == TRK_OK;
    if (!ok && cctx && sctx)
        fprintf(stderr, "  pair: %s\n", e.message);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
    return ok;
}

/* Writes `msg` on `from` and reads it back whole on `to`. */
static inline int u_send(trk_conn *from, trk_conn *to, const char *msg)
{
    trk_error e;
    size_t n, len = strlen(msg), got = 0;
    char buf[256];
    if (trk_conn_write(from, msg, len, &n, &e) != TRK_OK || n != len) {
        fprintf(stderr, "  write: %s\n", e.message);
        return 0;
    }
    while (got < len) {
        if (trk_conn_read(to, buf + got, sizeof buf - got, &n, &e) != TRK_OK) {
            fprintf(stderr, "  read: %s\n", e.message);
            return 0;
        }
        got += n;
    }
    return got == len && memcmp(buf, msg, len) == 0;
}

static inline trk_stats u_stats(const trk_conn *c)
{
    trk_stats s;
    trk_conn_stats(c, &s);
    return s;
}

#endif
