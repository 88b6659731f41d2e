/*
 * internal.h - what the core's .c files share with each other and nobody else.
 * Shims never include this file.
 */
#ifndef TLSREKEY_INTERNAL_H
#define TLSREKEY_INTERNAL_H

/* poll(), getaddrinfo(), clock_gettime() under -std=c99 too. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "tlsrekey.h"

#include <pthread.h>
#include <stdatomic.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* Empties the thread's OpenSSL error queue. ERR_clear_error wipes all 16 slots
 * (~840 instructions, the largest single cost of a small read or write) even when
 * the queue is empty, as it nearly always is: look first (~200). */
static inline void trk__err_clear(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/*
 * An event callback runs inside an OpenSSL call of the core, whose failure may
 * already be queued (a failed verification, before its alert goes out). What a
 * callback calls must leave that queue alone: events.c marks the queue around the
 * callback (trk__in_event counts the nesting on this thread), and the calls a
 * callback may make (the getters) empty only what lies above the mark.
 */
extern _Thread_local int trk__in_event;

static inline void trk__err_clear_getter(void)
{
    if (trk__in_event > 0) {
        ERR_pop_to_mark();
        ERR_set_mark();
    } else {
        trk__err_clear();
    }
}

/*
 * A server's session id context names the client-certificate check its sessions
 * were made under (verify mode, and whether any certificate was accepted unverified).
 * OpenSSL resumes a session only where the context matches, and a resumed handshake
 * asks for no certificate: so a session is never resumed where the check is
 * stricter, or merely different, than the one that made it (context.c).
 */
void trk__sid_ctx_for(int verify_mode, int accept_any, unsigned char *out, unsigned *len);

struct trk_ctx {
    SSL_CTX *ssl_ctx;
    trk_role role;
    /* The caller's, plus one per connection. Connections of one context live in
     * any threads (tlsrekey.h): taken and dropped atomically. */
    atomic_int refs;
    int check_hostname;
    /* What OpenSSL's callbacks read during handshakes on any thread, while a setter
     * may replace it on another: under `lock`. */
    pthread_mutex_t lock;
    unsigned char *alpn;      /* wire format, for the server's selection callback */
    size_t alpn_len;
    BIO *keylog;              /* append-mode file, or NULL */
    trk_rekey_policy policy;  /* copied into each new connection */
    /* DTLS (dtls.c): a context made by trk_ctx_new_dtls. */
    int dtls;
    int cookie_exchange;      /* servers: HelloVerifyRequest first (default on) */
    unsigned char cookie_secret[32]; /* HMAC key of the cookies, random per context */
    unsigned dtls_timer_us;   /* initial retransmission timeout, 0: OpenSSL's 1 s */
};

typedef enum trk_transport {
    TRK_T_FD = 0,
    TRK_T_MEMORY,
    TRK_T_PAIR
} trk_transport;

/* Per-handshake bookkeeping for counting completed handshakes (see events.c).
 * One byte: _Bool bit-fields. */
typedef struct trk_hs_track {
    _Bool in_handshake : 1;  /* a ClientHello went either way; not yet complete */
    _Bool fin_sent : 1;
    _Bool fin_recv : 1;
    _Bool after_hvr : 1;     /* DTLS: a HelloVerifyRequest went either way; the
                                next ClientHello continues the same handshake */
    _Bool control_seen : 1;  /* a handshake message, alert or CCS went either way
                                since trk__drive began (see there) */
    _Bool reneg_ours : 1;    /* this end asked for the renegotiation scheduled or
                                under way (renegotiate(), the policy); errors say
                                so when the peer refuses it */
    _Bool overdue_told : 1;  /* rekey_overdue was emitted for this key epoch */
} trk_hs_track;

/* TRK_T_FD (TLS): the socket BIO's state (io.c): the records OpenSSL took from
 * the socket (read ahead), and whether the call under way may wait on it. */
typedef struct trk_sock_io {
    uint64_t complete;        /* whole records taken from the socket so far */
    uint16_t left;            /* body bytes of the current record still to come */
    uint8_t hdr;              /* header bytes of the next record seen (0-4) */
    uint8_t len_hi;           /* its length's high byte */
    uint8_t on : 1;           /* the first handshake is done: read-ahead is in use */
    uint8_t lost : 1;         /* the stream did not parse as TLS (read-ahead off) */
    uint8_t big : 1;          /* the last record header seen was of a large record */
    uint8_t ahead : 1;        /* OpenSSL's read-ahead is on now (io.c, sock_read) */
    uint8_t nowait : 1;       /* trk_conn_try_*: never wait on the socket */
    uint8_t dontwait : 1;     /* never block inside OpenSSL (a timeout, or a
                                 renegotiation driven by reading): the core waits
                                 with poll(), the caller's fd flags untouched
                                 (trk__drive) */
    uint8_t notsock : 1;      /* the fd is no socket (a pty): MSG_DONTWAIT fails on it */
    uint8_t hold : 1;         /* the write under way holds back its first small record
                                 (a KeyUpdate) for the next one (io.c, sock_write) */
} trk_sock_io;

/*
 * trk_stats as a connection keeps it, in two parts: the counters every connection
 * moves (below, in struct trk_conn) and those of rarer events (trk_rare_counters, in
 * the extra part, made by the first such event). The fields are trk_stats' own
 * (tlsrekey.h says what each counts; events.c, io.c and policy.c count them) but
 * `renegotiations`, which is always handshakes - 1 once there was one (events.c
 * counts a renegotiation exactly when a handshake after the first completes), so
 * trk_conn_stats derives it.
 */
typedef struct trk_counters {
    uint64_t handshakes;
    uint64_t bytes_written;
    uint64_t bytes_read;
    uint64_t records_written;
    uint64_t records_read;
} trk_counters;

typedef struct trk_rare_counters {
    uint64_t key_updates_sent;
    uint64_t key_updates_received;
    uint64_t key_update_requests_sent;
    uint64_t key_update_requests_received;
    uint64_t automatic_rekeys;
    uint64_t hello_requests_sent;
    uint64_t hello_requests_received;
    uint64_t alerts_sent;
    uint64_t alerts_received;
} trk_rare_counters;

/*
 * What an idle connection over a socket never uses, in a side allocation made on
 * first use (trk__extra): the pair's peer and stash, the DTLS stash, a timeout, a
 * rekey policy other than the default, an event callback, the counters of rare
 * events. With 10k idle connections every byte of struct trk_conn counts
 * (bench/PROPOSALS.md, P6).
 */
/* The largest record the socket BIO holds back: a TLS 1.3 KeyUpdate is 27 bytes
 * with a 16-byte tag (5 header, 5 message, 1 inner type, 16 tag); more room
 * leaves space for record padding. */
#define TRK_HELD_MAX 64

typedef struct trk_conn_extra {
    trk_conn *peer;           /* TRK_T_PAIR: the other end, NULL once it is freed */

    /* TRK_T_PAIR: application data read while moving this end forward on behalf of
     * its peer; returned by the next reads before anything else. (Also the data a
     * TLS 1.2 renegotiation driven by reading meets, on any transport, io.c.) */
    unsigned char *stash;
    size_t stash_len, stash_off, stash_cap;
    /* DTLS pair ends keep datagram boundaries: their stash is a queue instead. */
    struct trk_dgram_queue *dstash;

    double timeout;           /* TRK_T_FD only; TRK_TIMEOUT_NONE (blocking) while a
                                 connection has no extra part */
    double call_deadline;     /* > 0: when the public call under way must end; every
                                 wait inside it (trk__drive) counts towards it */
    trk_rekey_policy policy;  /* in force when trk_conn.own_policy; otherwise the
                                 default (trk__default_policy) is */
    trk_event_fn event_fn;
    void *event_ud;
    trk_rare_counters rare;

    /* TRK_T_FD (TLS): a KeyUpdate record held back by the socket BIO, to go out in
     * one write(2) with the record behind it (io.c, sock_write). */
    uint8_t held_len;
    unsigned char held[TRK_HELD_MAX];

    /* Full duplex (trk_conn_set_wait_hook): an eventfd, made when a read first lets
     * the connection go (-1 until then), that wakes the reads waiting without it;
     * and how many do (changed with __atomic: a read that could not take the
     * connection back leaves without it). */
    int wake_fd;
    int readers_waiting;

    /* The write call left pending (trk_conn.write_pending): its whole length, how
     * much of it went out before the chunk OpenSSL holds, and that chunk's length
     * (a rekey policy writes in chunks). The same call again resumes there. */
    size_t pend_total, pend_done, pend_chunk;

    /* The policy's read_bytes: application bytes read under the peer's current
     * key, and whether the request for its update is out (policy.c). */
    uint64_t read_epoch_bytes;
    _Bool read_rekey_asked;
} trk_conn_extra;

struct trk_conn {
    SSL *ssl;                 /* NULL once closed */
    trk_ctx *ctx;             /* one reference held */
    trk_conn_extra *x;        /* NULL until something needs it (trk__extra) */
    trk_error *fatal;         /* set once a fatal error happened: replayed by every
                                 later call, because OpenSSL may answer the next call
                                 with SSL_ERROR_SYSCALL and errno 0 (OPENSSL-NOTES 16) */
    int fd;                   /* TRK_T_FD: the socket, else -1 */
    uint32_t aead_records;    /* the cipher's AEAD limit, once known; 0 none (at most
                                 2^24 records: RFC 8446 5.5) */
    unsigned char role;       /* a trk_role */
    unsigned char transport;  /* a trk_transport; TRK_T_MEMORY: the SSL's own BIOs are
                                 what feed() fills and drain() empties */
    trk_hs_track hs;

    /* Flags, one bit each: a test or a constant store costs one instruction, as
     * for a byte. */
    _Bool dtls : 1;           /* the context is DTLS: every transport carries
                                 datagrams (dtls.c) */
    _Bool owns_fd : 1;        /* opened by trk_conn_new_connect */
    _Bool write_pending : 1;  /* a write returned WANT_WRITE/WANT_READ and must be
                                 retried before a key update (OPENSSL-NOTES 6) */
    _Bool handshake_done : 1; /* the first handshake completed */
    _Bool sent_shutdown : 1;
    _Bool closed_by_peer : 1;
    _Bool close_notify_received : 1; /* the alert itself, not an EOF taken as one */
    _Bool aead_known : 1;     /* aead_records is set */
    _Bool auto_pending : 1;   /* the scheduled update/renegotiation is the policy's */
    _Bool callback_failed : 1; /* an event callback returned nonzero during this call */
    _Bool own_policy : 1;     /* the rekey policy is x->policy, not the default */

    trk_sock_io sock;         /* TRK_T_FD only */
    trk_counters stats;

    /* Automatic rekeying (policy.c). The epoch is what we sent under the current
     * sending key; events.c starts a new one when a KeyUpdate leaves or a handshake
     * completes. */
    uint64_t epoch_bytes, epoch_records;
    double epoch_start;

    trk_interrupt_fn interrupt_fn;
    void *interrupt_ud;
    trk_wait_hook_fn wait_fn;
    void *wait_ud;
};

/* A TLS 1.2 server writing past its rekey limit (policy.c): takes in what the
 * client sent of its new handshake without waiting, and completes the handshake
 * once it has begun (io.c). */
trk_status trk__take_in_renegotiation(trk_conn *c, const char *op, trk_error *err);
/* Waits until the socket (TRK_T_FD) is readable or `until` (trk__now) passes: 1
 * readable, 0 timed out, -1 errno, -2 interrupted (connection.c). */
int trk__wait_input(trk_conn *c, double until);
/* The rekey_overdue event (events.c). */
void trk__emit_rekey_overdue(trk_conn *c);
/* After a read of n bytes under a policy with read_bytes: 1 when the peer's key has
 * carried enough and an update (or a renegotiation) is now scheduled, for the read
 * to send (policy.c). */
int trk__read_rekey_due(trk_conn *c, size_t n);
/* The peer's sending key changed (events.c): the read count starts anew. */
void trk__read_epoch_reset(trk_conn *c);

/* trk_conn_read's step (io.c). */
int trk__step_read(trk_conn *c, void *arg, size_t *n);

/* A status trk__drive returns only to trk_conn_read: while the read waited without
 * the connection, another call left data in the stash, which comes first. */
#define TRK__STASHED ((trk_status)100)

/* Wakes the reads waiting without the connection (trk_conn_set_wait_hook), if any,
 * after a call that may have changed what they wait for. */
void trk__wake_readers(trk_conn *conn);

/* The extra part of a connection, made (zeroed, no timeout) when first needed;
 * NULL when it cannot be allocated. In connection.c. */
trk_conn_extra *trk__extra(trk_conn *conn);
/* The same for a caller that cannot report a failure (a void setter, OpenSSL's
 * message callback): without it the connection fails, TRK_NOMEM from its next call
 * on, so nothing (a count, a callback) is ever silently lost. */
trk_conn_extra *trk__extra_or_fail(trk_conn *conn);
/* That failure's record: conn->fatal points at it, never freed. */
extern trk_error trk__nomem_fatal;

/* TRK_T_PAIR: the other end, NULL once it is freed (and for other transports). */
static inline trk_conn *trk__peer(const trk_conn *conn)
{
    return conn->x != NULL ? conn->x->peer : NULL;
}

/* ---- error.c ---- */

/* Fills err (if not NULL) with a status and a formatted sentence, no OpenSSL state;
 * clears the OpenSSL error queue. Returns status. */
trk_status trk__fail(trk_error *err, trk_status status, const char *reason,
                     const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* trk__fail for TRK_WANT_READ / TRK_WANT_WRITE, the one failure an event loop meets
 * on nearly every call: "<op>: <the status's message>" put together without printf,
 * and no look at the error queue, which a WANT leaves empty (SSL_get_error answers
 * SSL or SYSCALL whenever something is queued). */
trk_status trk__want(trk_error *err, trk_status status, const char *op);

/* Like trk__fail, but also moves the OpenSSL error queue into err (first library
 * and reason, all lines) and uses OpenSSL's reason when `reason` is NULL. */
trk_status trk__fail_openssl(trk_error *err, trk_status status, const char *reason,
                             const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/*
 * The one place that turns the result of an SSL_* I/O call (handshake, read, write,
 * shutdown) into a status. `ret` is the call's return, `sys_errno` errno right after
 * it. WANT_* are returned without touching err. Fatal outcomes are recorded in
 * conn->fatal. Always leaves the error queue empty.
 */
trk_status trk__ssl_status(trk_conn *conn, int ret, int sys_errno, const char *op,
                           trk_error *err);

/* Makes err the connection's fatal error (the first one stays), replayed by every
 * later call. */
void trk__remember_fatal(trk_conn *conn, const trk_error *err);
/* Copies the remembered fatal error into err and returns its status. */
trk_status trk__replay_fatal(const trk_conn *conn, trk_error *err);

/* Common entry check: closed -> TRK_STATE, fatal -> replay. TRK_OK to go on. */
trk_status trk__usable(trk_conn *conn, const char *op, trk_error *err);

/* ---- events.c ---- */

/* Installs the message callback that keeps conn->stats and raises events. */
void trk__events_attach(trk_conn *conn);
/* The counters of rare events (made on the first; NULL, the connection failed with
 * TRK_NOMEM, when they cannot be: trk__extra_or_fail). */
trk_rare_counters *trk__rare(trk_conn *conn);

/* ---- policy.c ---- */

/* What trk_rekey_policy_default gives; in force unless conn->own_policy. */
extern const trk_rekey_policy trk__default_policy;
static inline const trk_rekey_policy *trk__policy(const trk_conn *conn)
{
    return conn->own_policy ? &conn->x->policy : &trk__default_policy;
}
/* Makes *policy this connection's (conn_new: the context's). 0 when it is not the
 * default and the extra part cannot be allocated. */
int trk__policy_set(trk_conn *conn, const trk_rekey_policy *policy);

/* Starts a new epoch (our sending key just changed). */
void trk__epoch_reset(trk_conn *conn);
/* Whether writes on this connection go through the policy. */
int trk__policy_active(trk_conn *conn);
/* trk_conn_write under a policy: splits the data at thresholds, rekeys between. */
trk_status trk__write_policed(trk_conn *conn, const void *buf, size_t len, size_t *n,
                              trk_error *err);
double trk__now(void);

/* ---- io.c ---- */

/* Attaches a TLS connection to its socket (conn->fd) through the socket BIO (reads
 * ahead once the first handshake is done, while records are small; sends a KeyUpdate
 * with the record behind it); the fd is never closed by it. 0 on allocation failure
 * (the OpenSSL queue may say more). */
int trk__socket_attach(trk_conn *conn);

/* One SSL_write_ex of the whole buffer through the transport, with bookkeeping
 * (write_pending, bytes_written). */
trk_status trk__write_chunk(trk_conn *conn, const void *buf, size_t len, size_t *n,
                            trk_error *err);

/* ---- connection.c ---- */

/* Runs one SSL_* step through the transport: on a pair it moves the peer forward
 * and retries; on a blocking fd it polls and retries. */
typedef int (*trk_ssl_step)(trk_conn *conn, void *arg, size_t *n);
trk_status trk__drive(trk_conn *conn, trk_ssl_step step, void *arg, size_t *n,
                      const char *op, trk_error *err);

/* Appends application data for this end's next reads (they return it first).
 * 0 on allocation failure. */
int trk__stash_put(trk_conn *conn, const void *data, size_t len);
/* Makes room for `extra` more bytes at the stash's end. 0 on allocation failure. */
int trk__stash_reserve(trk_conn *conn, size_t extra);
/* Bytes in the stash (either kind), not yet read. */
size_t trk__stashed(const trk_conn *conn);

/* The negotiated protocol version (TLS1_3_VERSION, ...) or 0 before the handshake. */
int trk__version(const trk_conn *conn);

/* ---- dtls.c ---- */

/* A FIFO of datagrams: the datagram BIO's queues and a DTLS pair end's stash. */
typedef struct trk_dgram {
    struct trk_dgram *next;
    size_t len, off;          /* off: bytes of a stashed datagram already read */
    unsigned char data[];
} trk_dgram;
typedef struct trk_dgram_queue {
    trk_dgram *head, *tail;
    size_t count, bytes;      /* bytes: unread payload of every datagram */
} trk_dgram_queue;
/* Appends a copy; 0 on allocation failure. */
int trk__dq_push(trk_dgram_queue *q, const void *data, size_t len);
/* Moves up to cap bytes of the first datagram into buf. partial: the rest of a
 * longer datagram stays for the next call (a stash); otherwise it is dropped, as
 * recv() drops it. Returns the bytes moved, or -1 when the queue is empty. */
long trk__dq_pop(trk_dgram_queue *q, void *buf, size_t cap, int partial);
void trk__dq_clear(trk_dgram_queue *q);

/* Context setup for DTLS: cookie callbacks and secret, the default versions. */
int trk__dtls_ctx_init(trk_ctx *ctx);
/* Per connection: the retransmission timer callback. */
void trk__dtls_conn_init(trk_conn *conn);
/* What trk_ctx_check_fd asks of a DTLS context's descriptor: a connected UDP
 * socket (TRK_ARG otherwise). */
trk_status trk__dtls_check_fd(int fd, trk_error *err);
/* The BIO of each transport. trk__dtls_attach_fd: a connected UDP socket (TRK_ARG
 * otherwise). trk__dtls_attach_memory: one datagram-queue BIO (feed/drain).
 * trk__dtls_attach_pair: two linked datagram-queue BIOs. */
trk_status trk__dtls_attach_fd(trk_conn *conn, trk_error *err);
trk_status trk__dtls_attach_memory(trk_conn *conn, trk_error *err);
trk_status trk__dtls_attach_pair(trk_conn *c, trk_conn *s, trk_error *err);
/* The memory transport's feed/drain/outgoing/feed_eof, one datagram at a time. */
trk_status trk__dtls_feed(trk_conn *conn, const void *data, size_t len, trk_error *err);
void trk__dtls_feed_eof(trk_conn *conn);
size_t trk__dtls_outgoing(const trk_conn *conn);
trk_status trk__dtls_drain(trk_conn *conn, void *buf, size_t cap, size_t *n,
                           trk_error *err);
/* A pair end reads one record on behalf of its peer into its datagram stash:
 * SSL_read_ex's return. */
int trk__dtls_read_to_stash(trk_conn *p);
/* One timeout for a whole public call, however many steps it takes (a write that
 * first finishes a renegotiation, a write split by a rekey policy): _begin at its
 * start sets the deadline unless one is set (returns whether it did), _end with that
 * answer clears it. */
int trk__call_deadline_begin(trk_conn *conn);
void trk__call_deadline_end(trk_conn *conn, int began);
/* Keeps one datagram for c's next read, behind those it keeps already; 0: no memory. */
int trk__dtls_stash_put(trk_conn *c, const void *data, size_t len);
/* Seconds until the retransmission timer fires: 1 and *seconds (>= 0) while one
 * runs, else 0. */
int trk__dtls_timer(trk_conn *conn, double *seconds);
/* DTLSv1_handle_timeout through error.c. */
trk_status trk__dtls_on_timer(trk_conn *conn, const char *op, trk_error *err);

#endif /* TLSREKEY_INTERNAL_H */
