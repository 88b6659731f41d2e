/*
 * dtls.c - DTLS 1.2: datagram transports, cookie exchange, retransmission timers, MTU.
 *
 * A DTLS connection uses the same trk_conn as TLS; what differs lives here:
 *  - the transports. A connected UDP socket gets OpenSSL's datagram BIO. The memory
 *    and pair transports need a BIO that keeps message boundaries: a BIO pair or a
 *    memory BIO joins datagrams into one byte stream, and OpenSSL 3.0 has no datagram
 *    BIO pair (BIO_s_dgram_pair is 3.2+). So this file has a small datagram-queue BIO:
 *    each end reads one queue and writes the other; the memory transport is the same
 *    BIO with the caller playing the other end.
 *  - the server's cookie exchange (HelloVerifyRequest, RFC 6347 4.2.1): an HMAC of the
 *    client's address under a per-context secret.
 *  - the retransmission timer: exposed for non-blocking users, run by trk__drive for
 *    blocking ones (connection.c), optionally started shorter than OpenSSL's 1 s.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* A UDP payload on Ethernet: 1500 minus the IPv4 and UDP headers. What the memory
 * and pair transports report as their MTU, so handshakes fragment as on a LAN. */
#define DQ_DEFAULT_MTU (1500 - 28)
#define DQ_MTU_OVERHEAD 28
/* How much one direction of a pair holds before writes must wait for the reader
 * (the pump then moves the other end, as for the TLS BIO pair). */
#define DQ_PAIR_LIMIT (256 * 1024)
/* The largest datagram feed() takes: what UDP can carry. */
#define DQ_MAX_DATAGRAM 65535
/* OpenSSL's ceiling on one DTLS record's plaintext (dtls1_write_app_data_bytes). */
#define DTLS_MAX_PLAINTEXT 16384

/* ------------------------------------------------------------------------- */
/* Datagram queues                                                            */
/* ------------------------------------------------------------------------- */

int trk__dq_push(trk_dgram_queue *q, const void *data, size_t len)
{
    trk_dgram *d = malloc(sizeof *d + (len > 0 ? len : 1));
    if (d == NULL)
        return 0;
    d->next = NULL;
    d->len = len;
    d->off = 0;
    if (len > 0)
        memcpy(d->data, data, len);
    if (q->tail != NULL)
        q->tail->next = d;
    else
        q->head = d;
    q->tail = d;
    q->count++;
    q->bytes += len;
    return 1;
}

long trk__dq_pop(trk_dgram_queue *q, void *buf, size_t cap, int partial)
{
    trk_dgram *d = q->head;
    if (d == NULL)
        return -1;
    size_t left = d->len - d->off;
    size_t k = left < cap ? left : cap;
    if (k > 0)
        memcpy(buf, d->data + d->off, k);
    if (partial && k < left) {
        d->off += k;
        q->bytes -= k;
        return (long)k;
    }
    q->head = d->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->count--;
    q->bytes -= left;
    free(d);
    return (long)k;
}

void trk__dq_clear(trk_dgram_queue *q)
{
    trk_dgram *d = q->head;
    while (d != NULL) {
        trk_dgram *next = d->next;
        free(d);
        d = next;
    }
    memset(q, 0, sizeof *q);
}

/* ------------------------------------------------------------------------- */
/* The datagram-queue BIO                                                     */
/* ------------------------------------------------------------------------- */

/* Two queues shared by the two ends of a link. End `side` reads q[side] and writes
 * q[1 - side]. A memory transport is a link with one BIO (side 0): feed() fills
 * q[0], drain() empties q[1]. */
typedef struct dq_link {
    trk_dgram_queue q[2];
    int refs;
    int gone[2];    /* that end's BIO was freed: the other sees EOF, writes fail */
    int eof[2];     /* reads of q[i] see EOF once it is empty (feed_eof) */
    size_t limit;   /* bytes a queue holds before writes must wait; 0: no limit */
} dq_link;

typedef struct dq_bio {
    dq_link *link;
    int side;
    long mtu;       /* the UDP payload size BIO_CTRL_DGRAM_QUERY_MTU answers */
} dq_bio;

static BIO_METHOD *dq_method;
static int dq_type;
static pthread_once_t dq_once = PTHREAD_ONCE_INIT;

static int dq_read(BIO *b, char *out, int outl)
{
    dq_bio *d = BIO_get_data(b);
    trk_dgram_queue *q = &d->link->q[d->side];
    BIO_clear_retry_flags(b);
    if (q->count == 0) {
        if (d->link->eof[d->side] || d->link->gone[1 - d->side])
            return 0;
        BIO_set_retry_read(b);
        return -1;
    }
    /* recv() semantics: one datagram per read, the excess of a longer one dropped
     * (OpenSSL reads into a buffer larger than any record it accepts). */
    return (int)trk__dq_pop(q, out, outl > 0 ? (size_t)outl : 0, 0);
}

static int dq_write(BIO *b, const char *in, int inl)
{
    dq_bio *d = BIO_get_data(b);
    dq_link *l = d->link;
    trk_dgram_queue *q = &l->q[1 - d->side];
    BIO_clear_retry_flags(b);
    if (l->gone[1 - d->side]) {
        errno = EPIPE;
        return -1;
    }
    if (inl < 0)
        return -1;
    if (l->limit > 0 && q->bytes > 0 && q->bytes + (size_t)inl > l->limit) {
        BIO_set_retry_write(b);
        return -1;
    }
    if (!trk__dq_push(q, in, (size_t)inl)) {
        errno = ENOMEM;
        return -1;
    }
    return inl;
}

static long dq_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    dq_bio *d = BIO_get_data(b);
    trk_dgram_queue *in = &d->link->q[d->side];
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_PENDING:
        return (long)in->bytes;
    case BIO_CTRL_WPENDING:
        return 0; /* a write is delivered at once: DTLS sizes fragments on this */
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return in->count == 0 && (d->link->eof[d->side] || d->link->gone[1 - d->side]);
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_GET_MTU:
        return d->mtu;
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
        return DQ_DEFAULT_MTU;
    case BIO_CTRL_DGRAM_SET_MTU:
        d->mtu = num;
        return num;
    case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD:
        return DQ_MTU_OVERHEAD;
    default:
        return 0; /* MTU_EXCEEDED, SET_NEXT_TIMEOUT, GET_PEER...: nothing to do */
    }
}

static int dq_create(BIO *b)
{
    BIO_set_data(b, NULL);
    BIO_set_init(b, 0);
    return 1;
}

static int dq_destroy(BIO *b)
{
    dq_bio *d = BIO_get_data(b);
    if (d == NULL)
        return 1;
    dq_link *l = d->link;
    l->gone[d->side] = 1;
    if (--l->refs == 0) {
        trk__dq_clear(&l->q[0]);
        trk__dq_clear(&l->q[1]);
        free(l);
    }
    free(d);
    BIO_set_data(b, NULL);
    BIO_set_init(b, 0);
    return 1;
}

static void dq_method_init(void)
{
    int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
    BIO_METHOD *m = BIO_meth_new(type, "tlsrekey datagram queue");
    if (m == NULL)
        return;
    if (!BIO_meth_set_write(m, dq_write) || !BIO_meth_set_read(m, dq_read) ||
        !BIO_meth_set_ctrl(m, dq_ctrl) || !BIO_meth_set_create(m, dq_create) ||
        !BIO_meth_set_destroy(m, dq_destroy)) {
        BIO_meth_free(m);
        return;
    }
    dq_type = type;
    dq_method = m;
}

#if defined(__GNUC__)
/* The method is made once per process; when a binding's shared object is unloaded
 * (Lua's dlclose at exit) it goes with it, instead of being reported as a leak. No
 * BIO of it is alive by then: every connection was freed first. */
__attribute__((destructor)) static void dq_method_free(void)
{
    BIO_meth_free(dq_method);
    dq_method = NULL;
}
#endif

/* A BIO on end `side` of `link` (taking one reference to it). */
static BIO *dq_new(dq_link *link, int side)
{
    pthread_once(&dq_once, dq_method_init);
    if (dq_method == NULL)
        return NULL;
    dq_bio *d = calloc(1, sizeof *d);
    BIO *b = d != NULL ? BIO_new(dq_method) : NULL;
    if (b == NULL) {
        free(d);
        return NULL;
    }
    d->link = link;
    d->side = side;
    d->mtu = DQ_DEFAULT_MTU;
    link->refs++;
    BIO_set_data(b, d);
    BIO_set_init(b, 1);
    return b;
}

static int is_dq(BIO *b)
{
    return b != NULL && dq_method != NULL && BIO_method_type(b) == dq_type;
}

/* The queue BIO of a memory-transport connection, or NULL. */
static dq_bio *memory_bio(const trk_conn *conn)
{
    BIO *b = conn->ssl != NULL ? SSL_get_rbio(conn->ssl) : NULL;
    return b != NULL && is_dq(b) ? BIO_get_data(b) : NULL;
}

/* ------------------------------------------------------------------------- */
/* Transports                                                                 */
/* ------------------------------------------------------------------------- */

trk_status trk__dtls_check_fd(int fd, trk_error *err)
{
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
        return trk__fail(err, TRK_ARG, "not a socket",
                         "a DTLS connection needs a connected UDP socket; fd %d is "
                         "not a socket",
                         fd);
    if (type != SOCK_DGRAM)
        return trk__fail(err, TRK_ARG, "not a datagram socket",
                         "a DTLS context needs a UDP (datagram) socket, not a "
                         "stream socket");
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0)
        return trk__fail(err, TRK_ARG, "socket not connected",
                         "the UDP socket is not connected: connect() it to the peer "
                         "first (LuaSocket: udp:setpeername)");
    return TRK_OK;
}

trk_status trk__dtls_attach_fd(trk_conn *conn, trk_error *err)
{
    struct sockaddr_storage peer; /* trk_ctx_check_fd made sure there is one */
    socklen_t pl = sizeof peer;
    memset(&peer, 0, sizeof peer);
    if (getpeername(conn->fd, (struct sockaddr *)&peer, &pl) != 0)
        return trk__fail(err, TRK_ARG, "socket not connected",
                         "the UDP socket is not connected: connect() it to the peer "
                         "first (LuaSocket: udp:setpeername)");
    BIO *b = BIO_new_dgram(conn->fd, BIO_NOCLOSE);
    if (b == NULL)
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot create a datagram BIO");
    /* The BIO sends with send() on a connected socket and knows the peer's address,
     * which the cookie and the MTU overhead (IPv4/IPv6) depend on. A sockaddr_storage
     * starts like a BIO_ADDR (a union of sockaddrs). */
    BIO_ctrl_set_connected(b, &peer);
    SSL_set_bio(conn->ssl, b, b);
    trk__err_clear();
    return TRK_OK;
}

static dq_link *link_new(size_t limit)
{
    dq_link *l = calloc(1, sizeof *l);
    if (l != NULL)
        l->limit = limit;
    return l;
}

trk_status trk__dtls_attach_memory(trk_conn *conn, trk_error *err)
{
    dq_link *l = link_new(0);
    BIO *b = l != NULL ? dq_new(l, 0) : NULL;
    if (b == NULL) {
        free(l);
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot create a datagram queue");
    }
    /* the BIO is the caller's end (side 1 is played by feed/drain): one reference,
     * so that freeing the BIO frees the queues; side 1 is never "gone" */
    SSL_set_bio(conn->ssl, b, b);
    return TRK_OK;
}

trk_status trk__dtls_attach_pair(trk_conn *c, trk_conn *s, trk_error *err)
{
    dq_link *l = link_new(DQ_PAIR_LIMIT);
    BIO *cb = l != NULL ? dq_new(l, 0) : NULL;
    BIO *sb = cb != NULL ? dq_new(l, 1) : NULL;
    if (sb == NULL) {
        if (cb != NULL)
            BIO_free(cb); /* drops the link with it */
        else
            free(l);
        return trk__fail_openssl(err, TRK_NOMEM, NULL,
                                 "cannot create the datagram queues of a pair");
    }
    SSL_set_bio(c->ssl, cb, cb);
    SSL_set_bio(s->ssl, sb, sb);
    return TRK_OK;
}

trk_status trk__dtls_feed(trk_conn *conn, const void *data, size_t len, trk_error *err)
{
    dq_bio *d = memory_bio(conn);
    if (d == NULL)
        return trk__fail(err, TRK_STATE, "not a memory connection",
                         "feed: only memory-transport connections take this call");
    if (len > DQ_MAX_DATAGRAM)
        return trk__fail(err, TRK_ARG, "datagram too long",
                         "feed: a datagram is at most %d bytes, not %zu",
                         DQ_MAX_DATAGRAM, len);
    if (len == 0)
        return TRK_OK; /* an empty datagram carries no record */
    if (!trk__dq_push(&d->link->q[d->side], data, len))
        return trk__fail(err, TRK_NOMEM, "out of memory", "feed: cannot queue data");
    return TRK_OK;
}

void trk__dtls_feed_eof(trk_conn *conn)
{
    dq_bio *d = memory_bio(conn);
    if (d != NULL)
        d->link->eof[d->side] = 1;
}

size_t trk__dtls_outgoing(const trk_conn *conn)
{
    dq_bio *d = memory_bio(conn);
    return d != NULL ? d->link->q[1 - d->side].bytes : 0;
}

trk_status trk__dtls_drain(trk_conn *conn, void *buf, size_t cap, size_t *n,
                           trk_error *err)
{
    dq_bio *d = memory_bio(conn);
    *n = 0;
    if (d == NULL)
        return TRK_OK;
    trk_dgram_queue *q = &d->link->q[1 - d->side];
    if (q->head == NULL || cap == 0)
        return TRK_OK;
    if (q->head->len > cap)
        return trk__fail(err, TRK_ARG, "buffer too small",
                         "drain: the next datagram is %zu bytes, the buffer %zu "
                         "(a buffer of outgoing() bytes always suffices)",
                         q->head->len, cap);
    *n = (size_t)trk__dq_pop(q, buf, cap, 0);
    return TRK_OK;
}

int trk__dtls_stash_put(trk_conn *c, const void *data, size_t len)
{
    trk_conn_extra *x = trk__extra(c);
    if (x != NULL && x->dstash == NULL)
        x->dstash = calloc(1, sizeof *x->dstash);
    return x != NULL && x->dstash != NULL && trk__dq_push(x->dstash, data, len);
}

int trk__dtls_read_to_stash(trk_conn *p)
{
    unsigned char buf[DTLS_MAX_PLAINTEXT];
    size_t got = 0;
    int r = SSL_read_ex(p->ssl, buf, sizeof buf, &got);
    if (r <= 0)
        return r;
    trk_conn_extra *x = trk__extra(p);
    if (x != NULL && x->dstash == NULL)
        x->dstash = calloc(1, sizeof *x->dstash);
    /* Out of memory: the datagram is lost, as UDP would lose it. */
    if (x != NULL && x->dstash != NULL)
        trk__dq_push(x->dstash, buf, got);
    return r;
}

/* ------------------------------------------------------------------------- */
/* Cookie exchange                                                            */
/* ------------------------------------------------------------------------- */

/* What the cookie binds: the client's family, address and port on a socket, a
 * fixed tag on the memory and pair transports. Returns the length. */
static size_t cookie_input(SSL *ssl, unsigned char *buf, size_t cap)
{
    static const char tag[] = "tlsrekey in-memory transport";
    BIO *rbio = SSL_get_rbio(ssl);
    size_t len = 0;
    if (rbio != NULL && BIO_method_type(rbio) == BIO_TYPE_DGRAM) {
        BIO_ADDR *peer = BIO_ADDR_new();
        size_t alen = 0;
        if (peer != NULL && BIO_dgram_get_peer(rbio, peer) > 0 &&
            BIO_ADDR_rawaddress(peer, NULL, &alen) && alen + 4 <= cap) {
            int family = BIO_ADDR_family(peer);
            unsigned short port = BIO_ADDR_rawport(peer);
            buf[0] = (unsigned char)(family >> 8);
            buf[1] = (unsigned char)family;
            memcpy(buf + 2, &port, 2);
            BIO_ADDR_rawaddress(peer, buf + 4, &alen);
            len = alen + 4;
        }
        BIO_ADDR_free(peer);
    }
    if (len == 0) {
        memcpy(buf, tag, sizeof tag - 1);
        len = sizeof tag - 1;
    }
    return len;
}

static int cookie_compute(SSL *ssl, unsigned char *out, unsigned int *out_len)
{
    trk_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    unsigned char in[64];
    size_t len = cookie_input(ssl, in, sizeof in);
    if (ctx == NULL)
        return 0;
    return HMAC(EVP_sha256(), ctx->cookie_secret, (int)sizeof ctx->cookie_secret, in, len,
                out, out_len) != NULL;
}

static int cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *cookie_len)
{
    /* cookie has room for DTLS1_COOKIE_LENGTH (255) bytes; SHA-256 gives 32 */
    return cookie_compute(ssl, cookie, cookie_len);
}

static int cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int cookie_len)
{
    unsigned char want[EVP_MAX_MD_SIZE];
    unsigned int want_len = 0;
    return cookie_compute(ssl, want, &want_len) && want_len == cookie_len &&
           CRYPTO_memcmp(want, cookie, want_len) == 0;
}

int trk__dtls_ctx_init(trk_ctx *ctx)
{
    SSL_CTX *s = ctx->ssl_ctx;
    ctx->dtls = 1;
    if (!SSL_CTX_set_min_proto_version(s, DTLS1_2_VERSION) ||
        RAND_bytes(ctx->cookie_secret, sizeof ctx->cookie_secret) != 1)
        return 0;
    if (ctx->role == TRK_SERVER) {
        SSL_CTX_set_cookie_generate_cb(s, cookie_generate);
        SSL_CTX_set_cookie_verify_cb(s, cookie_verify);
        SSL_CTX_set_options(s, SSL_OP_COOKIE_EXCHANGE);
        ctx->cookie_exchange = 1;
    }
    return 1;
}

int trk_ctx_is_dtls(const trk_ctx *ctx)
{
    return ctx != NULL && ctx->dtls;
}

trk_status trk_ctx_set_dtls_cookie_exchange(trk_ctx *ctx, int on, trk_error *err)
{
    trk__err_clear();
    if (!ctx->dtls || ctx->role != TRK_SERVER)
        return trk__fail(err, TRK_ARG, "dtls servers only",
                         "cookie exchange applies to DTLS server contexts only");
    if (on)
        SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_COOKIE_EXCHANGE);
    else
        SSL_CTX_clear_options(ctx->ssl_ctx, SSL_OP_COOKIE_EXCHANGE);
    ctx->cookie_exchange = on != 0;
    return TRK_OK;
}

/* ------------------------------------------------------------------------- */
/* Retransmission timer                                                       */
/* ------------------------------------------------------------------------- */

/* OpenSSL calls this with 0 when a flight's timer starts and with the last value
 * when it fires (DTLS_set_timer_cb(3)); doubling up to 60 s as OpenSSL does. */
static unsigned int timer_cb(SSL *ssl, unsigned int timer_us)
{
    trk_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    unsigned int first = ctx != NULL && ctx->dtls_timer_us > 0 ? ctx->dtls_timer_us
                                                                 : 1000000u;
    if (timer_us == 0)
        return first;
    return timer_us >= 30000000u ? 60000000u : timer_us * 2;
}

trk_status trk_ctx_set_dtls_initial_timeout(trk_ctx *ctx, double seconds, trk_error *err)
{
    trk__err_clear();
    if (!ctx->dtls)
        return trk__fail(err, TRK_ARG, "dtls only",
                         "the retransmission timeout applies to DTLS contexts only");
    if (seconds != seconds || (seconds != 0 && (seconds < 0.001 || seconds > 60)))
        return trk__fail(err, TRK_ARG, "invalid timeout",
                         "the initial retransmission timeout must be 0 (OpenSSL's "
                         "default) or from 0.001 to 60 seconds");
    ctx->dtls_timer_us = (unsigned)(seconds * 1e6 + 0.5);
    return TRK_OK;
}

void trk__dtls_conn_init(trk_conn *conn)
{
    if (conn->ctx->dtls_timer_us > 0)
        DTLS_set_timer_cb(conn->ssl, timer_cb);
}

int trk__dtls_timer(trk_conn *conn, double *seconds)
{
    struct timeval tv;
    *seconds = -1;
    if (conn == NULL || conn->ssl == NULL || !conn->dtls ||
        DTLSv1_get_timeout(conn->ssl, &tv) != 1)
        return 0;
    *seconds = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    return 1;
}

trk_status trk__dtls_on_timer(trk_conn *conn, const char *op, trk_error *err)
{
    trk__err_clear();
    errno = 0;
    int r = (int)DTLSv1_handle_timeout(conn->ssl);
    if (r >= 0) {
        trk__err_clear();
        return TRK_OK;
    }
    return trk__ssl_status(conn, r, errno, op, err);
}

int trk_conn_is_dtls(const trk_conn *conn)
{
    return conn != NULL && conn->dtls;
}

int trk_conn_dtls_get_timeout(const trk_conn *conn, double *seconds)
{
    return trk__dtls_timer((trk_conn *)conn, seconds);
}

static trk_status need_dtls(trk_conn *conn, const char *op, trk_error *err)
{
    trk_status st = trk__usable(conn, op, err);
    if (st == TRK_OK && !conn->dtls)
        return trk__fail(err, TRK_STATE, "not a dtls connection",
                         "%s: only DTLS connections take this call", op);
    return st;
}

trk_status trk_conn_dtls_handle_timeout(trk_conn *conn, trk_error *err)
{
    trk_status st = need_dtls(conn, "handle_timeout", err);
    if (st != TRK_OK)
        return st;
    st = trk__dtls_on_timer(conn, "handle_timeout", err);
    /* A pair's queue was full: the retransmission is owed and happens later. */
    return st == TRK_WANT_READ || st == TRK_WANT_WRITE ? TRK_OK : st;
}

/* ------------------------------------------------------------------------- */
/* MTU                                                                        */
/* ------------------------------------------------------------------------- */

trk_status trk_conn_set_mtu(trk_conn *conn, long mtu, trk_error *err)
{
    trk_status st = need_dtls(conn, "set_mtu", err);
    if (st != TRK_OK)
        return st;
    long min = (long)DTLS_get_link_min_mtu(conn->ssl);
    if (mtu < min || mtu > DQ_MAX_DATAGRAM)
        return trk__fail(err, TRK_ARG, "invalid mtu",
                         "set_mtu: the link MTU must be from %ld to %d, not %ld", min,
                         DQ_MAX_DATAGRAM, mtu);
    long overhead = BIO_dgram_get_mtu_overhead(SSL_get_wbio(conn->ssl));
    SSL_set_options(conn->ssl, SSL_OP_NO_QUERY_MTU);
    /* link MTU for the next handshake message (dtls1_query_mtu), the payload MTU at
     * once, so that trk_conn_dtls_data_mtu tells the new value */
    if (!DTLS_set_link_mtu(conn->ssl, mtu) || !SSL_set_mtu(conn->ssl, mtu - overhead))
        return trk__fail_openssl(err, TRK_ARG, NULL, "set_mtu: OpenSSL refused %ld",
                                 mtu);
    trk__err_clear();
    return TRK_OK;
}

size_t trk_conn_dtls_data_mtu(const trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL || !conn->dtls)
        return 0;
    size_t n = DTLS_get_data_mtu(conn->ssl);
    trk__err_clear();
    return n;
}
