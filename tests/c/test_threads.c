/* Threads sharing contexts: distinct connections in distinct threads at once, made
 * from the same contexts (tlsrekey.h's thread rules). Run under ASan and
 * ThreadSanitizer by make test: a reference count taken or dropped without care
 * frees a context under a live connection. */
#include "harness.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define THREADS 8
#define ROUNDS 100

static trk_ctx *shared_c, *shared_s;
static atomic_int failures;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        trk_conn *c, *s;
        trk_error e;
        char msg[32], buf[64];
        size_t n, got = 0;
        if (trk_pair_new(shared_c, shared_s, "localhost", &c, &s, &e) != TRK_OK) {
            atomic_fetch_add(&failures, 1);
            continue;
        }
        int len = snprintf(msg, sizeof msg, "thread %d round %d", id, i);
        if (i % 4 == 0 && trk_conn_key_update(c, TRK_KEY_UPDATE_REQUESTED, 0, &e) != TRK_OK)
            atomic_fetch_add(&failures, 1);
        if (trk_conn_write(c, msg, (size_t)len, &n, &e) != TRK_OK || n != (size_t)len)
            atomic_fetch_add(&failures, 1);
        while (got < (size_t)len &&
               trk_conn_read(s, buf + got, sizeof buf - got, &n, &e) == TRK_OK)
            got += n;
        if (got != (size_t)len || memcmp(buf, msg, got) != 0)
            atomic_fetch_add(&failures, 1);
        /* either end may go first */
        if (i % 2) {
            trk_conn_free(c);
            trk_conn_free(s);
        } else {
            trk_conn_free(s);
            trk_conn_free(c);
        }
    }
    return NULL;
}

TEST(test_threads_sharing_contexts_make_use_and_free_connections)
{
    REQUIRE(u_contexts(NULL, &shared_c, &shared_s));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&failures) == 0);
    /* the contexts are whole: one more pair works, then the last references go */
    trk_conn *c, *s;
    trk_error e;
    CHECK_STATUS(trk_pair_new(shared_c, shared_s, "localhost", &c, &s, &e), TRK_OK, &e);
    CHECK(u_send(c, s, "after"));
    trk_conn_free(c);
    trk_conn_free(s);
    trk_ctx_free(shared_c);
    trk_ctx_free(shared_s);
}

/* Full duplex through trk_conn_set_wait_hook, with a mutex as the caller's lock on
 * the connection: a read waiting on the socket lets it go, so another thread writes
 * and, later, closes meanwhile; the closed read reports TRK_STATE at once. */
struct duplex {
    pthread_mutex_t lock;
    trk_conn *c;
    atomic_int releases;
    trk_status st;
    size_t n;
    char buf[64];
};

static int duplex_hook(void *ud, int phase)
{
    struct duplex *d = ud;
    if (phase == TRK_WAIT_RELEASE) {
        atomic_fetch_add(&d->releases, 1);
        pthread_mutex_unlock(&d->lock);
    } else if (phase == TRK_WAIT_RETAKE) {
        pthread_mutex_lock(&d->lock);
    }
    return 0;
}

static void *duplex_reader(void *p)
{
    struct duplex *d = p;
    trk_error e;
    pthread_mutex_lock(&d->lock);
    d->st = trk_conn_read(d->c, d->buf, sizeof d->buf, &d->n, &e);
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static void *handshake_thread(void *p)
{
    trk_error e;
    return (void *)(intptr_t)(trk_conn_do_handshake(p, &e) == TRK_OK);
}

/* Both ends of a socket link, the server's in a thread of its own. */
static int handshake_both(trk_conn *c, trk_conn *s)
{
    pthread_t t;
    void *ok;
    trk_error e;
    if (pthread_create(&t, NULL, handshake_thread, s) != 0)
        return 0;
    int mine = trk_conn_do_handshake(c, &e) == TRK_OK;
    pthread_join(t, &ok);
    return mine && ok != NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The lock within two seconds, or 0: the reader kept it through its wait. */
static int lock_soon(pthread_mutex_t *m)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 2;
    return pthread_mutex_timedlock(m, &t) == 0;
}

static void wait_for_releases(struct duplex *d, int n)
{
    for (int i = 0; i < 500 && atomic_load(&d->releases) < n; i++)
        usleep(2000);
}

TEST(test_a_read_waiting_on_its_socket_lets_other_threads_use_the_connection)
{
    trk_ctx *cctx, *sctx;
    trk_conn *s;
    trk_error e;
    size_t n;
    int sv[2];
    char buf[64];
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct duplex d = {.lock = PTHREAD_MUTEX_INITIALIZER};
    CHECK_STATUS(trk_conn_new_fd(cctx, sv[0], 10.0, "localhost", &d.c, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_new_fd(sctx, sv[1], 10.0, NULL, &s, &e), TRK_OK, &e);
    trk_conn_set_wait_hook(d.c, duplex_hook, &d);
    REQUIRE(handshake_both(d.c, s));

    /* a write while the read waits; the answer reaches the reader */
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, duplex_reader, &d) == 0);
    wait_for_releases(&d, 1);
    REQUIRE(lock_soon(&d.lock));
    CHECK_STATUS(trk_conn_write(d.c, "ping", 4, &n, &e), TRK_OK, &e);
    pthread_mutex_unlock(&d.lock);
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK_STATUS(trk_conn_write(s, "pong", 4, &n, &e), TRK_OK, &e);
    pthread_join(t, NULL);
    CHECK_STATUS(d.st, TRK_OK, &e);
    CHECK(d.n == 4 && memcmp(d.buf, "pong", 4) == 0);

    /* a close while the read waits ends it at once: closed, not a timeout */
    int before = atomic_load(&d.releases);
    REQUIRE(pthread_create(&t, NULL, duplex_reader, &d) == 0);
    wait_for_releases(&d, before + 1);
    REQUIRE(lock_soon(&d.lock));
    trk_conn_close(d.c);
    pthread_mutex_unlock(&d.lock);
    double start = now();
    pthread_join(t, NULL);
    CHECK(now() - start < 2.0);
    CHECK(d.st == TRK_STATE);
    CHECK(ERR_peek_error() == 0);

    trk_conn_free(d.c);
    trk_conn_free(s);
    close(sv[0]);
    close(sv[1]);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

int main(void)
{
    RUN(test_threads_sharing_contexts_make_use_and_free_connections);
    RUN(test_a_read_waiting_on_its_socket_lets_other_threads_use_the_connection);
    u_free_certs();
    return DONE();
}
