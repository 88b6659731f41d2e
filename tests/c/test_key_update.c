/* The key update statements of SSL_key_update(3), on an in-process pair. */
#include "harness.h"
#include "util.h"

TEST(test_pair_handshakes_tls13)
{
    trk_conn *c, *s;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK(strcmp(trk_conn_version(c), "TLSv1.3") == 0);
    CHECK(strcmp(trk_conn_version(s), "TLSv1.3") == 0);
    CHECK(u_stats(c).handshakes == 1 && u_stats(s).handshakes == 1);
    CHECK(strcmp(trk_conn_state(c), "established") == 0);
    CHECK(u_send(c, s, "hello") && u_send(s, c, "world"));
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_key_update_not_requested_updates_only_our_keys)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_NOT_REQUESTED, 0, &e), TRK_OK, &e);
    CHECK(trk_conn_get_key_update_type(c) == TRK_KEY_UPDATE_NOT_REQUESTED);
    CHECK(u_stats(c).key_updates_sent == 0); /* scheduled, not sent */
    CHECK(u_send(c, s, "after"));
    CHECK(trk_conn_get_key_update_type(c) == TRK_KEY_UPDATE_NONE);
    CHECK(u_stats(c).key_updates_sent == 1);
    CHECK(u_stats(c).key_update_requests_sent == 0);
    CHECK(u_stats(s).key_updates_received == 1);
    /* the peer was not asked: it owes nothing and sends no update of its own */
    CHECK(trk_conn_get_key_update_type(s) == TRK_KEY_UPDATE_NONE);
    CHECK(u_send(s, c, "back"));
    CHECK(u_stats(s).key_updates_sent == 0 && u_stats(c).key_updates_received == 0);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_key_update_requested_makes_the_peer_answer_on_its_next_write)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_REQUESTED, 0, &e), TRK_OK, &e);
    CHECK(trk_conn_get_key_update_type(c) == TRK_KEY_UPDATE_REQUESTED);
    CHECK(u_send(c, s, "hi"));
    CHECK(u_stats(s).key_update_requests_received == 1);
    /* the owed reply is visible until the server writes */
    CHECK(trk_conn_get_key_update_type(s) == TRK_KEY_UPDATE_NOT_REQUESTED);
    CHECK(u_stats(s).key_updates_sent == 0);
    CHECK(u_send(s, c, "ok"));
    CHECK(trk_conn_get_key_update_type(s) == TRK_KEY_UPDATE_NONE);
    CHECK(u_stats(s).key_updates_sent == 1 && u_stats(s).key_update_requests_sent == 0);
    CHECK(u_stats(c).key_updates_received == 1);
    CHECK(u_send(c, s, "more") && u_send(s, c, "data"));
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_zero_length_write_sends_the_owed_reply)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_REQUESTED, 1, &e), TRK_OK, &e);
    char buf[16];
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &e), TRK_WANT_READ, &e);
    CHECK(trk_conn_get_key_update_type(s) == TRK_KEY_UPDATE_NOT_REQUESTED);
    CHECK_STATUS(trk_conn_do_handshake(s, &e), TRK_OK, &e);
    CHECK(u_stats(s).key_updates_sent == 0); /* do_handshake does not answer */
    CHECK_STATUS(trk_conn_write(s, "", 0, &n, &e), TRK_OK, &e);
    CHECK(n == 0 && u_stats(s).key_updates_sent == 1);
    CHECK_STATUS(trk_conn_read(c, buf, sizeof buf, &n, &e), TRK_WANT_READ, &e);
    CHECK(u_stats(c).key_updates_received == 1);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_key_update_none_is_rejected)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_NONE, 0, &e), TRK_ARG, &e);
    CHECK(strcmp(e.reason, "invalid key update type") == 0);
    CHECK_STATUS(trk_conn_key_update(c, 2, 0, &e), TRK_ARG, &e);
    CHECK(trk_conn_get_key_update_type(c) == TRK_KEY_UPDATE_NONE);
    CHECK(u_send(c, s, "still fine"));
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_second_key_update_is_a_state_error_naming_the_scheduled_type)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_REQUESTED, 0, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_NOT_REQUESTED, 0, &e), TRK_STATE,
                 &e);
    CHECK(strstr(e.message, "requested") != NULL);
    CHECK(u_send(c, s, "x"));
    CHECK(u_stats(c).key_updates_sent == 1);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_do_handshake_forces_the_update)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_NOT_REQUESTED, 0, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_OK, &e);
    CHECK(u_stats(c).key_updates_sent == 1);
    CHECK(trk_conn_get_key_update_type(c) == TRK_KEY_UPDATE_NONE);
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_key_update_on_tls12_is_a_state_error)
{
    trk_conn *c, *s;
    trk_error e;
    pair_opts o = {.max_version = "TLSv1.2"};
    REQUIRE(u_pair(&o, &c, &s));
    CHECK(strcmp(trk_conn_version(c), "TLSv1.2") == 0);
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_REQUESTED, 0, &e), TRK_STATE, &e);
    CHECK(strcmp(e.reason, "wrong ssl version") == 0);
    CHECK(strstr(e.message, "TLSv1.2") != NULL);
    CHECK(u_send(c, s, "fine"));
    trk_conn_free(c);
    trk_conn_free(s);
}

TEST(test_key_update_before_handshake_is_a_state_error)
{
    trk_ctx *cctx, *sctx;
    trk_conn *m;
    trk_error e;
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    CHECK_STATUS(trk_conn_new_memory(cctx, "localhost", &m, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_key_update(m, TRK_KEY_UPDATE_NOT_REQUESTED, 0, &e), TRK_STATE,
                 &e);
    CHECK(strcmp(e.reason, "handshake not complete") == 0);
    CHECK(trk_conn_version(m) == NULL && trk_conn_cipher(m) == NULL &&
          trk_conn_group(m) == NULL);
    trk_conn_free(m);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

TEST(test_many_key_updates_keep_data_flowing)
{
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_pair(NULL, &c, &s));
    /* both ends name the group they agreed on (OpenSSL's default: x25519 on 3.0,
     * the hybrid X25519MLKEM768 from 3.5 on) */
    CHECK(trk_conn_group(c) != NULL && trk_conn_group(c)[0] != '\0');
    CHECK(trk_conn_group(s) != NULL && strcmp(trk_conn_group(c), trk_conn_group(s)) == 0);
    for (int i = 0; i < 500; i++) {
        trk_conn *a = i % 2 ? c : s, *b = i % 2 ? s : c;
        CHECK_STATUS(trk_conn_key_update(a, i % 3 == 0 ? TRK_KEY_UPDATE_REQUESTED
                                                       : TRK_KEY_UPDATE_NOT_REQUESTED,
                                         0, &e),
                     TRK_OK, &e);
        REQUIRE(u_send(a, b, "payload") && u_send(b, a, "echo"));
    }
    trk_stats cs = u_stats(c), ss = u_stats(s);
    CHECK(cs.key_updates_sent == ss.key_updates_received);
    CHECK(ss.key_updates_sent == cs.key_updates_received);
    CHECK(cs.key_updates_sent >= 250 && ss.key_updates_sent >= 250);
    trk_conn_free(c);
    trk_conn_free(s);
}

int main(void)
{
    RUN(test_pair_handshakes_tls13);
    RUN(test_key_update_not_requested_updates_only_our_keys);
    RUN(test_key_update_requested_makes_the_peer_answer_on_its_next_write);
    RUN(test_zero_length_write_sends_the_owed_reply);
    RUN(test_key_update_none_is_rejected);
    RUN(test_second_key_update_is_a_state_error_naming_the_scheduled_type);
    RUN(test_do_handshake_forces_the_update);
    RUN(test_key_update_on_tls12_is_a_state_error);
    RUN(test_key_update_before_handshake_is_a_state_error);
    RUN(test_many_key_updates_keep_data_flowing);
    u_free_certs();
    return DONE();
}
