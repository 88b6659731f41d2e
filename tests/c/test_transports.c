/* Socket, memory and pair transports: handshakes, data, timeouts, shutdown, close. */
#include "harness.h"

#include <openssl/crypto.h>
#include "util.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* The write(2)s made on one fd, counted: this program's own write and writev (and
 * send/sendmsg, which the try calls use) stand in for libc's for every caller in
 * it, OpenSSL and the core included, and pass each call on to the kernel. */
/* Other threads (an echo server) write too: the count is atomic. */
static int watched_fd = -1, writes_seen;

static void count_write(int fd)
{
    if (fd == __atomic_load_n(&watched_fd, __ATOMIC_RELAXED))
        __atomic_fetch_add(&writes_seen, 1, __ATOMIC_RELAXED);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    count_write(fd);
    return syscall(SYS_write, fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    count_write(fd);
    return syscall(SYS_writev, fd, iov, cnt);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    count_write(fd);
    return syscall(SYS_sendto, fd, buf, n, flags, NULL, 0);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    count_write(fd);
    return syscall(SYS_sendmsg, fd, msg, flags);
}

/* Moves bytes between two memory connections; returns bytes moved. */
static size_t shuttle(trk_conn *a, trk_conn *b)
{
    char buf[65536];
    size_t n, moved = 0;
    trk_error e;
    trk_conn *ends[2][2] = {{a, b}, {b, a}};
    for (int i = 0; i < 2; i++)
        while (trk_conn_drain(ends[i][0], buf, sizeof buf, &n, &e) == TRK_OK && n > 0) {
            trk_conn_feed(ends[i][1], buf, n, &e);
            moved += n;
        }
    return moved;
}

TEST(test_memory_transport_handshake_and_key_update)
{
    trk_ctx *cctx, *sctx;
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    char buf[64];
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    REQUIRE(trk_conn_new_memory(cctx, "localhost", &c, &e) == TRK_OK);
    REQUIRE(trk_conn_new_memory(sctx, NULL, &s, &e) == TRK_OK);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
    trk_status cs = TRK_WANT_READ, ss = TRK_WANT_READ;
    for (int i = 0; i < 10 && (cs != TRK_OK || ss != TRK_OK); i++) {
        cs = trk_conn_do_handshake(c, &e);
        shuttle(c, s);
        ss = trk_conn_do_handshake(s, &e);
        shuttle(c, s);
    }
    CHECK(cs == TRK_OK && ss == TRK_OK);
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &e), TRK_WANT_READ, &e);
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_REQUESTED, 0, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_write(c, "ping", 4, &n, &e), TRK_OK, &e);
    CHECK(trk_conn_outgoing(c) > 0);
    shuttle(c, s);
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(u_stats(s).key_update_requests_received == 1);
    CHECK_STATUS(trk_conn_write(s, "pong", 4, &n, &e), TRK_OK, &e);
    shuttle(c, s);
    CHECK_STATUS(trk_conn_read(c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(u_stats(c).key_updates_received == 1);
    /* EOF without close_notify is a syscall error */
    CHECK_STATUS(trk_conn_feed_eof(s, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &e), TRK_SYSCALL, &e);
    CHECK(strstr(e.message, "unexpected EOF") != NULL);
    CHECK_STATUS(trk_conn_feed(s, "x", 1, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &e), TRK_SYSCALL, &e);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_memory_calls_on_other_transports_are_state_errors)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    char buf[4];
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_feed(c, "x", 1, &e), TRK_STATE, &e);
    CHECK_STATUS(trk_conn_drain(c, buf, sizeof buf, &n, &e), TRK_STATE, &e);
    CHECK(trk_conn_outgoing(c) == 0);
    trk_conn_free(c);
    trk_conn_free(s);
}

struct server_arg {
    trk_ctx *ctx;
    int fd;
    int keyupdates;
    char got[64];
};

static void *echo_server(void *p)
{
    struct server_arg *a = p;
    trk_conn *s;
    trk_error e;
    size_t n;
    char buf[64];
    if (trk_conn_new_fd(a->ctx, a->fd, 5.0, NULL, &s, &e) != TRK_OK)
        return NULL;
    if (trk_conn_read(s, buf, sizeof buf, &n, &e) == TRK_OK) {
        memcpy(a->got, buf, n);
        trk_conn_write(s, buf, n, &n, &e);
    }
    int done;
    if (trk_conn_read(s, buf, sizeof buf, &n, &e) == TRK_CLOSED)
        trk_conn_shutdown(s, &done, &e);
    trk_stats st;
    trk_conn_stats(s, &st);
    a->keyupdates = (int)st.key_updates_received;
    trk_conn_free(s);
    return NULL;
}

TEST(test_socket_blocking_with_timeout)
{
    trk_ctx *cctx, *sctx;
    trk_conn *c;
    trk_error e;
    size_t n;
    int sv[2];
    char buf[64];
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct server_arg a = {.ctx = sctx, .fd = sv[1]};
    pthread_t t;
    pthread_create(&t, NULL, echo_server, &a);
    CHECK_STATUS(trk_conn_new_fd(cctx, sv[0], 5.0, "localhost", &c, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_NOT_REQUESTED, 0, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_write(c, "echo me", 7, &n, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_read(c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 7 && memcmp(buf, "echo me", 7) == 0);
    int complete = -1;
    CHECK_STATUS(trk_conn_shutdown(c, &complete, &e), TRK_OK, &e);
    CHECK(complete == 0);
    CHECK_STATUS(trk_conn_shutdown(c, &complete, &e), TRK_OK, &e);
    CHECK(complete == 1);
    pthread_join(t, NULL);
    CHECK(a.keyupdates == 1);
    CHECK(strcmp(a.got, "echo me") == 0);
    trk_conn_free(c);
    /* the core never closes a socket it was given */
    CHECK(fcntl(sv[0], F_GETFD) != -1 && fcntl(sv[1], F_GETFD) != -1);
    close(sv[0]);
    close(sv[1]);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

TEST(test_socket_timeout_and_nonblocking)
{
    trk_ctx *cctx, *sctx;
    trk_conn *c;
    trk_error e;
    int sv[2];
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK_STATUS(trk_conn_new_fd(cctx, sv[0], 0.2, "localhost", &c, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_TIMEOUT, &e); /* nobody answers */
    CHECK(strcmp(trk_status_name(e.status), "timeout") == 0);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    CHECK_STATUS(trk_conn_set_timeout(c, 0, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_WANT_READ, &e);
    CHECK_STATUS(trk_conn_set_timeout(c, -5, &e), TRK_ARG, &e);
    close(sv[1]); /* the server vanishes */
    CHECK_STATUS(trk_conn_set_timeout(c, 1.0, &e), TRK_OK, &e);
    trk_status st = trk_conn_do_handshake(c, &e);
    CHECK(st == TRK_SYSCALL);
    trk_conn_free(c);
    close(sv[0]);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

/* The caller's fd keeps its flags: a timeout made it O_NONBLOCK for good, and a
 * blocking socket then failed its owner's own reads with EAGAIN. */
TEST(test_timeouts_leave_the_fd_flags_as_found)
{
    trk_ctx *cctx, *sctx;
    trk_conn *c;
    trk_error e;
    int sv[2];
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int found = fcntl(sv[0], F_GETFL);
    CHECK_STATUS(trk_conn_new_fd(cctx, sv[0], 0.2, "localhost", &c, &e), TRK_OK, &e);
    CHECK(fcntl(sv[0], F_GETFL) == found);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_TIMEOUT, &e); /* nobody answers */
    CHECK(fcntl(sv[0], F_GETFL) == found);
    CHECK_STATUS(trk_conn_set_timeout(c, 0, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_WANT_READ, &e);
    CHECK(fcntl(sv[0], F_GETFL) == found);
    CHECK_STATUS(trk_conn_set_timeout(c, TRK_TIMEOUT_NONE, &e), TRK_OK, &e);
    CHECK(fcntl(sv[0], F_GETFL) == found);
    trk_conn_free(c);
    CHECK(fcntl(sv[0], F_GETFL) == found);
    close(sv[0]);
    close(sv[1]);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

/* A socket client and a memory-transport server whose records the test sends by
 * hand (sv[1]), so that it decides what has arrived and where the bytes end. */
struct hand_fed {
    trk_ctx *cctx, *sctx;
    trk_conn *c, *s;
    int sv[2];
};

/* The server's output so far, sent on its socket end; returns the bytes in out. */
static size_t server_output(struct hand_fed *h, unsigned char *out, size_t cap)
{
    size_t n = 0;
    trk_error e;
    trk_conn_drain(h->s, out, cap, &n, &e);
    return n;
}

static int hand_fed_setup(struct hand_fed *h)
{
    trk_error e;
    unsigned char buf[65536];
    if (!u_contexts(NULL, &h->cctx, &h->sctx) ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, h->sv) != 0 ||
        trk_conn_new_fd(h->cctx, h->sv[0], 0, "localhost", &h->c, &e) != TRK_OK ||
        trk_conn_new_memory(h->sctx, NULL, &h->s, &e) != TRK_OK)
        return 0;
    fcntl(h->sv[0], F_SETFL, fcntl(h->sv[0], F_GETFL) | O_NONBLOCK);
    fcntl(h->sv[1], F_SETFL, fcntl(h->sv[1], F_GETFL) | O_NONBLOCK);
    for (int i = 0; i < 20; i++) {
        int done = trk_conn_do_handshake(h->c, &e) == TRK_OK;
        ssize_t k = read(h->sv[1], buf, sizeof buf);
        if (k > 0)
            trk_conn_feed(h->s, buf, (size_t)k, &e);
        done += trk_conn_do_handshake(h->s, &e) == TRK_OK;
        size_t n = server_output(h, buf, sizeof buf);
        if (n > 0 && write(h->sv[1], buf, n) != (ssize_t)n)
            return 0;
        if (done == 2)
            break;
    }
    /* the first read takes in the session tickets: nothing else has come */
    return trk_conn_read(h->c, buf, sizeof buf, &(size_t){0}, &e) == TRK_WANT_READ;
}

static void hand_fed_free(struct hand_fed *h)
{
    trk_conn_free(h->c);
    trk_conn_free(h->s);
    close(h->sv[0]);
    close(h->sv[1]);
    trk_ctx_free(h->cctx);
    trk_ctx_free(h->sctx);
}

/* One record of application data from the server, as bytes on the wire. */
static size_t record(struct hand_fed *h, const char *data, size_t len, unsigned char *out)
{
    size_t n;
    trk_error e;
    trk_conn_write(h->s, data, len, &n, &e);
    return server_output(h, out, 40000);
}

static int readable(int fd)
{
    fd_set r;
    struct timeval tv = {0, 0};
    FD_ZERO(&r);
    FD_SET(fd, &r);
    return select(fd + 1, &r, NULL, NULL, &tv) == 1;
}

/* With read-ahead, records that have arrived can wait inside OpenSSL while the
 * socket shows nothing: pending() counts a whole one, never part of one. */
TEST(test_pending_counts_whole_records_read_ahead_from_a_socket)
{
    struct hand_fed h;
    trk_error e;
    size_t n, len;
    static unsigned char wire[100000], buf[20000];
    static char big[10000];
    REQUIRE(hand_fed_setup(&h));

    /* two records in one go: after the first, the second waits inside */
    len = record(&h, "first", 5, wire);
    len += record(&h, "second", 6, wire + len);
    REQUIRE(write(h.sv[1], wire, len) == (ssize_t)len);
    CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 5 && memcmp(buf, "first", 5) == 0);
    CHECK(!readable(h.sv[0]));      /* read ahead: the socket is empty */
    CHECK(trk_conn_pending(h.c) > 0);
    CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 6 && memcmp(buf, "second", 6) == 0);
    CHECK(trk_conn_pending(h.c) == 0);

    /* a whole record and part of the next: only the whole one counts */
    memset(big, 'b', sizeof big);
    len = record(&h, "third", 5, wire);
    size_t second = record(&h, big, sizeof big, wire + len);
    REQUIRE(write(h.sv[1], wire, len + 100) == (ssize_t)(len + 100));
    CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 5);
    CHECK(trk_conn_pending(h.c) == 0 && !readable(h.sv[0]));
    CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_WANT_READ, &e);
    CHECK(trk_conn_pending(h.c) == 0);
    REQUIRE(write(h.sv[1], wire + len + 100, second - 100) == (ssize_t)(second - 100));
    CHECK(readable(h.sv[0]));
    CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == sizeof big);

    /* data, then a KeyUpdate, twice. Before OpenSSL 3.2, after that large record
     * OpenSSL reads a header, then exactly its body, until a small header turns
     * read-ahead back on: the first KeyUpdate stays in the socket, the second waits
     * inside and counts until a read takes it in. From 3.2 on read-ahead stays on
     * (io.c, read_ahead_follows): both wait inside. */
    int follows = OpenSSL_version_num() < 0x30200000L;
    for (int round = 0; round < 2; round++) {
        len = record(&h, "x", 1, wire);
        CHECK_STATUS(trk_conn_key_update(h.s, TRK_KEY_UPDATE_NOT_REQUESTED, 1, &e), TRK_OK,
                     &e);
        len += server_output(&h, wire + len, sizeof wire - len);
        REQUIRE(write(h.sv[1], wire, len) == (ssize_t)len);
        CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
        CHECK(n == 1);
        if (round == 0 && follows)
            CHECK(trk_conn_pending(h.c) == 0 && readable(h.sv[0]));
        else
            CHECK(trk_conn_pending(h.c) == 1 && !readable(h.sv[0]));
        CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_WANT_READ, &e);
        CHECK(trk_conn_pending(h.c) == 0);
    }
    trk_stats st;
    trk_conn_stats(h.c, &st);
    CHECK(st.key_updates_received == 2);

    /* Before 3.2 large records are not read ahead (W1 over sockets is faster
     * without): after one of three sent at once (all three would fit OpenSSL's
     * buffer), the other two are still in the socket. The header before decides:
     * the first large record after small ones may still come with what follows it.
     * From 3.2 on all three are taken at once and pending() counts the two. */
    len = record(&h, big, 5000, wire);
    REQUIRE(write(h.sv[1], wire, len) == (ssize_t)len);
    CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 5000);
    len = 0;
    for (int i = 0; i < 3; i++)
        len += record(&h, big, 5000, wire + len);
    REQUIRE(write(h.sv[1], wire, len) == (ssize_t)len);
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
        if (follows) {
            CHECK(n == 5000 && trk_conn_pending(h.c) == 0);
            CHECK(readable(h.sv[0]) == (i < 2));
        } else {
            CHECK(n == 5000 && (trk_conn_pending(h.c) > 0) == (i < 2));
            CHECK(!readable(h.sv[0]));
        }
    }
    hand_fed_free(&h);
}

/* A key update goes out with the data behind it in one write(2): the peer wakes
 * once, and over TCP the two records share a segment. Without a key update, one
 * record is one write as before; the peer reads both records and the new key. */
TEST(test_key_update_leaves_with_the_data_in_one_write)
{
    struct hand_fed h;
    trk_error e;
    size_t n, len;
    static unsigned char wire[65536], buf[100];
    REQUIRE(hand_fed_setup(&h));
    __atomic_store_n(&watched_fd, h.sv[0], __ATOMIC_RELAXED);
    for (int round = 0; round < 3; round++) {
        __atomic_store_n(&writes_seen, 0, __ATOMIC_RELAXED);
        CHECK_STATUS(trk_conn_key_update(h.c, round == 1 ? TRK_KEY_UPDATE_REQUESTED
                                                          : TRK_KEY_UPDATE_NOT_REQUESTED,
                                         0, &e),
                     TRK_OK, &e);
        CHECK_STATUS(trk_conn_write(h.c, "hello", 5, &n, &e), TRK_OK, &e);
        CHECK(n == 5 && __atomic_load_n(&writes_seen, __ATOMIC_RELAXED) == 1);
        len = (size_t)read(h.sv[1], wire, sizeof wire);
        CHECK(len == 27 + 27); /* KeyUpdate and the 5 bytes: 5 header + 5 + 1 type + 16 tag each */
        CHECK_STATUS(trk_conn_feed(h.s, wire, len, &e), TRK_OK, &e);
        CHECK_STATUS(trk_conn_read(h.s, buf, sizeof buf, &n, &e), TRK_OK, &e);
        CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
        CHECK(u_stats(h.s).key_updates_received == (uint64_t)round + 1);
        if (round == 1) { /* the server's reply: the client takes it in and reads on */
            CHECK_STATUS(trk_conn_write(h.s, "ok", 2, &n, &e), TRK_OK, &e);
            len = server_output(&h, wire, sizeof wire);
            REQUIRE(write(h.sv[1], wire, len) == (ssize_t)len);
            CHECK_STATUS(trk_conn_read(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
            CHECK(n == 2 && u_stats(h.c).key_updates_received == 1);
        }
    }
    __atomic_store_n(&writes_seen, 0, __ATOMIC_RELAXED); /* nothing scheduled: a write is one record, one write(2) */
    CHECK_STATUS(trk_conn_write(h.c, "plain", 5, &n, &e), TRK_OK, &e);
    CHECK(__atomic_load_n(&writes_seen, __ATOMIC_RELAXED) == 1 && read(h.sv[1], wire, sizeof wire) == 27);
    __atomic_store_n(&watched_fd, -1, __ATOMIC_RELAXED);
    hand_fed_free(&h);
}

/* The peer of test_try_write: takes everything from the socket into the memory
 * server and reads the application data out, until `want` bytes came. */
struct drainer {
    struct hand_fed *h;
    size_t want, got;
    int intact;
};

static void *drain_peer(void *p)
{
    struct drainer *d = p;
    static unsigned char wire[65536], data[16384];
    trk_error e;
    size_t n;
    fcntl(d->h->sv[1], F_SETFL, fcntl(d->h->sv[1], F_GETFL) & ~O_NONBLOCK);
    d->intact = 1;
    while (d->got < d->want) {
        ssize_t k = read(d->h->sv[1], wire, sizeof wire);
        if (k <= 0)
            break;
        trk_conn_feed(d->h->s, wire, (size_t)k, &e);
        while (trk_conn_read(d->h->s, data, sizeof data, &n, &e) == TRK_OK) {
            for (size_t i = 0; i < n; i++)
                d->intact &= data[i] == (unsigned char)((d->got + i) % 251);
            d->got += n;
        }
    }
    return NULL;
}

/* A try call never waits on the socket, even a blocking one (timeout none): a full
 * socket makes try_write say WANT_WRITE, and the plain write with the same data then
 * completes the record OpenSSL kept. try_read with nothing there: WANT_READ. */
TEST(test_try_calls_never_wait_and_the_plain_call_completes)
{
    struct hand_fed h;
    trk_error e;
    size_t n, sent = 0;
    static unsigned char buf[1000];
    REQUIRE(hand_fed_setup(&h));
    alarm(60); /* a try call that waits would hang here */
    CHECK_STATUS(trk_conn_set_timeout(h.c, TRK_TIMEOUT_NONE, &e), TRK_OK, &e);
    fcntl(h.sv[0], F_SETFL, fcntl(h.sv[0], F_GETFL) & ~O_NONBLOCK); /* blocking */
    CHECK(trk_conn_may_block(h.c, sizeof buf) == TRK_MAY_BLOCK_SOCKET);
    CHECK(trk_conn_may_block(h.c, 65536) == TRK_MAY_BLOCK_WORK);
    CHECK_STATUS(trk_conn_try_read(h.c, buf, sizeof buf, &n, &e), TRK_WANT_READ, &e);
    trk_status st = TRK_OK;
    for (int i = 0; i < 100000 && st == TRK_OK; i++) {
        for (size_t k = 0; k < sizeof buf; k++)
            buf[k] = (unsigned char)((sent + k) % 251);
        st = trk_conn_try_write(h.c, buf, sizeof buf, &n, &e);
        if (st == TRK_OK) {
            CHECK(n == sizeof buf);
            sent += n;
        }
    }
    CHECK_STATUS(st, TRK_WANT_WRITE, &e); /* the socket is full */
    CHECK(trk_conn_timeout(h.c) == TRK_TIMEOUT_NONE);
    struct drainer d = {.h = &h, .want = sent + sizeof buf};
    pthread_t t;
    pthread_create(&t, NULL, drain_peer, &d);
    CHECK_STATUS(trk_conn_write(h.c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == sizeof buf);
    pthread_join(t, NULL);
    CHECK(d.got == sent + sizeof buf && d.intact);
    alarm(0);
    hand_fed_free(&h);
}

/* A key update and a write meet a full socket: the write says WANT_WRITE with the
 * KeyUpdate already taken from OpenSSL; the same write, retried once there is room,
 * sends both, in order (the peer reads the data under the new key). */
TEST(test_key_update_and_write_on_a_full_socket_resume_in_order)
{
    struct hand_fed h;
    trk_error e;
    size_t n, filled = 0, drained = 0, len;
    static unsigned char fill[65536], wire[65536], buf[100];
    ssize_t k;
    REQUIRE(hand_fed_setup(&h));
    CHECK_STATUS(trk_conn_key_update(h.c, TRK_KEY_UPDATE_NOT_REQUESTED, 0, &e), TRK_OK, &e);
    memset(fill, 'f', sizeof fill);
    while ((k = send(h.sv[0], fill, sizeof fill, MSG_DONTWAIT)) > 0) /* not TLS: */
        filled += (size_t)k;                                         /* taken by hand */
    CHECK(filled > 0);
    CHECK_STATUS(trk_conn_write(h.c, "later", 5, &n, &e), TRK_WANT_WRITE, &e);
    CHECK(trk_conn_get_key_update_type(h.c) == TRK_KEY_UPDATE_NONE); /* OpenSSL: sent */
    while ((k = read(h.sv[1], fill, sizeof fill)) > 0)
        drained += (size_t)k;
    CHECK(drained == filled); /* nothing of the KeyUpdate went out ahead of the data */
    CHECK_STATUS(trk_conn_write(h.c, "later", 5, &n, &e), TRK_OK, &e);
    CHECK(n == 5);
    len = (size_t)read(h.sv[1], wire, sizeof wire);
    CHECK(len == 27 + 27);
    CHECK_STATUS(trk_conn_feed(h.s, wire, len, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_read(h.s, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 5 && memcmp(buf, "later", 5) == 0);
    CHECK(u_stats(h.s).key_updates_received == 1);
    hand_fed_free(&h);
}

TEST(test_pair_shutdown_both_ways)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    int complete;
    char buf[8];
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_NOT_REQUESTED, 0, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_shutdown(c, &complete, &e), TRK_OK, &e);
    CHECK(complete == 0);
    CHECK(strcmp(trk_conn_state(c), "closed") == 0);
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &e), TRK_CLOSED, &e);
    CHECK(u_stats(s).key_updates_received == 1);
    CHECK_STATUS(trk_conn_shutdown(s, &complete, &e), TRK_OK, &e);
    CHECK(complete == 1);
    CHECK_STATUS(trk_conn_shutdown(c, &complete, &e), TRK_OK, &e);
    CHECK(complete == 1);
    CHECK_STATUS(trk_conn_write(c, "x", 1, &n, &e), TRK_STATE, &e);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_freeing_one_end_of_a_pair)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    char buf[16];
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_write(s, "last", 4, &n, &e), TRK_OK, &e);
    trk_conn_free(s);
    CHECK(trk_conn_peer(c) == NULL);
    CHECK_STATUS(trk_conn_read(c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 4 && memcmp(buf, "last", 4) == 0);
    CHECK_STATUS(trk_conn_read(c, buf, sizeof buf, &n, &e), TRK_SYSCALL, &e);
    CHECK_STATUS(trk_conn_write(c, "x", 1, &n, &e), TRK_SYSCALL, &e);
    trk_conn_free(c);
}

TEST(test_close_is_idempotent_and_later_calls_are_state_errors)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    char buf[4];
    REQUIRE(u_pair(NULL, &c, &s));
    trk_conn_close(c);
    trk_conn_close(c);
    CHECK(strcmp(trk_conn_state(c), "released") == 0);
    CHECK_STATUS(trk_conn_read(c, buf, sizeof buf, &n, &e), TRK_STATE, &e);
    CHECK_STATUS(trk_conn_write(c, "x", 1, &n, &e), TRK_STATE, &e);
    CHECK_STATUS(trk_conn_key_update(c, 1, 0, &e), TRK_STATE, &e);
    CHECK_STATUS(trk_conn_renegotiate(c, &e), TRK_STATE, &e);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_STATE, &e);
    CHECK(trk_conn_get_key_update_type(c) == TRK_KEY_UPDATE_NONE);
    CHECK(trk_conn_version(c) == NULL && trk_conn_pending(c) == 0);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_stash_keeps_data_read_on_behalf_of_the_peer)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    REQUIRE(u_pair(NULL, &c, &s));
    /* 1 MiB in one write: the BIO pair is smaller, so the server end is moved along
     * and keeps the data for its own reads */
    size_t len = 1 << 20;
    unsigned char *big = malloc(len), *back = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)(i * 7);
    CHECK_STATUS(trk_conn_write(c, big, len, &n, &e), TRK_OK, &e);
    CHECK(n == len);
    CHECK(trk_conn_pending(s) > 0);
    size_t got = 0;
    while (got < len && trk_conn_read(s, back + got, len - got, &n, &e) == TRK_OK)
        got += n;
    CHECK(got == len && memcmp(big, back, len) == 0);
    CHECK(u_stats(s).bytes_read == len && u_stats(c).bytes_written == len);
    free(big);
    free(back);
    trk_conn_free(c);
    trk_conn_free(s);
}

/* A read's buffer is sized for what can arrive: one record, or what is already
 * here, never the size asked when that is more. */
TEST(test_read_size_is_what_can_arrive)
{
    static char big[100000];
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK(trk_conn_read_size(s, 100) == 100);
    CHECK(trk_conn_read_size(s, TRK_READ_CHUNK) == TRK_READ_CHUNK);
    CHECK(trk_conn_read_size(s, (size_t)1 << 40) == TRK_READ_CHUNK); /* nothing here */
    CHECK_STATUS(trk_conn_write(c, big, sizeof big, &n, &e), TRK_OK, &e);
    size_t here = trk_conn_pending(s);
    CHECK(here > TRK_READ_CHUNK); /* the pair moved most of it to s already */
    CHECK(trk_conn_read_size(s, (size_t)1 << 40) == here);
    CHECK(trk_conn_read_size(s, TRK_READ_CHUNK + 1) == TRK_READ_CHUNK + 1);
    trk_conn_free(c);
    trk_conn_free(s);
}

int main(void)
{
    RUN(test_memory_transport_handshake_and_key_update);
    RUN(test_memory_calls_on_other_transports_are_state_errors);
    RUN(test_socket_blocking_with_timeout);
    RUN(test_socket_timeout_and_nonblocking);
    RUN(test_timeouts_leave_the_fd_flags_as_found);
    RUN(test_pending_counts_whole_records_read_ahead_from_a_socket);
    RUN(test_try_calls_never_wait_and_the_plain_call_completes);
    RUN(test_key_update_leaves_with_the_data_in_one_write);
    RUN(test_key_update_and_write_on_a_full_socket_resume_in_order);
    RUN(test_pair_shutdown_both_ways);
    RUN(test_freeing_one_end_of_a_pair);
    RUN(test_close_is_idempotent_and_later_calls_are_state_errors);
    RUN(test_stash_keeps_data_read_on_behalf_of_the_peer);
    RUN(test_read_size_is_what_can_arrive);
    u_free_certs();
    return DONE();
}
