/*
 * fuzz_core.c - a libFuzzer harness for the tlsrekey core (csrc/).
 *
 * Each input is a small program. Its first byte picks a setup; the rest is a list
 * of operations, each an opcode byte followed by its operands:
 *
 *  setup bit 0..1  transport: 0/1 memory (a "victim" end and an honest peer end whose
 *                  bytes the program carries, damages, drops or replaces), 2 the
 *                  in-process pair, 3 memory with the victim as the client
 *  setup bit 2     TLS 1.2 only (renegotiation), else up to TLS 1.3 (key update)
 *  setup bit 3     the server allows client renegotiation
 *  setup bit 4     no_renegotiation on both contexts
 *  setup bit 5     an event callback that fails now and then (an operand decides)
 *
 * Operations drive the public API of either end (handshake, read, write, key
 * update, renegotiation, shutdown, close, introspection, set_verify_client) and,
 * on the memory transport, the bytes between them: deliver, truncate, flip a bit,
 * duplicate, inject raw fuzz bytes as the peer's records, feed EOF.
 *
 * Besides ASan/UBSan, the harness checks the contract of tlsrekey.h after every
 * call and aborts when it is broken: a status is a known one; a failure fills the
 * trk_error (status matches, a sentence); the OpenSSL error queue is empty when a
 * trk_ function returns. A crash or abort here is a bug in csrc/: keep the input
 * in tests/fuzz/regressions/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "tlsrekey.h"

/* ------------------------------------------------------------------------- */
/* Contract checks                                                             */
/* ------------------------------------------------------------------------- */

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_core: contract broken: %s (%s)\n", what, detail ? detail : "");
    abort();
}

static int g_trace = -1;   /* FUZZ_CORE_TRACE=1: print every call and its status */

/* Every trk_ call goes through this: st is its result, err its error record. */
static trk_status check(const char *call, trk_status st, const trk_error *err)
{
    unsigned long queued = ERR_peek_error();

    if (g_trace < 0)
        g_trace = getenv("FUZZ_CORE_TRACE") != NULL;
    if (g_trace)
        fprintf(stderr, "  %-24s %-10s %s\n", call, trk_status_name(st) ? trk_status_name(st) : "?",
                st != TRK_OK && err != NULL ? err->message : "");

    if ((int)st < 0 || st >= TRK_STATUS_COUNT)
        die("unknown status", call);
    if (trk_status_name(st) == NULL)
        die("status without a name", call);
    if (queued != 0) {
        char buf[256];
        ERR_error_string_n(queued, buf, sizeof buf);
        fprintf(stderr, "after %s: %s\n", call, buf);
        die("OpenSSL error queue not empty after a core call", call);
    }
    if (st != TRK_OK && err != NULL) {
        if (err->status != st)
            die("trk_error.status differs from the returned status", call);
        if (err->message[0] == '\0')
            die("failure without a message", call);
        if (memchr(err->message, '\0', sizeof err->message) == NULL ||
            memchr(err->reason, '\0', sizeof err->reason) == NULL)
            die("unterminated error text", call);
        if (err->nqueue < 0 || err->nqueue > TRK_ERROR_QUEUE_MAX)
            die("error queue count out of range", call);
    }
    return st;
}

#define CALL(name, expr) check(name, (expr), &err)

/* ------------------------------------------------------------------------- */
/* Contexts, made once                                                        */
/* ------------------------------------------------------------------------- */

static char *g_cert, *g_key;
static size_t g_cert_len, g_key_len;

static void make_cert(void)
{
    trk_error err;

    if (g_cert != NULL)
        return;
    if (trk_make_test_cert("localhost", &g_cert, &g_cert_len, &g_key, &g_key_len,
                           &err) != TRK_OK) {
        fprintf(stderr, "make_test_cert: %s\n", err.message);
        abort();
    }
}

/* Contexts for the setup's option bits, made fresh. */
static int new_contexts(unsigned setup, trk_ctx **cctx, trk_ctx **sctx)
{
    trk_error err;

    make_cert();
    *cctx = *sctx = NULL;
    if (trk_ctx_new(TRK_CLIENT, cctx, &err) != TRK_OK ||
        trk_ctx_new(TRK_SERVER, sctx, &err) != TRK_OK)
        return 0;
    if (CALL("use_certificate",
             trk_ctx_use_certificate(*sctx, g_cert, g_cert_len, 1, &err)) != TRK_OK ||
        CALL("use_private_key",
             trk_ctx_use_private_key(*sctx, g_key, g_key_len, 1, &err)) != TRK_OK ||
        CALL("load_verify",
             trk_ctx_load_verify(*cctx, g_cert, g_cert_len, 1, NULL, &err)) != TRK_OK)
        return 0;
    if (setup & 4) {
        CALL("set_max_version", trk_ctx_set_max_version(*cctx, "TLSv1.2", &err));
        CALL("set_max_version", trk_ctx_set_max_version(*sctx, "TLSv1.2", &err));
    }
    CALL("set_renegotiation",
         trk_ctx_set_renegotiation(*sctx, (setup & 8) != 0, (setup & 16) != 0, &err));
    CALL("set_renegotiation",
         trk_ctx_set_renegotiation(*cctx, 0, (setup & 16) != 0, &err));
    CALL("set_num_tickets", trk_ctx_set_num_tickets(*sctx, setup & 1, &err));
    return 1;
}

/* Contexts are made once per combination of option bits and reused: nothing in a
 * program changes a context (set_verify_client changes one connection). The
 * programs that free their contexts first get fresh ones. On return the caller owns
 * one reference to each. */
static int make_contexts(unsigned setup, trk_ctx **cctx, trk_ctx **sctx)
{
    static trk_ctx *cache[32][2];
    unsigned key = setup & 0x1d;   /* tickets, TLS 1.2, allow, no_renegotiation */

    if (setup & 128)
        return new_contexts(setup, cctx, sctx);
    if (cache[key][0] == NULL) {
        if (!new_contexts(setup, &cache[key][0], &cache[key][1])) {
            trk_ctx_free(cache[key][0]);
            trk_ctx_free(cache[key][1]);
            cache[key][0] = cache[key][1] = NULL;
            return 0;
        }
    }
    *cctx = cache[key][0];
    *sctx = cache[key][1];
    trk_ctx_up_ref(*cctx);
    trk_ctx_up_ref(*sctx);
    return 1;
}

/* ------------------------------------------------------------------------- */
/* The program                                                                 */
/* ------------------------------------------------------------------------- */

typedef struct prog {
    const uint8_t *p;
    size_t left;
} prog;

static int next(prog *g, uint8_t *out)
{
    if (g->left == 0)
        return 0;
    *out = *g->p++;
    g->left--;
    return 1;
}

static uint8_t byte_or(prog *g, uint8_t dflt)
{
    uint8_t b;
    return next(g, &b) ? b : dflt;
}

/* Takes up to n bytes of the program as data. */
static const uint8_t *take(prog *g, size_t n, size_t *got)
{
    const uint8_t *d = g->p;
    if (n > g->left)
        n = g->left;
    g->p += n;
    g->left -= n;
    *got = n;
    return d;
}

static int g_fail_callbacks;

static int on_event(void *ud, trk_conn *conn, const trk_event *ev)
{
    unsigned *counter = ud;
    (void)conn;
    if (ev->name == NULL || trk_event_name(ev->type) == NULL)
        die("event without a name", NULL);
    (*counter)++;
    return g_fail_callbacks && (*counter % 3 == 0);
}

/* Moves what `from` wants to send into `to`, possibly damaged: mode 0 whole,
 * 1 truncated to n bytes, 2 with one bit flipped, 3 duplicated, 4 dropped. */
static void carry(trk_conn *from, trk_conn *to, uint8_t mode, uint8_t n)
{
    unsigned char buf[65536];
    size_t got = 0;
    trk_error err;

    if (from == NULL || to == NULL)
        return;
    if (CALL("drain", trk_conn_drain(from, buf, sizeof buf, &got, &err)) != TRK_OK ||
        got == 0)
        return;
    switch (mode % 5) {
    case 1:
        if (n < got)
            got = n;
        break;
    case 2:
        buf[n % got] ^= (unsigned char)(1u << (n % 8));
        break;
    case 3:
        CALL("feed", trk_conn_feed(to, buf, got, &err));
        break;
    case 4:
        return;
    default:
        break;
    }
    CALL("feed", trk_conn_feed(to, buf, got, &err));
}

static void introspect(trk_conn *c, uint8_t arg)
{
    trk_error err;
    trk_stats stats;
    trk_cert_info info;
    unsigned char *der = NULL;
    size_t der_len = 0;
    const unsigned char *alpn;
    size_t alpn_len;
    unsigned char out[512];

    if (c == NULL)
        return;
    (void)trk_conn_version(c);
    (void)trk_conn_cipher(c);
    (void)trk_conn_state(c);
    (void)trk_conn_pending(c);
    (void)trk_conn_outgoing(c);
    (void)trk_conn_get_key_update_type(c);
    (void)trk_conn_renegotiate_pending(c);
    (void)trk_conn_session_reused(c);
    (void)trk_conn_secure_renegotiation(c);
    (void)trk_conn_handshake_done(c);
    trk_conn_alpn(c, &alpn, &alpn_len);
    trk_conn_stats(c, &stats);
    if (stats.key_update_requests_received > stats.key_updates_received ||
        stats.key_update_requests_sent > stats.key_updates_sent ||
        stats.renegotiations > stats.handshakes)
        die("counters inconsistent", trk_conn_state(c));
    if (CALL("peer_certificate", trk_conn_peer_certificate(c, &info, &der, &der_len,
                                                           &err)) == TRK_OK)
        trk_free(der);
    CALL("export_keying_material",
         trk_conn_export_keying_material(c, out, 1 + (size_t)arg * 2, "EXPORTER-fuzz",
                                         (arg & 1) ? out : NULL, arg & 31, &err));
}

/* One operation on end `c` (the victim or its peer); `other` is the other end. */
static void op_on(trk_conn **cp, trk_conn *other, uint8_t op, prog *g)
{
    trk_conn *c = *cp;
    trk_error err;
    unsigned char buf[20000];
    size_t n = 0, len;
    int complete;
    uint8_t a;

    if (c == NULL)
        return;
    switch (op % 16) {
    case 0:
        CALL("do_handshake", trk_conn_do_handshake(c, &err));
        break;
    case 1:
        a = byte_or(g, 255);
        CALL("read", trk_conn_read(c, buf, 1 + (size_t)a * 64, &n, &err));
        if (n > 1 + (size_t)a * 64)
            die("read returned more than asked", NULL);
        break;
    case 2: {
        const uint8_t *d;
        a = byte_or(g, 16);
        d = take(g, a, &len);
        CALL("write", trk_conn_write(c, d, len, &n, &err));
        break;
    }
    case 3:
        CALL("write0", trk_conn_write(c, "", 0, &n, &err));
        break;
    case 4:
        a = byte_or(g, 0);
        /* types -1..2: NONE and 2 must be refused with TRK_ARG */
        if (CALL("key_update", trk_conn_key_update(c, (int)(a % 4) - 1, (a >> 2) & 1,
                                                   &err)) == TRK_ARG &&
            (a % 4 == 1 || a % 4 == 2))
            die("valid key update type refused as an argument error", NULL);
        break;
    case 5:
        CALL("renegotiate", trk_conn_renegotiate(c, &err));
        break;
    case 6:
        CALL("renegotiate_abbreviated", trk_conn_renegotiate_abbreviated(c, &err));
        break;
    case 7:
        CALL("shutdown", trk_conn_shutdown(c, &complete, &err));
        break;
    case 8:
        a = byte_or(g, 0);
        CALL("set_verify_client", trk_conn_set_verify_client(c, a & 1, (a >> 1) & 1, &err));
        break;
    case 9:
        introspect(c, byte_or(g, 0));
        break;
    case 10:
        /* the peer's records as raw fuzz bytes */
        a = byte_or(g, 0);
        {
            const uint8_t *d = take(g, a, &len);
            CALL("feed", trk_conn_feed(c, d, len, &err));
        }
        break;
    case 11:
        CALL("feed_eof", trk_conn_feed_eof(c, &err));
        break;
    case 12:
        a = byte_or(g, 0);
        carry(other, c, a, byte_or(g, 0));
        break;
    case 13:
        trk_conn_close(c);   /* later calls must all be TRK_STATE */
        if (check("write-after-close", trk_conn_write(c, "x", 1, &n, &err), &err) !=
            TRK_STATE)
            die("a closed connection accepted a write", NULL);
        break;
    case 14:
        /* both directions, whole: lets a handshake make progress */
        carry(other, c, 0, 0);
        carry(c, other, 0, 0);
        break;
    default:
        CALL("read", trk_conn_read(c, buf, sizeof buf, &n, &err));
        break;
    }
}

/* Runs both handshakes over memory, carrying bytes whole, for a few rounds. */
static void memory_handshake(trk_conn *a, trk_conn *b)
{
    trk_error err;
    for (int i = 0; i < 8; i++) {
        CALL("do_handshake", trk_conn_do_handshake(a, &err));
        carry(a, b, 0, 0);
        CALL("do_handshake", trk_conn_do_handshake(b, &err));
        carry(b, a, 0, 0);
        if (trk_conn_handshake_done(a) && trk_conn_handshake_done(b))
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    prog g = {data, size};
    trk_ctx *cctx = NULL, *sctx = NULL;
    trk_conn *victim = NULL, *peer = NULL;
    trk_error err;
    unsigned events_v = 0, events_p = 0;
    uint8_t setup, op;
    int steps = 0;

    if (!next(&g, &setup))
        return 0;
    g_fail_callbacks = (setup & 32) != 0;
    if (!make_contexts(setup, &cctx, &sctx))
        goto done;

    if ((setup & 3) == 2) {
        if (CALL("pair_new", trk_pair_new(cctx, sctx, "localhost", &victim, &peer,
                                          &err)) != TRK_OK)
            goto done;
    } else {
        int victim_is_client = (setup & 3) == 3;
        if (CALL("new_memory", trk_conn_new_memory(victim_is_client ? cctx : sctx,
                                                   "localhost", &victim, &err)) != TRK_OK ||
            CALL("new_memory", trk_conn_new_memory(victim_is_client ? sctx : cctx,
                                                   "localhost", &peer, &err)) != TRK_OK)
            goto done;
        /* Half the programs start from an established connection. */
        if (setup & 64)
            memory_handshake(victim, peer);
    }
    trk_conn_set_event_callback(victim, on_event, &events_v);
    trk_conn_set_event_callback(peer, on_event, &events_p);

    /* The contexts may go first: connections hold their own references. */
    if (setup & 128) {
        trk_ctx_free(cctx);
        trk_ctx_free(sctx);
        cctx = sctx = NULL;
    }

    while (next(&g, &op) && steps++ < 400) {
        int on_peer = (op & 0x80) != 0;
        int is_pair = (setup & 3) == 2;
        if (is_pair && (op % 16 == 10 || op % 16 == 11 || op % 16 == 12 || op % 16 == 14))
            op = 15;         /* no raw transport on a pair: read instead */
        if (on_peer)
            op_on(&peer, victim, op & 0x7f, &g);
        else
            op_on(&victim, peer, op & 0x7f, &g);
    }

done:
    if (g_trace > 0 && victim != NULL) {
        trk_stats v;
        trk_conn_stats(victim, &v);
        fprintf(stderr, "victim %s %s: handshakes %llu renegotiations %llu ku sent %llu "
                "received %llu\n", trk_conn_state(victim),
                trk_conn_version(victim) ? trk_conn_version(victim) : "-",
                (unsigned long long)v.handshakes, (unsigned long long)v.renegotiations,
                (unsigned long long)v.key_updates_sent,
                (unsigned long long)v.key_updates_received);
    }
    /* Free in an order the input picks, to try both. */
    if (size > 0 && (data[size - 1] & 1)) {
        trk_conn_free(victim);
        trk_conn_free(peer);
    } else {
        trk_conn_free(peer);
        trk_conn_free(victim);
    }
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
    if (ERR_peek_error() != 0)
        die("OpenSSL error queue not empty at the end", NULL);
    return 0;
}
