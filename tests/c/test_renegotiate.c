/* The renegotiation statements of SSL_key_update(3), on an in-process pair. */
#include "harness.h"
#include "util.h"

static const pair_opts tls12 = {.max_version = "TLSv1.2"};
static const pair_opts tls12_allow = {.max_version = "TLSv1.2",
                                      .allow_client_renegotiation = 1};
static const pair_opts tls12_none = {.max_version = "TLSv1.2", .no_renegotiation = 1};

TEST(test_renegotiate_on_tls13_is_a_state_error)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_renegotiate(c, &e), TRK_STATE, &e);
    CHECK(strcmp(e.reason, "wrong ssl version") == 0);
    CHECK_STATUS(trk_conn_renegotiate_abbreviated(s, &e), TRK_STATE, &e);
    CHECK(trk_conn_renegotiate_pending(c) == 0);
    CHECK(u_send(c, s, "ok"));
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_client_full_renegotiation_does_not_resume)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(&tls12_allow, &c, &s));
    CHECK(trk_conn_secure_renegotiation(c));
    CHECK_STATUS(trk_conn_renegotiate(c, &e), TRK_OK, &e);
    CHECK(trk_conn_renegotiate_pending(c) == 1);
    CHECK(u_stats(c).renegotiations == 0);
    CHECK(u_send(c, s, "across"));
    CHECK(trk_conn_renegotiate_pending(c) == 0);
    CHECK(u_stats(c).renegotiations == 1 && u_stats(s).renegotiations == 1);
    CHECK(u_stats(c).handshakes == 2);
    CHECK(!trk_conn_session_reused(c));
    CHECK(u_send(s, c, "back"));
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_client_abbreviated_renegotiation_resumes)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(&tls12_allow, &c, &s));
    CHECK(!trk_conn_session_reused(c));
    CHECK_STATUS(trk_conn_renegotiate_abbreviated(c, &e), TRK_OK, &e);
    CHECK(trk_conn_renegotiate_pending(c) == 1);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_OK, &e);
    CHECK(trk_conn_renegotiate_pending(c) == 0);
    CHECK(trk_conn_session_reused(c));
    CHECK(u_stats(c).renegotiations == 1);
    CHECK(u_send(c, s, "x") && u_send(s, c, "y"));
    CHECK(u_stats(s).renegotiations == 1);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_server_renegotiation_is_transparent_to_the_client)
{
    for (int abbreviated = 0; abbreviated < 2; abbreviated++) {
        trk_conn *c, *s;
        trk_error e;
        REQUIRE(u_pair(&tls12, &c, &s));
        CHECK_STATUS(abbreviated ? trk_conn_renegotiate_abbreviated(s, &e)
                                 : trk_conn_renegotiate(s, &e),
                     TRK_OK, &e);
        CHECK(trk_conn_renegotiate_pending(s) == 1);
        CHECK(u_send(s, c, "request"));
        CHECK(u_stats(s).hello_requests_sent == 1);
        CHECK(u_stats(c).hello_requests_received == 1);
        /* the client answers inside its ordinary I/O: its next write carries the
         * new handshake, which completes before the data goes out */
        CHECK(u_send(c, s, "reply"));
        CHECK(u_stats(c).renegotiations == 1);
        CHECK(trk_conn_session_reused(c)); /* a TLS client resumes */
        CHECK(u_stats(s).renegotiations == 1);
        CHECK(trk_conn_renegotiate_pending(s) == 0);
        trk_conn_free(c);
        trk_conn_free(s);
    }
}

TEST(test_client_renegotiation_refused_by_default)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    REQUIRE(u_pair(&tls12, &c, &s));
    CHECK_STATUS(trk_conn_renegotiate(c, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_write(c, "x", 1, &n, &e), TRK_PROTOCOL, &e);
    CHECK(strstr(e.reason, "renegotiation") != NULL);
    /* the failure is remembered: the next call reports the same error */
    trk_error again;
    CHECK_STATUS(trk_conn_write(c, "y", 1, &n, &again), TRK_PROTOCOL, &again);
    CHECK(strcmp(again.reason, e.reason) == 0);
    CHECK(strcmp(trk_conn_state(c), "failed") == 0);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_no_renegotiation_refuses_at_once)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(&tls12_none, &c, &s));
    CHECK_STATUS(trk_conn_renegotiate(c, &e), TRK_STATE, &e);
    CHECK(strcmp(e.reason, "no renegotiation") == 0);
    CHECK_STATUS(trk_conn_renegotiate(s, &e), TRK_STATE, &e);
    CHECK(u_send(c, s, "fine"));
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_renegotiate_before_handshake_is_a_state_error)
{
    trk_ctx *cctx, *sctx;
    trk_conn *m;
    trk_error e;
    REQUIRE(u_contexts(&tls12, &cctx, &sctx));
    REQUIRE(trk_conn_new_memory(cctx, "localhost", &m, &e) == TRK_OK);
    CHECK_STATUS(trk_conn_renegotiate(m, &e), TRK_STATE, &e);
    CHECK(trk_conn_renegotiate_pending(m) == 0);
    trk_conn_free(m);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

TEST(test_many_renegotiations_both_directions)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(&tls12_allow, &c, &s));
    for (int i = 0; i < 50; i++) {
        trk_conn *a = i % 2 ? c : s, *b = i % 2 ? s : c;
        CHECK_STATUS(i % 3 ? trk_conn_renegotiate(a, &e)
                           : trk_conn_renegotiate_abbreviated(a, &e),
                     TRK_OK, &e);
        REQUIRE(u_send(a, b, "data") && u_send(b, a, "more"));
    }
    CHECK(u_stats(c).renegotiations == 50 && u_stats(s).renegotiations == 50);
    trk_conn_free(c);
    trk_conn_free(s);
}

int main(void)
{
    RUN(test_renegotiate_on_tls13_is_a_state_error);
    RUN(test_client_full_renegotiation_does_not_resume);
    RUN(test_client_abbreviated_renegotiation_resumes);
    RUN(test_server_renegotiation_is_transparent_to_the_client);
    RUN(test_client_renegotiation_refused_by_default);
    RUN(test_no_renegotiation_refuses_at_once);
    RUN(test_renegotiate_before_handshake_is_a_state_error);
    RUN(test_many_renegotiations_both_directions);
    u_free_certs();
    return DONE();
}
