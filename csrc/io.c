/*
 * io.c - handshake, read, write, pending, shutdown. Each is one SSL_* step handed to
 * trk__drive, which moves the transport and maps the result through error.c.
 */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>

struct io_buf {
    void *data;
    size_t len;
};

static int step_handshake(trk_conn *c, void *arg, size_t *n)
{
    (void)arg, (void)n;
    return SSL_do_handshake(c->ssl);
}

/* Named for trk__drive: the wait of this step alone may let the connection go. */
int trk__step_read(trk_conn *c, void *arg, size_t *n)
{
    struct io_buf *b = arg;
    return SSL_read_ex(c->ssl, b->data, b->len, n);
}

static int step_write(trk_conn *c, void *arg, size_t *n)
{
    struct io_buf *b = arg;
    return SSL_write_ex(c->ssl, b->data, b->len, n);
}

/* SSL_shutdown: 1 done, 0 sent but not yet received; *n carries which. */
static int step_shutdown(trk_conn *c, void *arg, size_t *n)
{
    (void)arg;
    int r = SSL_shutdown(c->ssl);
    if (r < 0)
        return r;
    *n = (size_t)r;
    return 1;
}

/*
 * A TLS 1.2 renegotiation under way (on a client: also one scheduled). The peer may
 * send application data before it sees our ClientHello or while it finishes its
 * side; OpenSSL accepts such data in the middle of a handshake only inside
 * SSL_read (ossl_statem_app_data_allowed), and SSL_write or SSL_do_handshake fail
 * the connection with "unexpected record". So the core drives these handshakes by
 * reading, keeping the data for the next reads (the stash).
 */
static int renegotiating(const trk_conn *c)
{
    if (!c->handshake_done || c->dtls || SSL_version(c->ssl) >= TLS1_3_VERSION)
        return 0;
    if (c->hs.in_handshake)
        return 1;
    /* A server's scheduled request is a HelloRequest only: it writes on meanwhile. */
    return c->role == TRK_CLIENT && SSL_renegotiate_pending(c->ssl);
}

/* What a renegotiation driven by reading keeps of the peer's application data for
 * the caller's next reads (docs/guide.md): past it, the call ends and asks the
 * caller to read first. Without a cap a peer that streams data and never completes
 * the handshake it asked for (a HelloRequest, then data) makes one write() buffer
 * without limit. */
#define RENEGOTIATION_STASH_MAX (1u << 20)

/* One SSL_read into the stash; success once the handshake has completed too. */
static int step_renegotiate_by_reading(trk_conn *c, void *arg, size_t *n)
{
    (void)arg;
    size_t got = 0;
    trk_conn_extra *x = c->x; /* made by trk__stash_reserve */
    int r = SSL_read_ex(c->ssl, x->stash + x->stash_len, x->stash_cap - x->stash_len,
                        &got);
    if (r > 0)
        x->stash_len += got;
    *n = got;
    if (r <= 0 && !renegotiating(c) && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
        return 1; /* the handshake is done; no application data is owed to us */
    return r;
}

/* One SSL_read of a renegotiation driven by reading, its data into the stash (up
 * to RENEGOTIATION_STASH_MAX: past it the caller must read first). A failed event
 * callback is noted in *callback_failed and does not stop it. */
static trk_status read_into_stash(trk_conn *c, const char *op, size_t *n,
                                  int *callback_failed, trk_error *err)
{
    if (trk__stashed(c) >= RENEGOTIATION_STASH_MAX)
        return trk__fail(err, TRK_STATE, "read first",
                         "%s: the peer sent %zu bytes of data during a renegotiation "
                         "that needs reading to complete; read them first",
                         op, trk__stashed(c));
    if (!trk__stash_reserve(c, 16384))
        return trk__fail(err, TRK_NOMEM, "out of memory",
                         "%s: cannot keep data read during a renegotiation", op);
    trk_status st = trk__drive(c, step_renegotiate_by_reading, NULL, n, op, err);
    if (st == TRK_CALLBACK) {
        *callback_failed = 1;
        st = TRK_OK;
    }
    return st;
}

/* Returns TRK_OK once the handshake is done. An event callback that failed on the
 * way does not stop it: the failure stays armed (callback_failed) for the caller's
 * own step, so a write still writes before it reports the callback. */
static trk_status finish_renegotiation(trk_conn *c, const char *op, trk_error *err)
{
    trk_status st = TRK_OK;
    int callback_failed = 0;
    /* On a blocking socket SSL_read goes on to wait for application data once the
     * handshake is done: it must not block for the while (the core's wait loop polls
     * instead). */
    unsigned dontwait = c->sock.dontwait;
    c->sock.dontwait = 1;
    /* Without AUTO_RETRY SSL_read comes back after each handshake record, so the
     * loop can stop when the handshake is done instead of waiting for data. */
    SSL_clear_mode(c->ssl, SSL_MODE_AUTO_RETRY);
    while (st == TRK_OK && renegotiating(c)) {
        size_t n = 0;
        st = read_into_stash(c, op, &n, &callback_failed, err);
    }
    if (c->ssl != NULL)
        SSL_set_mode(c->ssl, SSL_MODE_AUTO_RETRY);
    c->sock.dontwait = dontwait & 1;
    if (callback_failed)
        c->callback_failed = 1;
    return st;
}

trk_status trk__take_in_renegotiation(trk_conn *c, const char *op, trk_error *err)
{
    trk_status st = TRK_OK;
    if (!renegotiating(c)) {
        /* Without AUTO_RETRY SSL_read stops after the ClientHello; without waiting
         * (nowait) it stops when nothing more has arrived. The client's data read
         * on the way is kept for the caller's reads. */
        unsigned nowait = c->sock.nowait;
        int callback_failed = 0;
        c->sock.nowait = 1;
        SSL_clear_mode(c->ssl, SSL_MODE_AUTO_RETRY);
        for (;;) {
            size_t n = 0;
            st = read_into_stash(c, op, &n, &callback_failed, err);
            if (st != TRK_OK || n == 0 || renegotiating(c))
                break;
        }
        if (c->ssl != NULL)
            SSL_set_mode(c->ssl, SSL_MODE_AUTO_RETRY);
        c->sock.nowait = nowait & 1;
        if (st == TRK_WANT_READ || st == TRK_WANT_WRITE)
            st = TRK_OK;
        if (callback_failed)
            c->callback_failed = 1;
    }
    if (st == TRK_OK && renegotiating(c))
        st = finish_renegotiation(c, op, err);
    if (st == TRK_OK && trk__stashed(c) > 0)
        trk__wake_readers(c);
    return st;
}

/* After finish_renegotiation, for calls that have no step of their own left. */
static trk_status report_callback(trk_conn *c, const char *op, trk_error *err)
{
    if (!c->callback_failed)
        return TRK_OK;
    c->callback_failed = 0;
    return trk__fail(err, TRK_CALLBACK, "callback failed", "%s: an event callback failed",
                     op);
}

static trk_status do_handshake_call(trk_conn *conn, trk_error *err)
{
    trk_status st = trk__usable(conn, "handshake", err);
    if (st != TRK_OK)
        return st;
    if (renegotiating(conn)) {
        st = finish_renegotiation(conn, "handshake", err);
        return st == TRK_OK ? report_callback(conn, "handshake", err) : st;
    }
    size_t n = 0;
    return trk__drive(conn, step_handshake, NULL, &n, "handshake", err);
}

trk_status trk_conn_do_handshake(trk_conn *conn, trk_error *err)
{
    int began = trk__call_deadline_begin(conn);
    trk_status st = do_handshake_call(conn, err);
    trk__call_deadline_end(conn, began);
    if (conn != NULL) /* a renegotiation it drove may have stashed data */
        trk__wake_readers(conn);
    return st;
}

/* A pair end keeps application data read on behalf of its peer; it comes first. */
static size_t take_stash(trk_conn *conn, void *buf, size_t cap)
{
    trk_conn_extra *c = conn->x;
    if (c == NULL)
        return 0;
    if (c->dstash != NULL) { /* DTLS: one datagram (the rest of it next time) */
        long k = trk__dq_pop(c->dstash, buf, cap, 1);
        return k > 0 ? (size_t)k : 0;
    }
    size_t avail = c->stash_len - c->stash_off;
    if (avail == 0)
        return 0;
    size_t k = avail < cap ? avail : cap;
    memcpy(buf, c->stash + c->stash_off, k);
    c->stash_off += k;
    if (c->stash_off == c->stash_len)
        c->stash_off = c->stash_len = 0;
    return k;
}

/* The update (or renegotiation) the policy's read_bytes asked for goes out from
 * the read that counted the bytes: a program that only reads would never send it.
 * Without waiting: what cannot leave now leaves with the next call; a failure is
 * the connection's (remembered, reported by the next call), not this read's,
 * whose data is returned. Returns 1 when an event callback failed on the way (the
 * read reports it, its data kept for the next read). */
static int send_read_rekey(trk_conn *conn)
{
    trk_error scratch;
    size_t n = 0;
    unsigned nowait = conn->sock.nowait;
    conn->sock.nowait = 1;
    trk_status st = trk__drive(conn, step_handshake, NULL, &n, "read", &scratch);
    conn->sock.nowait = nowait & 1;
    trk__err_clear();
    return st == TRK_CALLBACK;
}

trk_status trk_conn_read(trk_conn *conn, void *buf, size_t cap, size_t *n,
                         trk_error *err)
{
    *n = 0;
    if (cap == 0) /* as read(2), io and socket: nothing asked, nothing done */
        return trk__usable(conn, "read", err);
    if (buf == NULL)
        return trk__fail(err, TRK_ARG, "invalid buffer", "read: no buffer");
    if (conn != NULL && conn->ssl != NULL && (*n = take_stash(conn, buf, cap)) > 0) {
        trk__err_clear();
        conn->stats.bytes_read += *n;
        if (trk__stashed(conn) > 0) /* what is left is for a read waiting meanwhile */
            trk__wake_readers(conn);
        return TRK_OK;
    }
    trk_status st = trk__usable(conn, "read", err);
    if (st != TRK_OK)
        return st;
    struct io_buf b = {buf, cap};
    st = trk__drive(conn, trk__step_read, &b, n, "read", err);
    if (st == TRK__STASHED) {
        *n = take_stash(conn, buf, cap);
        st = TRK_OK;
    }
    if (st == TRK_OK && conn->own_policy && trk__read_rekey_due(conn, *n) &&
        send_read_rekey(conn))
        st = trk__fail(err, TRK_CALLBACK, "callback failed", "read: an event callback failed");
    if (st == TRK_OK) {
        conn->stats.bytes_read += *n;
    } else {
        /* An event callback failed during a read that got data: the call reports the
         * failure and the data waits for the next read, never lost. */
        /* (DTLS: as the datagram it was, where a DTLS end keeps what it has) */
        if (st == TRK_CALLBACK && *n > 0 &&
            !(conn->dtls ? trk__dtls_stash_put(conn, buf, *n) : trk__stash_put(conn, buf, *n)))
            st = trk__fail(err, TRK_NOMEM, "out of memory",
                           "read: cannot keep the data read");
        *n = 0;
    }
    return st;
}

trk_status trk__write_chunk(trk_conn *conn, const void *buf, size_t len, size_t *n,
                            trk_error *err)
{
    static const char nothing[1];
    struct io_buf b = {(void *)(buf != NULL ? buf : nothing), len};
    /* A key update scheduled for this write (by key_update, the policy or the peer's
     * request) is a KeyUpdate record and then the data's first record: the socket
     * BIO holds the first back and sends the two in one write(2) (bench W3: the
     * peer then wakes once per update, not twice). Without data to follow nothing
     * is held, and a write with a record of its own pending sends that one first. */
    conn->sock.hold = len > 0 && !conn->write_pending && conn->transport == TRK_T_FD &&
                      !conn->dtls &&
                      SSL_get_key_update_type(conn->ssl) != SSL_KEY_UPDATE_NONE &&
                      trk__extra(conn) != NULL;
    trk_status st = trk__drive(conn, step_write, &b, n, "write", err);
    conn->sock.hold = 0;
    /* OpenSSL returns success only after writing the data, which took any held
     * record with it; a failed write leaves it held in front of the retry. */
    assert(st != TRK_OK || conn->x == NULL || conn->x->held_len == 0);
    /* TRK_CALLBACK after the data went out (an event callback failed) counts as
     * written; an interrupted wait (also TRK_CALLBACK) wrote nothing yet. */
    if (st == TRK_OK || (st == TRK_CALLBACK && *n == len)) {
        conn->write_pending = 0;
        conn->stats.bytes_written += *n;
    } else {
        if (st == TRK_WANT_READ || st == TRK_WANT_WRITE || st == TRK_TIMEOUT ||
            st == TRK_CALLBACK)
            conn->write_pending = 1;
        *n = 0;
    }
    return st;
}

static trk_status write_call(trk_conn *conn, const void *buf, size_t len, size_t *n,
                             trk_error *err)
{
    *n = 0;
    trk_status st = trk__usable(conn, "write", err);
    if (st != TRK_OK)
        return st;
    if (buf == NULL && len > 0)
        return trk__fail(err, TRK_ARG, "invalid buffer", "write: no data buffer");
    if (conn->sent_shutdown)
        return trk__fail(err, TRK_STATE, "protocol is shutdown",
                         "write: the connection was shut down (close_notify sent)");
    if (conn->dtls && len > 16384)
        /* OpenSSL refuses too ("dtls message too big"), but through SSL_ERROR_SSL,
         * which would look fatal: one write is one record is one datagram. */
        return trk__fail(err, TRK_ARG, "dtls message too big",
                         "write: a DTLS datagram carries at most 16384 bytes, not %zu",
                         len);
    if (conn->transport == TRK_T_PAIR && trk__peer(conn) == NULL)
        return trk__fail(err, TRK_SYSCALL, "broken pipe",
                         "write: the other end of this pair was freed");
    if (conn->dtls && len == 0) {
        /* OpenSSL's DTLS write of nothing sends nothing and reports failure; what a
         * zero-length write owes on DTLS is a scheduled renegotiation. */
        if (!SSL_in_init(conn->ssl) && !SSL_renegotiate_pending(conn->ssl))
            return TRK_OK;
        return trk_conn_do_handshake(conn, err);
    }
    /* OpenSSL wants a pending write retried with the same data, and takes anything
     * else for a fatal "bad length"/"bad write retry"; the core knows the length
     * (a second coroutine's write, a write("") after a timeout). */
    if (conn->write_pending && conn->x != NULL && len != conn->x->pend_total)
        return trk__fail(err, TRK_STATE, "write pending",
                         "write: a write of %zu bytes is pending (it met want_write, "
                         "want_read, a timeout or a signal); call write again with the "
                         "same data to finish it first, not %zu bytes",
                         conn->x->pend_total, len);
    /* A pending write goes first: OpenSSL holds part of its record already. */
    if (!conn->write_pending && renegotiating(conn) &&
        (st = finish_renegotiation(conn, "write", err)) != TRK_OK)
        return st;
    if (trk__policy_active(conn))
        st = trk__write_policed(conn, buf, len, n, err);
    else if ((st = trk__write_chunk(conn, buf, len, n, err)) != TRK_OK &&
             conn->write_pending && trk__extra(conn) != NULL) {
        conn->x->pend_done = 0;
        conn->x->pend_chunk = len;
    }
    if (conn->write_pending && conn->x != NULL)
        conn->x->pend_total = len;
    return st;
}

trk_status trk_conn_write(trk_conn *conn, const void *buf, size_t len, size_t *n,
                          trk_error *err)
{
    int began = trk__call_deadline_begin(conn);
    trk_status st = write_call(conn, buf, len, n, err);
    trk__call_deadline_end(conn, began);
    /* A TLS 1.2 renegotiation it drove may have stashed the peer's data. */
    if (conn != NULL && trk__stashed(conn) > 0)
        trk__wake_readers(conn);
    return st;
}

/*
 * Read-ahead on sockets. Without it OpenSSL takes each record from a socket in two
 * read(2)s, its header and then its body; with it one read(2) takes whatever has
 * arrived, a 64-byte message or a KeyUpdate and the data behind it (bench/
 * PROPOSALS.md, P4). But then whole records can wait inside OpenSSL that the socket
 * no longer shows, and a caller who polls the socket whenever pending() says 0 would
 * wait for data that is already here. SSL_has_pending cannot tell such a record from
 * part of one (the rest of which will make the socket readable), so the socket BIO
 * below follows the record boundaries in the bytes OpenSSL takes from the socket,
 * and the message callback counts the record headers OpenSSL has parsed
 * (records_read): a whole record whose header is not parsed yet is waiting, and
 * pending() reports it.
 */
/*
 * Read-ahead pays for small records (one read(2) per message instead of two, bench
 * W2) and costs for large ones: taking a 16 KiB record and the start of the next
 * in one read(2) measured slower per byte than C's header-then-body reads. So
 * OpenSSL reads ahead only while the records coming in are small: the last record
 * header the scan saw decides (bench W1 over a socketpair, 15 rounds of same-round
 * ratios to C, reading ahead always -> this: Python 0.886 -> 0.930, Lua 0.888 ->
 * 0.958; W2 unchanged). Records already read ahead are counted by the scan either
 * way; the first large record after small ones may come with what follows it.
 */
#define BIG_RECORD 4096

/*
 * OpenSSL 3.2 and later apply SSL_set_read_ahead to the record layer in use at once
 * (its set_options), and a record layer that had read ahead and is then switched
 * off loses its place in the stream at the next key change: the records after a
 * KeyUpdate come out as "bad record type", or whole records stay hidden from
 * pending(). Measured on 3.5 with tests/python/test_stream_integrity.py: every
 * TLS 1.3 run fails when read-ahead may be switched off after the handshake, none
 * when it is only ever switched on. So from 3.2 on read-ahead, once on, stays on,
 * large records included (bench/README.md says what that costs); before 3.2 the
 * setting takes effect only at the next record header and may follow the records.
 */
static int read_ahead_follows; /* set with the socket BIO method, once */

static void scan_records(trk_sock_io *s, const unsigned char *p, size_t n)
{
    while (n > 0 && !s->lost) {
        if (s->left > 0) {
            size_t k = n < s->left ? n : s->left;
            s->left = (uint16_t)(s->left - k);
            p += k;
            n -= k;
            s->complete += s->left == 0;
            continue;
        }
        unsigned char byte = *p++;
        n--;
        switch (s->hdr++) {
        case 0: /* a content type, 20-25 (IANA TLS ContentType); anything else is
                   not TLS records (an SSLv2-format ClientHello): stop following */
            s->lost = byte < SSL3_RT_CHANGE_CIPHER_SPEC || byte > 25;
            break;
        case 3:
            s->len_hi = byte;
            break;
        case 4:
            s->hdr = 0;
            s->left = (uint16_t)(s->len_hi << 8 | byte);
            s->complete += s->left == 0;
            s->big = s->left >= BIG_RECORD;
            break;
        default:
            break;
        }
    }
}

/*
 * The socket BIO: OpenSSL's own (read(2)/write(2) on the fd, the same retry and EOF
 * rules, never closing the fd) plus the record scan on what it reads. A BIO of our
 * own rather than a callback on OpenSSL's: OpenSSL calls BIO_ctrl on the socket a
 * dozen times per record, and a callback runs twice for each (+1.2k instructions
 * per round trip, measured).
 */
static BIO_METHOD *sock_method;
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;

/* A call that must not block (a try call, a timeout: dont_block) on a blocking
 * socket must not wait in the kernel either: MSG_DONTWAIT, which leaves the caller's
 * fd flags alone. An fd that is no socket (a pty) takes no MSG_DONTWAIT: trk__drive
 * makes it non-blocking for such a step (trk_conn_new_fd found it out; should
 * ENOTSOCK come first here, the connection's calls go the plain way from then on,
 * trk_conn_may_block says so). On a pty that can block all the same, the step says
 * "would block" and the caller goes the waiting way. Returns 1 when plain I/O is
 * safe now. */
static int notsock_plain(trk_conn *c)
{
    c->sock.notsock = 1;
    int fl = fcntl(c->fd, F_GETFL);
    if (fl != -1 && (fl & O_NONBLOCK))
        return 1;
    errno = EAGAIN;
    return 0;
}

static inline int dont_block(const trk_conn *c)
{
    return c->sock.nowait | c->sock.dontwait;
}

static int nowait_io(trk_conn *c, void *buf, int len, int writing)
{
    ssize_t r;
    if (!c->sock.notsock) {
        r = writing ? send(c->fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL)
                    : recv(c->fd, buf, (size_t)len, MSG_DONTWAIT);
        if (r >= 0 || errno != ENOTSOCK)
            return (int)r;
    }
    if (!notsock_plain(c))
        return -1;
    r = writing ? write(c->fd, buf, (size_t)len) : read(c->fd, buf, (size_t)len);
    return (int)r;
}

/* A socket is written with MSG_NOSIGNAL: a peer that closed makes the write fail
 * with EPIPE, a "syscall" error, where write(2) would raise SIGPIPE, which kills a
 * process that does not ignore it (lua5.4 does not, and pcall cannot catch it). An
 * fd that is no socket (a pty) is written with write(2). */
static int plain_write(trk_conn *c, const char *in, int inl)
{
    if (!c->sock.notsock) {
        ssize_t r = send(c->fd, in, (size_t)inl, MSG_NOSIGNAL);
        if (r >= 0 || errno != ENOTSOCK)
            return (int)r;
        c->sock.notsock = 1;
    }
    return (int)write(c->fd, in, (size_t)inl);
}

static int sock_read(BIO *b, char *out, int outl)
{
    trk_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (out == NULL || outl <= 0)
        return 0;
    errno = 0;
    int r = dont_block(c) ? nowait_io(c, out, outl, 0) : (int)read(c->fd, out, (size_t)outl);
    if (r > 0) {
        trk_sock_io *s = &c->sock;
        scan_records(s, (const unsigned char *)out, (size_t)r);
        /* lost: from now on OpenSSL takes one record at a time */
        unsigned ahead = s->on && !s->lost && (!s->big || !read_ahead_follows);
        if (ahead != s->ahead) {
            SSL_set_read_ahead(c->ssl, (int)ahead);
            s->ahead = ahead & 1;
        }
    } else if (BIO_sock_should_retry(r))
        BIO_set_retry_read(b);
    else if (r == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* OpenSSL tells EOF from error by it */
    return r;
}

/*
 * A KeyUpdate held back (trk__write_chunk) goes out in front of the next record, in
 * one writev: the peer wakes once for both, and over TCP they share a segment.
 * Returns how much of `in` went out, or -1 with the retry flag set, as sock_write.
 * Held bytes that went out leave the hold; if only part of them did, the rest stays
 * first in line and `in` is retried behind it, as OpenSSL retries any write.
 */
static int write_held(trk_conn *c, BIO *b, const char *in, int inl)
{
    trk_conn_extra *x = c->x;
    size_t held = x->held_len;
    struct iovec iov[2] = {{x->held, held}, {(void *)in, (size_t)inl}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    errno = 0;
    ssize_t r;
    if (c->sock.notsock) {
        r = dont_block(c) && !notsock_plain(c) ? -1 : writev(c->fd, iov, 2);
    } else {
        r = sendmsg(c->fd, &msg, MSG_NOSIGNAL | (dont_block(c) ? MSG_DONTWAIT : 0));
        if (r < 0 && errno == ENOTSOCK) { /* as nowait_io */
            c->sock.notsock = 1;
            r = dont_block(c) && !notsock_plain(c) ? -1 : writev(c->fd, iov, 2);
        }
    }
    if (r < 0) {
        if (BIO_sock_should_retry(-1))
            BIO_set_retry_write(b);
        return -1;
    }
    if ((size_t)r < held) {
        memmove(x->held, x->held + r, held - (size_t)r);
        x->held_len = (uint8_t)(held - (size_t)r);
        BIO_set_retry_write(b);
        return -1;
    }
    x->held_len = 0;
    if ((size_t)r == held) { /* none of `in` yet: a retry, as a write that would block */
        BIO_set_retry_write(b);
        return -1;
    }
    return (int)((size_t)r - held);
}

static int sock_write(BIO *b, const char *in, int inl)
{
    trk_conn *c = BIO_get_data(b);
    trk_conn_extra *x = c->x;
    BIO_clear_retry_flags(b);
    if (in == NULL || inl <= 0)
        return inl == 0 ? 0 : -1;
    if (x != NULL && x->held_len > 0)
        return write_held(c, b, in, inl);
    if (c->sock.hold) {
        c->sock.hold = 0; /* the first record only: the KeyUpdate */
        if (x != NULL && inl <= TRK_HELD_MAX) {
            memcpy(x->held, in, (size_t)inl);
            x->held_len = (uint8_t)inl;
            return inl;
        }
    }
    errno = 0;
    int r = dont_block(c) ? nowait_io(c, (void *)in, inl, 1) : plain_write(c, in, inl);
    if (r <= 0 && BIO_sock_should_retry(r))
        BIO_set_retry_write(b);
    return r;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    trk_conn *c = BIO_get_data(b);
    (void)num;
    switch (cmd) {
    case BIO_C_GET_FD: /* SSL_get_fd */
        if (ptr != NULL)
            *(int *)ptr = c->fd;
        return c->fd;
    case BIO_CTRL_GET_CLOSE:
        return BIO_NOCLOSE;
    case BIO_CTRL_SET_CLOSE:
    case BIO_CTRL_DUP:
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    default:
        return 0; /* kTLS and the rest: not offered */
    }
}

static void sock_method_init(void)
{
    read_ahead_follows = OpenSSL_version_num() < 0x30200000L;
    int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
    BIO_METHOD *m = BIO_meth_new(type, "tlsrekey socket");
    if (m == NULL)
        return;
    if (!BIO_meth_set_write(m, sock_write) || !BIO_meth_set_read(m, sock_read) ||
        !BIO_meth_set_ctrl(m, sock_ctrl)) {
        BIO_meth_free(m);
        return;
    }
    sock_method = m;
}

#if defined(__GNUC__)
/* Made once per process, freed with the shared object (as dtls.c's method). */
__attribute__((destructor)) static void sock_method_free(void)
{
    BIO_meth_free(sock_method);
    sock_method = NULL;
}
#endif

int trk__socket_attach(trk_conn *conn)
{
    pthread_once(&sock_once, sock_method_init);
    BIO *b = sock_method != NULL ? BIO_new(sock_method) : NULL;
    if (b == NULL)
        return 0;
    BIO_set_data(b, conn);
    BIO_set_init(b, 1);
    SSL_set_bio(conn->ssl, b, b);
    /* Read-ahead starts when the first handshake completes (events.c): a client
     * that read its handshake ahead kept ~310 bytes more per idle connection
     * (bench MEM, socket), and the handshake gains little from it. */
    conn->sock.on = 0;
    return 1;
}

/* A whole record OpenSSL has read ahead and not yet looked at. A record of which
 * only part is here is not counted: the rest is on its way and the socket will show
 * it. Should the count ever be off, a stream that ends at a record boundary with
 * bytes buffered still counts, and a stream that did not parse falls back to
 * SSL_has_pending alone (a wasted read at worst, never a wait on data at hand). */
static int record_waiting(const trk_conn *c)
{
    const trk_sock_io *s = &c->sock;
    if (!s->on || !SSL_has_pending(c->ssl))
        return 0;
    return s->lost || (s->hdr == 0 && s->left == 0) || s->complete > c->stats.records_read;
}

/* Below this, one record's crypto costs less than a GIL round trip (bench/). */
#define SMALL_IO 4096

static int busy_with_handshake(const trk_conn *c)
{
    return !c->handshake_done || SSL_in_init(c->ssl) || SSL_renegotiate_pending(c->ssl) ||
           SSL_get_key_update_type(c->ssl) != SSL_KEY_UPDATE_NONE;
}

int trk_conn_may_block(const trk_conn *conn, size_t len)
{
    if (conn == NULL || conn->ssl == NULL)
        return 0;
    if (len >= SMALL_IO || busy_with_handshake(conn))
        return TRK_MAY_BLOCK_WORK;
    if (conn->transport == TRK_T_FD) /* DTLS: its datagram BIO cannot try */
        return conn->sock.on && !conn->sock.notsock ? TRK_MAY_BLOCK_SOCKET
                                                    : TRK_MAY_BLOCK_WORK;
    /* a pair end moves its peer along: the peer's handshake counts too */
    const trk_conn *peer = trk__peer(conn);
    return peer != NULL && peer->ssl != NULL && busy_with_handshake(peer)
               ? TRK_MAY_BLOCK_WORK
               : 0;
}

/* The try calls: the same call with the socket BIO and trk__drive told not to wait.
 * Where nothing can try (DTLS over a socket that may block), nothing is done. */
static int cannot_try(const trk_conn *c)
{
    return c != NULL && c->ssl != NULL && c->transport == TRK_T_FD && !c->sock.on &&
           trk_conn_timeout(c) != 0;
}

/* One try call: `want` says which (TRK_WANT_READ: read into rbuf, else write wbuf). */
static trk_status try_io(trk_conn *conn, trk_status want, void *rbuf, const void *wbuf,
                         size_t len, size_t *n, trk_error *err)
{
    if (cannot_try(conn)) {
        *n = 0;
        trk__err_clear();
        return trk__want(err, want, want == TRK_WANT_READ ? "read" : "write");
    }
    if (conn != NULL)
        conn->sock.nowait = 1;
    trk_status st = want == TRK_WANT_READ ? trk_conn_read(conn, rbuf, len, n, err)
                                          : trk_conn_write(conn, wbuf, len, n, err);
    if (conn != NULL)
        conn->sock.nowait = 0;
    return st;
}

trk_status trk_conn_try_read(trk_conn *conn, void *buf, size_t cap, size_t *n,
                             trk_error *err)
{
    return try_io(conn, TRK_WANT_READ, buf, NULL, cap, n, err);
}

trk_status trk_conn_try_write(trk_conn *conn, const void *buf, size_t len, size_t *n,
                              trk_error *err)
{
    return try_io(conn, TRK_WANT_WRITE, NULL, buf, len, n, err);
}

size_t trk_conn_pending(const trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL)
        return 0;
    size_t n = trk__stashed(conn) + (size_t)SSL_pending(conn->ssl);
    /* a whole record read ahead and not yet decrypted: at least a byte, most likely */
    return n > 0 ? n : (size_t)record_waiting(conn);
}

size_t trk_conn_read_size(const trk_conn *conn, size_t cap)
{
    if (cap <= TRK_READ_CHUNK)
        return cap;
    size_t n = trk_conn_pending(conn);
    if (n < TRK_READ_CHUNK)
        n = TRK_READ_CHUNK;
    return n < cap ? n : cap;
}

static trk_status shutdown_call(trk_conn *conn, int *complete, trk_error *err)
{
    *complete = 0;
    trk_status st = trk__usable(conn, "shutdown", err);
    if (st != TRK_OK)
        return st;
    if (!conn->handshake_done)
        return trk__fail(err, TRK_STATE, "shutdown while in init",
                         "shutdown: the handshake has not completed");
    size_t n = 0;
    /* A scheduled key update or an unfinished renegotiation keeps OpenSSL "in init",
     * where SSL_shutdown refuses ("shutdown while in init"): finish it first. */
    if (renegotiating(conn) && !conn->sent_shutdown) {
        st = finish_renegotiation(conn, "shutdown", err);
        if (st != TRK_OK)
            return st;
    } else if (SSL_in_init(conn->ssl) && !conn->sent_shutdown) {
        st = trk__drive(conn, step_handshake, NULL, &n, "shutdown", err);
        if (st != TRK_OK)
            return st;
    }
    st = trk__drive(conn, step_shutdown, NULL, &n, "shutdown", err);
    if (st == TRK_OK || st == TRK_CALLBACK) {
        conn->sent_shutdown = 1;
        *complete = n == 1;
    } else if (st == TRK_WANT_READ && conn->sent_shutdown) {
        /* close_notify went out earlier; the peer's has not arrived yet. */
        st = TRK_OK;
    }
    return st;
}

trk_status trk_conn_shutdown(trk_conn *conn, int *complete, trk_error *err)
{
    int began = trk__call_deadline_begin(conn);
    trk_status st = shutdown_call(conn, complete, err);
    trk__call_deadline_end(conn, began);
    if (conn != NULL) /* it may have read the peer's close_notify, or stashed data */
        trk__wake_readers(conn);
    return st;
}
