/* Threads sharing contexts: distinct connections in distinct threads at once, made
 * from the same contexts (tlsrekey.h's thread rules). Run under ASan and
 * ThreadSanitizer by make test: a reference count taken or dropped without care
 * frees a context under a live connection. */
#include "harness.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>

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

int main(void)
{
    RUN(test_threads_sharing_contexts_make_use_and_free_connections);
    u_free_certs();
    return DONE();
}
