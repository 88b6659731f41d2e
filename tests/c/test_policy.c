/* Automatic rekeying: thresholds, AEAD limits, TLS 1.2 by renegotiation. */
#include "harness.h"
#include "util.h"

#include <math.h>
#include <string.h>
#include <time.h>

static void drain_reads(trk_conn *to, size_t expect)
{
    char buf[16384];
    size_t n, got = 0;
    trk_error e;
    while (got < expect && trk_conn_read(to, buf, sizeof buf, &n, &e) == TRK_OK)
        got += n;
    CHECK(got == expect);
}

TEST(test_records_threshold_rekeys_every_n_records)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    REQUIRE(u_pair(NULL, &c, &s));
    trk_rekey_policy p;
    trk_rekey_policy_default(&p);
    p.records = 10;
    CHECK_STATUS(trk_conn_set_rekey_policy(c, &p, &e), TRK_OK, &e);
    for (int i = 0; i < 1000; i++) {
        CHECK_STATUS(trk_conn_write(c, "r", 1, &n, &e), TRK_OK, &e);
        drain_reads(s, 1);
    }
    /* 1000 one-record writes, 10 per key: the 11th, 21st, ... write rekeys first */
    CHECK(u_stats(c).key_updates_sent == 99);
    CHECK(u_stats(s).key_updates_received == 99);
    CHECK(u_stats(c).automatic_rekeys == 99);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_bytes_threshold_splits_a_large_write)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    REQUIRE(u_pair(NULL, &c, &s));
    trk_rekey_policy p;
    trk_rekey_policy_default(&p);
    p.bytes = 100000;
    p.request_peer = 1;
    CHECK_STATUS(trk_conn_set_rekey_policy(c, &p, &e), TRK_OK, &e);
    size_t len = 1000000;
    unsigned char *big = calloc(1, len);
    CHECK_STATUS(trk_conn_write(c, big, len, &n, &e), TRK_OK, &e);
    CHECK(n == len);
    drain_reads(s, len);
    /* 10 keys of exactly 100000 bytes: 9 updates, each asking for the peer's */
    CHECK(u_stats(c).key_updates_sent == 9);
    CHECK(u_stats(s).key_update_requests_received == 9);
    CHECK_STATUS(trk_conn_write(s, "", 0, &n, &e), TRK_OK, &e);
    /* the server answers inside its reads (the pair moves it while the client
     * writes): never more replies than requests, and nothing left owed */
    CHECK(u_stats(s).key_updates_sent >= 1 && u_stats(s).key_updates_sent <= 9);
    CHECK(trk_conn_get_key_update_type(s) == TRK_KEY_UPDATE_NONE);
    CHECK(u_stats(s).key_update_requests_sent == 0);
    free(big);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_seconds_threshold_rekeys_at_the_next_write)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    REQUIRE(u_pair(NULL, &c, &s));
    trk_rekey_policy p;
    trk_rekey_policy_default(&p);
    p.seconds = 0.05;
    CHECK_STATUS(trk_conn_set_rekey_policy(c, &p, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_write(c, "a", 1, &n, &e), TRK_OK, &e);
    CHECK(u_stats(c).key_updates_sent == 0);
    struct timespec ts = {0, 80 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK_STATUS(trk_conn_write(c, "b", 1, &n, &e), TRK_OK, &e);
    CHECK(u_stats(c).key_updates_sent == 1);
    drain_reads(s, 2);
    p.seconds = -1;
    CHECK_STATUS(trk_conn_set_rekey_policy(c, &p, &e), TRK_ARG, &e);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_default_aead_limit_applies_to_gcm_only)
{
    CHECK(trk_aead_record_limit("TLS_AES_128_GCM_SHA256") == (UINT64_C(1) << 24));
    CHECK(trk_aead_record_limit("TLS_CHACHA20_POLY1305_SHA256") == 0);
    trk_testing_set_aead_scale(UINT64_C(1) << 21); /* 8 records per key */
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    REQUIRE(u_pair(NULL, &c, &s));
    for (int i = 0; i < 80; i++) {
        CHECK_STATUS(trk_conn_write(c, "x", 1, &n, &e), TRK_OK, &e);
        drain_reads(s, 1);
    }
    CHECK(u_stats(c).key_updates_sent == 9);
    /* turned off explicitly: no updates */
    trk_rekey_policy p;
    trk_rekey_policy_default(&p);
    p.aead_limit = 0;
    CHECK_STATUS(trk_conn_set_rekey_policy(c, &p, &e), TRK_OK, &e);
    for (int i = 0; i < 80; i++)
        CHECK_STATUS(trk_conn_write(c, "x", 1, &n, &e), TRK_OK, &e);
    drain_reads(s, 80);
    CHECK(u_stats(c).key_updates_sent == 9);
    trk_testing_set_aead_scale(1);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_policy_on_tls12_needs_use_renegotiation)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    pair_opts o = {.max_version = "TLSv1.2", .allow_client_renegotiation = 1};
    REQUIRE(u_pair(&o, &c, &s));
    trk_rekey_policy p;
    trk_rekey_policy_default(&p);
    p.records = 5;
    CHECK_STATUS(trk_conn_set_rekey_policy(c, &p, &e), TRK_STATE, &e);
    CHECK(strstr(e.message, "use_renegotiation") != NULL);
    p.use_renegotiation = 1;
    CHECK_STATUS(trk_conn_set_rekey_policy(c, &p, &e), TRK_OK, &e);
    for (int i = 0; i < 20; i++) {
        CHECK_STATUS(trk_conn_write(c, "y", 1, &n, &e), TRK_OK, &e);
        drain_reads(s, 1);
    }
    CHECK(u_stats(c).renegotiations == 3 && u_stats(s).renegotiations == 3);
    CHECK(u_stats(c).automatic_rekeys == 3);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_context_policy_is_inherited)
{
    trk_ctx *cctx, *sctx;
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    trk_rekey_policy p, got;
    trk_rekey_policy_default(&p);
    p.bytes = 1234;
    CHECK_STATUS(trk_ctx_set_rekey_policy(cctx, &p, &e), TRK_OK, &e);
    REQUIRE(trk_pair_new(cctx, sctx, "localhost", &c, &s, &e) == TRK_OK);
    trk_conn_get_rekey_policy(c, &got);
    CHECK(got.bytes == 1234 && got.aead_limit == 1);
    trk_conn_get_rekey_policy(s, &got);
    CHECK(got.bytes == 0);
    trk_conn_free(c);
    trk_conn_free(s);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

TEST(test_threshold_values_given_by_users)
{
    trk_rekey_policy p;
    trk_error e;
    trk_rekey_policy_default(&p);
    /* 0 is refused, never taken for "no limit"; leaving a threshold out is that */
    CHECK_STATUS(trk_rekey_policy_set_count(&p, "bytes", 0, &e), TRK_ARG, &e);
    CHECK(strstr(e.message, "'bytes'") != NULL);
    CHECK_STATUS(trk_rekey_policy_set_number(&p, "seconds", 0.0, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_rekey_policy_set_number(&p, "records", -0.0, &e), TRK_ARG, &e);
    /* counts: whole numbers, also as floats */
    CHECK_STATUS(trk_rekey_policy_set_number(&p, "bytes", 1e9, &e), TRK_OK, &e);
    CHECK(p.bytes == 1000000000u);
    CHECK_STATUS(trk_rekey_policy_set_number(&p, "records", 1.5, &e), TRK_ARG, &e);
    CHECK(strstr(e.message, "'records'") != NULL);
    CHECK_STATUS(trk_rekey_policy_set_number(&p, "bytes", 18446744073709551616.0, &e),
                 TRK_ARG, &e);
    CHECK_STATUS(trk_rekey_policy_set_number(&p, "bytes", NAN, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_rekey_policy_set_count(&p, "records", UINT64_MAX, &e), TRK_OK, &e);
    CHECK(p.records == UINT64_MAX);
    /* seconds: any finite positive number */
    CHECK_STATUS(trk_rekey_policy_set_number(&p, "seconds", 0.25, &e), TRK_OK, &e);
    CHECK(p.seconds == 0.25);
    CHECK_STATUS(trk_rekey_policy_set_number(&p, "seconds", INFINITY, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_rekey_policy_set_count(&p, "seconds", 3, &e), TRK_OK, &e);
    CHECK(p.seconds == 3.0);
    CHECK_STATUS(trk_rekey_policy_set_count(&p, "bites", 3, &e), TRK_ARG, &e);
    /* refusals leave what was set */
    CHECK(p.bytes == 1000000000u && p.records == UINT64_MAX && p.seconds == 3.0);
}

int main(void)
{
    RUN(test_records_threshold_rekeys_every_n_records);
    RUN(test_bytes_threshold_splits_a_large_write);
    RUN(test_seconds_threshold_rekeys_at_the_next_write);
    RUN(test_default_aead_limit_applies_to_gcm_only);
    RUN(test_policy_on_tls12_needs_use_renegotiation);
    RUN(test_context_policy_is_inherited);
    RUN(test_threshold_values_given_by_users);
    u_free_certs();
    return DONE();
}
