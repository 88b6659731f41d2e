/* Statuses, error records, verification, context misuse; the queue stays empty. */
#include "harness.h"
#include "util.h"

#include <stdio.h>

TEST(test_every_status_has_a_name_and_message)
{
    for (int s = 0; s < TRK_STATUS_COUNT; s++) {
        CHECK(trk_status_name((trk_status)s) != NULL);
        CHECK(trk_status_message((trk_status)s) != NULL);
    }
    CHECK(trk_status_name(TRK_STATUS_COUNT) == NULL);
    CHECK(strcmp(trk_status_name(TRK_STATE), "state") == 0);
    CHECK(strcmp(trk_key_update_type_name(TRK_KEY_UPDATE_REQUESTED), "requested") == 0);
    int t = 99;
    CHECK(trk_key_update_type_from_name("not_requested", &t) == 0 && t == 0);
    CHECK(trk_key_update_type_from_name("bogus", &t) == -1);
}

/* A client that does not trust the server's certificate. */
TEST(test_untrusted_certificate_is_a_verify_error_with_code)
{
    trk_ctx *cctx, *sctx;
    trk_conn *c, *s;
    trk_error e;
    u_certs();
    REQUIRE(trk_ctx_new(TRK_CLIENT, &cctx, &e) == TRK_OK);
    REQUIRE(trk_ctx_new(TRK_SERVER, &sctx, &e) == TRK_OK);
    REQUIRE(trk_ctx_use_certificate(sctx, u_cert, u_cert_len, 1, &e) == TRK_OK);
    REQUIRE(trk_ctx_use_private_key(sctx, u_key, u_key_len, 1, &e) == TRK_OK);
    CHECK_STATUS(trk_pair_new(cctx, sctx, "localhost", &c, &s, &e), TRK_VERIFY, &e);
    CHECK(e.verify_code == 18); /* X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT */
    CHECK(strstr(e.message, "self-signed") != NULL);
    CHECK(strcmp(e.reason, "certificate verify failed") == 0);
    CHECK(e.nqueue >= 1 && strlen(e.library) > 0);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

TEST(test_hostname_mismatch_is_a_verify_error)
{
    trk_ctx *cctx, *sctx;
    trk_conn *c, *s;
    trk_error e;
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    CHECK_STATUS(trk_pair_new(cctx, sctx, "example.org", &c, &s, &e), TRK_VERIFY, &e);
    CHECK(e.verify_code == 62); /* X509_V_ERR_HOSTNAME_MISMATCH */
    /* an address literal is checked against the IP entries */
    CHECK_STATUS(trk_pair_new(cctx, sctx, "127.0.0.1", &c, &s, &e), TRK_OK, &e);
    trk_conn_free(c);
    trk_conn_free(s);
    CHECK_STATUS(trk_pair_new(cctx, sctx, "10.0.0.1", &c, &s, &e), TRK_VERIFY, &e);
    /* no name at all with the check on is an argument error, before any I/O */
    CHECK_STATUS(trk_pair_new(cctx, sctx, NULL, &c, &s, &e), TRK_ARG, &e);
    CHECK(trk_ctx_set_check_hostname(cctx, 0, &e) == TRK_OK);
    CHECK_STATUS(trk_pair_new(cctx, sctx, NULL, &c, &s, &e), TRK_OK, &e);
    trk_conn_free(c);
    trk_conn_free(s);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

TEST(test_fatal_error_is_remembered)
{
    trk_ctx *cctx, *sctx;
    trk_conn *c, *s;
    trk_error e, again;
    size_t n;
    char buf[8];
    REQUIRE(u_contexts(NULL, &cctx, &sctx));
    REQUIRE(trk_ctx_set_max_version(sctx, "TLSv1.2", &e) == TRK_OK);
    REQUIRE(trk_ctx_set_min_version(cctx, "TLSv1.3", &e) == TRK_OK);
    REQUIRE(trk_conn_new_memory(cctx, "localhost", &c, &e) == TRK_OK);
    REQUIRE(trk_conn_new_memory(sctx, NULL, &s, &e) == TRK_OK);
    CHECK_STATUS(trk_conn_do_handshake(c, &e), TRK_WANT_READ, &e);
    size_t k = trk_conn_outgoing(c);
    char *hello = malloc(k);
    trk_conn_drain(c, hello, k, &n, &e);
    trk_conn_feed(s, hello, n, &e);
    free(hello);
    CHECK_STATUS(trk_conn_do_handshake(s, &e), TRK_PROTOCOL, &e);
    CHECK(strlen(e.reason) > 0);
    CHECK(strcmp(trk_conn_state(s), "failed") == 0);
    /* every later call gets the same error, never a silent success */
    CHECK_STATUS(trk_conn_do_handshake(s, &again), TRK_PROTOCOL, &again);
    CHECK(strcmp(again.reason, e.reason) == 0);
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &again), TRK_PROTOCOL, &again);
    CHECK_STATUS(trk_conn_write(s, "x", 1, &n, &again), TRK_PROTOCOL, &again);
    trk_conn_free(c);
    trk_conn_free(s);
    trk_ctx_free(cctx);
    trk_ctx_free(sctx);
}

TEST(test_context_argument_errors)
{
    trk_ctx *ctx;
    trk_error e;
    REQUIRE(trk_ctx_new(TRK_SERVER, &ctx, &e) == TRK_OK);
    CHECK_STATUS(trk_ctx_set_min_version(ctx, "TLSv9", &e), TRK_ARG, &e);
    CHECK(strstr(e.message, "TLSv9") != NULL);
    CHECK_STATUS(trk_ctx_set_max_version(ctx, "TLSv1.2", &e), TRK_OK, &e);
    CHECK_STATUS(trk_ctx_set_min_version(ctx, "TLSv1.3", &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_use_certificate(ctx, "/nonexistent/cert.pem", 0, 0, &e), TRK_ARG,
                 &e);
    CHECK(strstr(e.message, "/nonexistent/cert.pem") != NULL && e.nqueue > 0);
    CHECK_STATUS(trk_ctx_use_certificate(ctx, "not pem", 7, 1, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_use_private_key(ctx, "garbage", 7, 1, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_load_verify(ctx, "garbage", 7, 1, NULL, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_set_ciphers(ctx, "NOT-A-CIPHER", &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_set_ciphersuites(ctx, "TLS_NOPE", &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_set_groups(ctx, "nogroup", &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_set_renegotiation(ctx, 1, 1, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_set_num_tickets(ctx, -1, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_set_check_hostname(ctx, 1, &e), TRK_ARG, &e);
    const char *bad[] = {""};
    CHECK_STATUS(trk_ctx_set_alpn(ctx, bad, 1, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_ctx_set_keylog_file(ctx, "/nonexistent/dir/keys.log", &e), TRK_ARG,
                 &e);
    trk_ctx_free(ctx);
}

/* A context whose handshakes could only fail is refused by trk_ctx_check, naming
 * the option at fault. */
TEST(test_context_check_wants_a_certificate_and_its_key)
{
    trk_ctx *sctx, *cctx;
    trk_error e;
    const char *option = NULL;
    u_certs();
    REQUIRE(trk_ctx_new(TRK_SERVER, &sctx, &e) == TRK_OK);
    REQUIRE(trk_ctx_new(TRK_CLIENT, &cctx, &e) == TRK_OK);
    CHECK_STATUS(trk_ctx_check(sctx, &option, &e), TRK_ARG, &e);
    CHECK(option != NULL && strcmp(option, "cert") == 0);
    CHECK_STATUS(trk_ctx_check(cctx, &option, &e), TRK_OK, &e); /* a client needs none */
    CHECK(option == NULL);
    REQUIRE(trk_ctx_use_certificate(sctx, u_cert, u_cert_len, 1, &e) == TRK_OK);
    CHECK_STATUS(trk_ctx_check(sctx, &option, &e), TRK_ARG, &e);
    CHECK(option != NULL && strcmp(option, "key") == 0);
    /* a certificate's PEM is no key: said so, not OpenSSL's "unsupported" */
    CHECK_STATUS(trk_ctx_use_private_key(sctx, u_cert, u_cert_len, 1, &e), TRK_ARG, &e);
    CHECK(strstr(e.message, "no private key") != NULL);
    REQUIRE(trk_ctx_use_private_key(sctx, u_key, u_key_len, 1, &e) == TRK_OK);
    CHECK_STATUS(trk_ctx_check(sctx, NULL, &e), TRK_OK, &e);
    REQUIRE(trk_ctx_use_private_key(cctx, u_key, u_key_len, 1, &e) == TRK_OK);
    CHECK_STATUS(trk_ctx_check(cctx, &option, &e), TRK_ARG, &e);
    CHECK(option != NULL && strcmp(option, "cert") == 0);
    trk_ctx_free(sctx);
    trk_ctx_free(cctx);
}

TEST(test_mismatched_key_is_rejected)
{
    trk_ctx *ctx;
    trk_error e;
    char *c2, *k2;
    size_t c2l, k2l;
    u_certs();
    REQUIRE(trk_make_test_cert("other.test", &c2, &c2l, &k2, &k2l, &e) == TRK_OK);
    REQUIRE(trk_ctx_new(TRK_SERVER, &ctx, &e) == TRK_OK);
    CHECK_STATUS(trk_ctx_use_certificate(ctx, u_cert, u_cert_len, 1, &e), TRK_OK, &e);
    CHECK_STATUS(trk_ctx_use_private_key(ctx, k2, k2l, 1, &e), TRK_ARG, &e);
    CHECK(strcmp(e.reason, "key values mismatch") == 0);
    trk_free(c2);
    trk_free(k2);
    trk_ctx_free(ctx);
}

TEST(test_make_test_cert_names)
{
    char *c, *k;
    size_t cl, kl;
    trk_error e;
    CHECK_STATUS(trk_make_test_cert("", &c, &cl, &k, &kl, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_make_test_cert("a b", &c, &cl, &k, &kl, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_make_test_cert("a,DNS:evil", &c, &cl, &k, &kl, &e), TRK_ARG, &e);
    CHECK_STATUS(trk_make_test_cert("127.0.0.1", &c, &cl, &k, &kl, &e), TRK_OK, &e);
    CHECK(strncmp(c, "-----BEGIN CERTIFICATE-----", 27) == 0);
    CHECK(strstr(k, "PRIVATE KEY") != NULL && strlen(k) == kl);
    trk_free(c);
    trk_free(k);
}

TEST(test_peer_certificate_and_exporter)
{
    trk_conn *c, *s;
    trk_error e;
    trk_cert_info info;
    unsigned char *der;
    size_t der_len;
    REQUIRE(u_pair(NULL, &c, &s));
    CHECK_STATUS(trk_conn_peer_certificate(c, &info, &der, &der_len, &e), TRK_OK, &e);
    CHECK(der != NULL && der_len > 100);
    CHECK(strcmp(info.subject, "CN=localhost") == 0);
    CHECK(strstr(info.san, "DNS:localhost") && strstr(info.san, "IP Address:127.0.0.1"));
    CHECK(strlen(info.not_after) == 20);
    trk_free(der);
    CHECK_STATUS(trk_conn_peer_certificate(s, &info, &der, &der_len, &e), TRK_OK, &e);
    CHECK(der == NULL); /* no client certificate */
    unsigned char a[32], b[32];
    CHECK_STATUS(trk_conn_export_keying_material(c, a, 32, "EXPORTER-Channel-Binding",
                                                 NULL, 0, &e),
                 TRK_OK, &e);
    CHECK_STATUS(trk_conn_export_keying_material(s, b, 32, "EXPORTER-Channel-Binding",
                                                 NULL, 0, &e),
                 TRK_OK, &e);
    CHECK(memcmp(a, b, 32) == 0);
    trk_conn_free(c);
    trk_conn_free(s);
}

struct seen {
    int count[TRK_EV_COUNT];
    int fail_on;
};

static int on_event(void *ud, trk_conn *conn, const trk_event *ev)
{
    struct seen *s = ud;
    (void)conn;
    s->count[ev->type]++;
    return (int)ev->type == s->fail_on;
}

TEST(test_events_and_callback_failure)
{
    trk_conn *c, *s;
    trk_error e;
    size_t n;
    char buf[8];
    struct seen cs = {.fail_on = -1}, ss = {.fail_on = TRK_EV_KEY_UPDATE_RECEIVED};
    REQUIRE(u_pair(NULL, &c, &s));
    trk_conn_set_event_callback(c, on_event, &cs);
    trk_conn_set_event_callback(s, on_event, &ss);
    CHECK_STATUS(trk_conn_key_update(c, TRK_KEY_UPDATE_REQUESTED, 0, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_write(c, "hi", 2, &n, &e), TRK_OK, &e);
    CHECK(cs.count[TRK_EV_KEY_UPDATE_SENT] == 1);
    /* the server's callback fails: the read reports it, the connection lives on */
    CHECK_STATUS(trk_conn_read(s, buf, sizeof buf, &n, &e), TRK_CALLBACK, &e);
    CHECK(ss.count[TRK_EV_KEY_UPDATE_RECEIVED] == 1);
    CHECK_STATUS(trk_conn_write(s, "ok", 2, &n, &e), TRK_OK, &e);
    CHECK_STATUS(trk_conn_read(c, buf, sizeof buf, &n, &e), TRK_OK, &e);
    CHECK(n == 2 && memcmp(buf, "ok", 2) == 0);
    CHECK(cs.count[TRK_EV_KEY_UPDATE_RECEIVED] == 1);
    CHECK(strcmp(trk_event_name(TRK_EV_RENEGOTIATION_DONE), "renegotiation_done") == 0);
    trk_conn_free(c);
    trk_conn_free(s);
}

int main(void)
{
    RUN(test_every_status_has_a_name_and_message);
    RUN(test_untrusted_certificate_is_a_verify_error_with_code);
    RUN(test_hostname_mismatch_is_a_verify_error);
    RUN(test_fatal_error_is_remembered);
    RUN(test_context_argument_errors);
    RUN(test_mismatched_key_is_rejected);
    RUN(test_context_check_wants_a_certificate_and_its_key);
    RUN(test_make_test_cert_names);
    RUN(test_peer_certificate_and_exporter);
    RUN(test_events_and_callback_failure);
    u_free_certs();
    return DONE();
}
