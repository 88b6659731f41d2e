/*
 * policy.c - rekeying that looks after itself.
 *
 * OpenSSL never sends a KeyUpdate on its own (openssl issue 23566) and does not
 * enforce the AEAD usage limits of RFC 8446 section 5.5. A connection's policy is
 * checked in trk_conn_write: before the record that would cross a threshold the core
 * schedules a key update (TLS 1.3) or a renegotiation (TLS 1.2, when asked), and a
 * write that would cross is split so the update lands exactly at the threshold.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

/* OpenSSL's default maximum plaintext per record (no max_fragment_length). */
#define RECORD_PLAINTEXT 16384u

static uint64_t aead_divisor = 1;

const trk_rekey_policy trk__default_policy = {.aead_limit = 1};

void trk_rekey_policy_default(trk_rekey_policy *policy)
{
    memset(policy, 0, sizeof *policy);
    policy->aead_limit = 1;
}

/* Field for field (seconds bit for bit: -0.0 is kept as given), padding aside. */
static int is_default(const trk_rekey_policy *p)
{
    const trk_rekey_policy *d = &trk__default_policy;
    return p->bytes == d->bytes && p->records == d->records &&
           p->read_bytes == d->read_bytes &&
           memcmp(&p->seconds, &d->seconds, sizeof p->seconds) == 0 &&
           memcmp(&p->min_interval, &d->min_interval, sizeof p->min_interval) == 0 &&
           p->request_peer == d->request_peer &&
           p->use_renegotiation == d->use_renegotiation && p->aead_limit == d->aead_limit;
}

int trk__policy_set(trk_conn *conn, const trk_rekey_policy *policy)
{
    if (is_default(policy)) { /* most connections: no room taken for it */
        conn->own_policy = 0;
        return 1;
    }
    if (trk__extra(conn) == NULL)
        return 0;
    conn->x->policy = *policy;
    conn->own_policy = 1;
    return 1;
}

uint64_t trk_aead_record_limit(const char *cipher_name)
{
    uint64_t limit = 0;
    if (cipher_name == NULL)
        return 0;
    if (strstr(cipher_name, "GCM") != NULL)
        limit = UINT64_C(1) << 24; /* RFC 8446 5.5: 2^24.5, rounded down */
    else if (strstr(cipher_name, "CCM") != NULL)
        limit = UINT64_C(1) << 23;
    if (limit == 0)
        return 0;
    limit /= aead_divisor;
    return limit > 0 ? limit : 1;
}

void trk_testing_set_aead_scale(uint64_t divisor)
{
    aead_divisor = divisor > 0 ? divisor : 1;
}

static int has_thresholds(const trk_rekey_policy *p)
{
    return p->bytes > 0 || p->records > 0 || p->seconds > 0 || p->read_bytes > 0;
}

/* The policy's rekeys wait: this end's key changed less than min_interval ago. */
static int deferred(const trk_conn *c, const trk_rekey_policy *p)
{
    return p->min_interval > 0 && trk__now() - c->epoch_start < p->min_interval;
}

/* Where the value of a threshold goes, by its option name; NULL for another name. */
static int threshold(trk_rekey_policy *p, const char *name, uint64_t **count,
                     double **seconds)
{
    *count = NULL;
    *seconds = NULL;
    if (p == NULL || name == NULL)
        return 0;
    if (strcmp(name, "bytes") == 0)
        *count = &p->bytes;
    else if (strcmp(name, "records") == 0)
        *count = &p->records;
    else if (strcmp(name, "seconds") == 0)
        *seconds = &p->seconds;
    else if (strcmp(name, "read_bytes") == 0)
        *count = &p->read_bytes;
    else if (strcmp(name, "min_interval") == 0)
        *seconds = &p->min_interval;
    else
        return 0;
    return 1;
}

static trk_status unknown_threshold(const char *name, trk_error *err)
{
    return trk__fail(err, TRK_ARG, "unknown rekey policy option",
                     "unknown rekey policy option '%.40s'", name ? name : "(null)");
}

/* A 0 is refused rather than read as "no limit": it is more often a size computed
 * by mistake (an empty config value, 2**30 // 2**31) than a wish, and leaving the
 * threshold out says "no limit" unmistakably. */
static trk_status not_positive(const char *name, const char *shown, trk_error *err)
{
    return trk__fail(err, TRK_ARG, "invalid rekey threshold",
                     "rekey policy '%s' must be positive, not %s: leave it out for no "
                     "limit",
                     name, shown);
}

trk_status trk_rekey_policy_set_count(trk_rekey_policy *policy, const char *name,
                                      uint64_t value, trk_error *err)
{
    uint64_t *count;
    double *seconds;
    trk__err_clear();
    if (!threshold(policy, name, &count, &seconds))
        return unknown_threshold(name, err);
    if (value == 0)
        return not_positive(name, "0", err);
    if (count != NULL)
        *count = value;
    else
        *seconds = (double)value;
    return TRK_OK;
}

trk_status trk_rekey_policy_set_number(trk_rekey_policy *policy, const char *name,
                                       double value, trk_error *err)
{
    uint64_t *count;
    double *seconds;
    char shown[40];
    trk__err_clear();
    if (!threshold(policy, name, &count, &seconds))
        return unknown_threshold(name, err);
    snprintf(shown, sizeof shown, "%.17g", value);
    if (isnan(value))
        return trk__fail(err, TRK_ARG, "invalid rekey threshold",
                         "rekey policy '%s' must be a number, not NaN", name);
    if (!(value > 0))
        return not_positive(name, shown, err);
    if (seconds != NULL) {
        if (isinf(value))
            return trk__fail(err, TRK_ARG, "invalid rekey threshold",
                             "rekey policy '%s' must be finite (leave it out for "
                             "none)",
                             name);
        *seconds = value;
        return TRK_OK;
    }
    /* 2^64 is the first double past UINT64_MAX: below it the cast is exact for
     * any integral value */
    if (value >= 18446744073709551616.0)
        return trk__fail(err, TRK_ARG, "invalid rekey threshold",
                         "rekey policy '%s' must be at most 2^64 - 1, not %s", name,
                         shown);
    if (value != floor(value))
        return trk__fail(err, TRK_ARG, "invalid rekey threshold",
                         "rekey policy '%s' counts whole %s: %s is not a whole number",
                         name, strcmp(name, "records") == 0 ? "records" : "bytes", shown);
    *count = (uint64_t)value;
    return TRK_OK;
}

static trk_status check_policy(const trk_rekey_policy *p, trk_error *err)
{
    if (p == NULL)
        return trk__fail(err, TRK_ARG, "no policy", "a rekey policy is required");
    if (isnan(p->seconds) || p->seconds < 0)
        return trk__fail(err, TRK_ARG, "invalid seconds",
                         "rekey policy: seconds must be 0 (none) or positive");
    if (isnan(p->min_interval) || p->min_interval < 0 || isinf(p->min_interval))
        return trk__fail(err, TRK_ARG, "invalid min_interval",
                         "rekey policy: min_interval must be 0 (none) or a finite "
                         "positive number of seconds");
    return TRK_OK;
}

trk_status trk_ctx_set_rekey_policy(trk_ctx *ctx, const trk_rekey_policy *policy,
                                    trk_error *err)
{
    trk__err_clear();
    trk_status st = check_policy(policy, err);
    if (st == TRK_OK)
        ctx->policy = *policy;
    return st;
}

void trk_ctx_get_rekey_policy(const trk_ctx *ctx, trk_rekey_policy *out)
{
    *out = ctx->policy;
}

static int is_tls13(const trk_conn *c)
{
    return c->handshake_done && SSL_version(c->ssl) == TLS1_3_VERSION;
}

static trk_status tls12_refusal(const trk_conn *c, trk_error *err)
{
    return trk__fail(err, TRK_STATE, "wrong ssl version",
                     "rekey policy: this connection negotiated %s, where rekeying "
                     "means renegotiation; set use_renegotiation to allow it",
                     SSL_get_version(c->ssl));
}

trk_status trk_conn_set_rekey_policy(trk_conn *conn, const trk_rekey_policy *policy,
                                     trk_error *err)
{
    trk_status st = trk__usable(conn, "set_rekey_policy", err);
    if (st == TRK_OK)
        st = check_policy(policy, err);
    if (st != TRK_OK)
        return st;
    if (conn->handshake_done && !is_tls13(conn) && has_thresholds(policy) &&
        !policy->use_renegotiation)
        return tls12_refusal(conn, err);
    if (!trk__policy_set(conn, policy))
        return trk__fail(err, TRK_NOMEM, "out of memory",
                         "set_rekey_policy: cannot allocate");
    return TRK_OK;
}

void trk_conn_get_rekey_policy(const trk_conn *conn, trk_rekey_policy *out)
{
    *out = *trk__policy(conn);
}

void trk__epoch_reset(trk_conn *conn)
{
    conn->epoch_bytes = conn->epoch_records = 0;
    conn->epoch_start = trk__now();
}

/* The record limit in force: the policy's, tightened by the AEAD limit on 1.3. */
static uint64_t record_limit(trk_conn *c)
{
    const trk_rekey_policy *p = trk__policy(c);
    uint64_t lim = p->records;
    if (p->aead_limit && is_tls13(c)) {
        if (!c->aead_known) {
            const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
            /* at most 2^24: fits aead_records */
            c->aead_records = (uint32_t)trk_aead_record_limit(
                cipher ? SSL_CIPHER_get_name(cipher) : NULL);
            c->aead_known = 1;
        }
        if (c->aead_records > 0 && (lim == 0 || c->aead_records < lim))
            lim = c->aead_records;
    }
    return lim;
}

int trk__policy_active(trk_conn *conn)
{
    if (!conn->handshake_done)
        return 0;
    return has_thresholds(trk__policy(conn)) || record_limit(conn) > 0;
}

/* Our sending key changes before the next record leaves: a KeyUpdate is scheduled
 * (ours, or the reply owed to the peer), or a client's renegotiation is. */
static int rekey_scheduled(const trk_conn *c)
{
    if (SSL_get_key_update_type(c->ssl) != SSL_KEY_UPDATE_NONE)
        return 1;
    return c->role == TRK_CLIENT && SSL_renegotiate_pending(c->ssl) &&
           !c->hs.in_handshake;
}

/* A TLS 1.2 server (not DTLS) whose renegotiation request is out, not yet
 * answered by a completed handshake. */
static int server_asked(const trk_conn *c)
{
    return c->role == TRK_SERVER && !c->dtls && !is_tls13(c) && c->hs.reneg_ours;
}

/* upcoming: DTLS never splits a datagram, so a datagram that would cross the byte
 * threshold rekeys before it (unless it is the first of its epoch). A TLS 1.2
 * server asks at three quarters of its limits: the client's new handshake takes a
 * round trip to come back, and the limit should hold meanwhile. */
/* The AEAD record limit alone (record_limit made it known): what min_interval
 * never defers. */
static uint64_t aead_only(const trk_conn *c, const trk_rekey_policy *p)
{
    return p->aead_limit && is_tls13(c) && c->aead_known ? c->aead_records : 0;
}

static int epoch_exhausted(trk_conn *c, uint64_t rec_limit, size_t upcoming)
{
    const trk_rekey_policy *p = trk__policy(c);
    if (deferred(c, p)) {
        uint64_t aead = aead_only(c, p);
        return aead > 0 && c->epoch_records >= aead;
    }
    uint64_t bytes = p->bytes;
    if (c->role == TRK_SERVER && !c->dtls && !is_tls13(c)) {
        bytes -= bytes / 4;
        rec_limit -= rec_limit / 4;
    }
    return (bytes > 0 && (c->epoch_bytes >= bytes ||
                          (c->epoch_bytes > 0 && upcoming > bytes - c->epoch_bytes))) ||
           (rec_limit > 0 && c->epoch_records >= rec_limit) ||
           (p->seconds > 0 && trk__now() - c->epoch_start >= p->seconds);
}

void trk__read_epoch_reset(trk_conn *c)
{
    if (c->x != NULL) {
        c->x->read_epoch_bytes = 0;
        c->x->read_rekey_asked = 0;
    }
}

int trk__read_rekey_due(trk_conn *c, size_t n)
{
    const trk_rekey_policy *p = trk__policy(c);
    trk_conn_extra *x = c->x;
    if (p->read_bytes == 0 || x == NULL || !c->handshake_done)
        return 0;
    x->read_epoch_bytes += n;
    if (x->read_rekey_asked || x->read_epoch_bytes < p->read_bytes || c->write_pending ||
        deferred(c, p) || c->hs.in_handshake)
        return 0;
    if (is_tls13(c)) {
        if (SSL_get_key_update_type(c->ssl) != SSL_KEY_UPDATE_NONE)
            return 0; /* one is on its way: it goes out first */
        if (SSL_key_update(c->ssl, SSL_KEY_UPDATE_REQUESTED) != 1) {
            trk__err_clear();
            return 0;
        }
    } else {
        if (c->dtls || !p->use_renegotiation || SSL_renegotiate_pending(c->ssl))
            return 0;
        if (SSL_renegotiate(c->ssl) != 1) {
            trk__err_clear();
            return 0;
        }
        c->hs.reneg_ours = 1;
    }
    x->read_rekey_asked = 1;
    c->auto_pending = 1;
    trk_rare_counters *r = trk__rare(c);
    if (r != NULL)
        r->automatic_rekeys++;
    return 1;
}

/* Schedules the policy's rekey if the epoch is used up. */
static trk_status rekey_if_due(trk_conn *c, uint64_t rec_limit, size_t upcoming,
                               trk_error *err)
{
    if (c->write_pending || rekey_scheduled(c) || !epoch_exhausted(c, rec_limit, upcoming))
        return TRK_OK;
    if (is_tls13(c)) {
        int type = trk__policy(c)->request_peer ? SSL_KEY_UPDATE_REQUESTED
                                                : SSL_KEY_UPDATE_NOT_REQUESTED;
        if (SSL_key_update(c->ssl, type) != 1)
            return trk__fail_openssl(err, TRK_STATE, NULL, "automatic key update failed");
    } else {
        if (!trk__policy(c)->use_renegotiation)
            return tls12_refusal(c, err);
        if (SSL_renegotiate_pending(c->ssl))
            return TRK_OK; /* a server's request the client has not answered yet */
        if (SSL_renegotiate(c->ssl) != 1)
            return trk__fail_openssl(err, TRK_STATE, NULL,
                                     "automatic renegotiation failed");
        c->hs.reneg_ours = 1;
    }
    c->auto_pending = 1;
    trk_rare_counters *r = trk__rare(c);
    if (r != NULL)
        r->automatic_rekeys++;
    return TRK_OK;
}

/* How much of `want` may go out before the next rekey. */
static size_t allowance(trk_conn *c, size_t want, uint64_t rec_limit)
{
    const trk_rekey_policy *p = trk__policy(c);
    int fresh = rekey_scheduled(c);
    uint64_t used_b = fresh ? 0 : c->epoch_bytes, used_r = fresh ? 0 : c->epoch_records;
    uint64_t lim = want;
    int wait = !fresh && deferred(c, p); /* thresholds wait; the AEAD limit does not */
    if (wait)
        rec_limit = aead_only(c, p);
    if (p->bytes > 0 && !wait)
        lim = used_b >= p->bytes ? 0 : (p->bytes - used_b < lim ? p->bytes - used_b : lim);
    if (rec_limit > 0) {
        uint64_t left = used_r >= rec_limit ? 0 : rec_limit - used_r;
        if (left <= UINT64_MAX / RECORD_PLAINTEXT && left * RECORD_PLAINTEXT < lim)
            lim = left * RECORD_PLAINTEXT;
    }
    return (size_t)lim;
}

/* How long a blocking TLS 1.2 server's write waits at its limit for the client to
 * begin the handshake it asked for, before it writes on (rekey_overdue): a client
 * that answers at all does so within a round trip once it has read what came
 * before the HelloRequest. */
#define CLIENT_GRACE 2.0

/* A policed write stops after `done` bytes went out: a want or a timeout leaves
 * the call pending there (the same call again goes on, nothing sent twice, *n 0);
 * anything else reports what went out. */
static trk_status stop_at(trk_conn *conn, size_t done, trk_status st, size_t *n)
{
    if ((st == TRK_WANT_READ || st == TRK_WANT_WRITE || st == TRK_TIMEOUT) &&
        trk__extra(conn) != NULL) {
        conn->write_pending = 1;
        conn->x->pend_done = done;
        conn->x->pend_chunk = 0; /* OpenSSL holds nothing of this call */
        *n = 0;
    } else {
        *n = done;
    }
    return st;
}

/* Waits (the socket readable, then takes it in) until the client's handshake has
 * begun and completed, which gives a new allowance (*chunk), or the grace is over
 * (*chunk 0), or the call's deadline passed (TRK_TIMEOUT). */
static trk_status await_client(trk_conn *conn, uint64_t rec_limit, size_t want,
                               size_t *chunk, trk_error *err)
{
    double grace_end = trk__now() + CLIENT_GRACE;
    while (*chunk == 0 && server_asked(conn)) {
        double deadline = conn->x != NULL ? conn->x->call_deadline : 0;
        double until = deadline > 0 && deadline < grace_end ? deadline : grace_end;
        int r = trk__wait_input(conn, until);
        if (r == 0) {
            if (until == deadline)
                return trk__fail(err, TRK_TIMEOUT, "timed out",
                                 "write timed out after %g seconds, waiting for the "
                                 "client to renegotiate as asked",
                                 trk_conn_timeout(conn));
            return TRK_OK; /* the grace is over */
        }
        if (r == -2)
            return trk__fail(err, TRK_CALLBACK, "interrupted",
                             "write: interrupted by a signal");
        if (r < 0)
            return trk__fail(err, TRK_SYSCALL, "poll failed", "write: poll failed");
        trk_status st = trk__take_in_renegotiation(conn, "write", err);
        if (st != TRK_OK)
            return st;
        *chunk = allowance(conn, want, rec_limit);
    }
    return TRK_OK;
}

trk_status trk__write_policed(trk_conn *conn, const void *buf, size_t len, size_t *n,
                              trk_error *err)
{
    const unsigned char *p = buf;
    size_t done = 0, resume = 0;
    uint64_t rec_limit = record_limit(conn);
    const trk_rekey_policy *pol = trk__policy(conn);
    trk_conn_extra *x = conn->x;
    /* The same call again after a want or a timeout: on from where it stopped, with
     * the chunk OpenSSL holds (write_call checked the length). */
    if (conn->write_pending && x != NULL && x->pend_total == len) {
        done = x->pend_done;
        resume = x->pend_chunk;
    }
    /* Only the AEAD limit, far away (the usual case: 2^24 records): the write goes
     * out whole, as without a policy, and only the counts are kept. */
    if (resume == 0 && !has_thresholds(pol) &&
        conn->epoch_records + len / RECORD_PLAINTEXT + 2 < rec_limit) {
        trk_status st = trk__write_chunk(conn, buf, len, n, err);
        if (st != TRK_OK) {
            if (conn->write_pending && trk__extra(conn) != NULL) {
                conn->x->pend_done = 0;
                conn->x->pend_chunk = len;
            }
            return st;
        }
        conn->epoch_bytes += *n;
        conn->epoch_records += (*n + RECORD_PLAINTEXT - 1) / RECORD_PLAINTEXT;
        return TRK_OK;
    }
    if (resume == 0 && !is_tls13(conn) && has_thresholds(pol) && !pol->use_renegotiation)
        return tls12_refusal(conn, err);
    do {
        size_t chunk = resume;
        if (resume == 0) {
            trk_status st = rekey_if_due(conn, rec_limit, conn->dtls ? len : 0, err);
            if (st != TRK_OK) {
                *n = done;
                return st;
            }
            /* A TLS 1.2 server whose HelloRequest is out: the client answers with
             * a new handshake, which a server that only writes would never read.
             * Each chunk first takes in what has arrived of it, and completes it
             * once begun; meanwhile the data goes a record at a time. */
            int asked = server_asked(conn);
            if (asked) {
                st = trk__take_in_renegotiation(conn, "write", err);
                if (st != TRK_OK)
                    return stop_at(conn, done, st, n);
                asked = server_asked(conn);
            }
            /* DTLS: one write is one datagram, never split */
            chunk = conn->dtls ? len : allowance(conn, len - done, rec_limit);
            if (asked && chunk > RECORD_PLAINTEXT)
                chunk = RECORD_PLAINTEXT;
            if (chunk == 0 && len > done && asked && !conn->hs.overdue_told &&
                conn->transport == TRK_T_FD && !conn->sock.nowait &&
                trk_conn_timeout(conn) != 0) {
                /* The limit is reached and the client has not begun its handshake:
                 * a blocking write waits for it, a while. Some clients give up on
                 * a HelloRequest followed by much data (Mbed TLS after 16
                 * records). */
                st = await_client(conn, rec_limit, len - done, &chunk, err);
                if (st != TRK_OK)
                    return stop_at(conn, done, st, n);
            }
            if (chunk == 0 && len > done) {
                /* Still nothing from the client (it may ignore a HelloRequest, and
                 * a non-blocking write cannot wait): the data goes on, and the
                 * events say the limit was passed. */
                if (!conn->hs.overdue_told) {
                    conn->hs.overdue_told = 1;
                    trk__emit_rekey_overdue(conn);
                }
                chunk = len - done < RECORD_PLAINTEXT ? len - done : RECORD_PLAINTEXT;
            }
        }
        resume = 0;
        size_t wrote = 0;
        trk_status st = trk__write_chunk(conn, p + done, chunk, &wrote, err);
        if (st == TRK_OK || (st == TRK_CALLBACK && wrote == chunk)) {
            conn->epoch_bytes += wrote;
            conn->epoch_records += (wrote + RECORD_PLAINTEXT - 1) / RECORD_PLAINTEXT;
            done += wrote;
        }
        if (st != TRK_OK) {
            /* Pending (a want, a timeout, a signal): nothing is reported yet; the
             * same call again goes on with this chunk. Otherwise what went out. */
            if (conn->write_pending && trk__extra(conn) != NULL) {
                conn->x->pend_done = done;
                conn->x->pend_chunk = chunk;
                done = 0;
            }
            *n = done;
            return st;
        }
    } while (done < len);
    *n = done;
    return TRK_OK;
}
