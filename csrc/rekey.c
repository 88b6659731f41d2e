/*
 * rekey.c - the functions of SSL_key_update(3): key update (TLS 1.3) and
 * renegotiation (TLS 1.2 and older), with the checks OpenSSL leaves to the caller.
 *
 * These calls never make a connection unusable: a refusal is TRK_STATE or TRK_ARG
 * and the connection goes on as before.
 */
#include "internal.h"

#include <string.h>

#include <openssl/err.h>

const char *trk_key_update_type_name(int type)
{
    switch (type) {
    case TRK_KEY_UPDATE_NONE:
        return "none";
    case TRK_KEY_UPDATE_NOT_REQUESTED:
        return "not_requested";
    case TRK_KEY_UPDATE_REQUESTED:
        return "requested";
    default:
        return NULL;
    }
}

int trk_key_update_type_from_name(const char *name, int *type)
{
    for (int t = TRK_KEY_UPDATE_NONE; t <= TRK_KEY_UPDATE_REQUESTED; t++) {
        const char *n = trk_key_update_type_name(t);
        if (name != NULL && n != NULL && strcmp(name, n) == 0) {
            *type = t;
            return 0;
        }
    }
    return -1;
}

int trk__version(const trk_conn *conn)
{
    if (conn->ssl == NULL || !conn->handshake_done)
        return 0;
    return SSL_version(conn->ssl);
}

/* The checks shared by every rekey call: open, not failed, handshake complete. */
static trk_status rekey_usable(trk_conn *conn, const char *op, trk_error *err)
{
    trk_status st = trk__usable(conn, op, err);
    if (st != TRK_OK)
        return st;
    if (!conn->handshake_done)
        return trk__fail(err, TRK_STATE, "handshake not complete",
                         "%s: the handshake has not completed yet", op);
    if (conn->sent_shutdown || conn->closed_by_peer)
        return trk__fail(err, TRK_STATE, "protocol is shutdown",
                         "%s: the connection is shutting down (close_notify %s)", op,
                         conn->sent_shutdown ? "sent" : "received");
    return TRK_OK;
}

trk_status trk_conn_key_update(trk_conn *conn, int type, int now, trk_error *err)
{
    if (type != TRK_KEY_UPDATE_NOT_REQUESTED && type != TRK_KEY_UPDATE_REQUESTED)
        return trk__fail(err, TRK_ARG, "invalid key update type",
                         "key_update: updatetype must be not_requested (0) or "
                         "requested (1), not %d%s",
                         type, type == TRK_KEY_UPDATE_NONE ? " (none)" : "");
    trk_status st = trk__usable(conn, "key_update", err);
    if (st != TRK_OK)
        return st;
    if (conn->dtls)
        /* DTLS 1.2's version number (0xFEFD) is not TLS 1.3's: a plain version
         * check would name no reason a user could act on. */
        return trk__fail(err, TRK_STATE, "wrong ssl version",
                         "key_update needs TLS 1.3 or DTLS 1.3; DTLS 1.3 is not in "
                         "OpenSSL 3.0 and this connection is %s (use renegotiate)",
                         conn->handshake_done ? SSL_get_version(conn->ssl) : "DTLS");
    st = rekey_usable(conn, "key_update", err);
    if (st != TRK_OK)
        return st;
    if (SSL_version(conn->ssl) != TLS1_3_VERSION)
        return trk__fail(err, TRK_STATE, "wrong ssl version",
                         "key_update needs TLS 1.3; this connection negotiated %s "
                         "(use renegotiate)",
                         SSL_get_version(conn->ssl));
    int scheduled = SSL_get_key_update_type(conn->ssl);
    if (scheduled != SSL_KEY_UPDATE_NONE)
        /* OpenSSL would refuse with "still in init" (OPENSSL-NOTES 2). */
        return trk__fail(err, TRK_STATE, "key update already scheduled",
                         "key_update: a key update (%s) is already scheduled; it goes "
                         "out with the next read, write or do_handshake",
                         trk_key_update_type_name(scheduled));
    if (conn->write_pending)
        /* OpenSSL would refuse with "bad write retry" (OPENSSL-NOTES 6). */
        return trk__fail(err, TRK_STATE, "bad write retry",
                         "key_update: a write is pending (it returned want_write or "
                         "want_read); finish that write first");
    if (SSL_key_update(conn->ssl, type) != 1)
        return trk__fail_openssl(err, TRK_STATE, NULL, "key_update refused");
    trk__err_clear();
    if (now)
        return trk_conn_do_handshake(conn, err);
    return TRK_OK;
}

int trk_conn_get_key_update_type(const trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL)
        return TRK_KEY_UPDATE_NONE;
    return SSL_get_key_update_type(conn->ssl);
}

static trk_status renegotiate(trk_conn *conn, int abbreviated, trk_error *err)
{
    const char *op = abbreviated ? "renegotiate_abbreviated" : "renegotiate";
    trk_status st = rekey_usable(conn, op, err);
    if (st != TRK_OK)
        return st;
    /* DTLS 1.2 (0xFEFD) compares above TLS 1.3 (0x0304): DTLS is never refused here */
    if (!conn->dtls && SSL_version(conn->ssl) >= TLS1_3_VERSION)
        return trk__fail(err, TRK_STATE, "wrong ssl version",
                         "%s needs TLS 1.2 or older; this connection negotiated %s "
                         "(use key_update)",
                         op, SSL_get_version(conn->ssl));
    if (conn->write_pending)
        /* As for key_update: finish the write, then start the handshake. */
        return trk__fail(err, TRK_STATE, "bad write retry",
                         "%s: a write is pending (it returned want_write or want_read); "
                         "finish that write first",
                         op);
    if (conn->hs.in_handshake)
        /* A second request in the middle of a handshake wedged both ends. */
        return trk__fail(err, TRK_STATE, "renegotiation in progress",
                         "%s: a renegotiation is already under way; it completes with "
                         "the next reads and writes",
                         op);
    if (SSL_get_options(conn->ssl) & SSL_OP_NO_RENEGOTIATION)
        return trk__fail(err, TRK_STATE, "no renegotiation",
                         "%s: renegotiation is disabled on this context "
                         "(no_renegotiation)",
                         op);
    if (!SSL_get_secure_renegotiation_support(conn->ssl))
        return trk__fail(err, TRK_STATE, "unsafe legacy renegotiation disabled",
                         "%s: the peer does not support secure renegotiation "
                         "(RFC 5746)",
                         op);
    int ok = abbreviated ? SSL_renegotiate_abbreviated(conn->ssl)
                         : SSL_renegotiate(conn->ssl);
    if (ok != 1)
        return trk__fail_openssl(err, TRK_STATE, NULL, "%s refused", op);
    conn->hs.reneg_ours = 1;
    trk__err_clear();
    return TRK_OK;
}

trk_status trk_conn_renegotiate(trk_conn *conn, trk_error *err)
{
    return renegotiate(conn, 0, err);
}

trk_status trk_conn_renegotiate_abbreviated(trk_conn *conn, trk_error *err)
{
    return renegotiate(conn, 1, err);
}

int trk_conn_renegotiate_pending(const trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL)
        return 0;
    return SSL_renegotiate_pending(conn->ssl) != 0;
}

/* verify=false: a client certificate is asked for and kept, whatever it is. */
static int accept_any(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok, (void)store;
    return 1;
}

trk_status trk_conn_set_verify_client(trk_conn *conn, int required, int verify,
                                      trk_error *err)
{
    trk_status st = trk__usable(conn, "set_verify_client", err);
    if (st != TRK_OK)
        return st;
    if (conn->role != TRK_SERVER)
        return trk__fail(err, TRK_STATE, "server only",
                         "set_verify_client: only a server asks for client "
                         "certificates");
    int mode = SSL_VERIFY_PEER | (required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_set_verify(conn->ssl, mode, verify ? NULL : accept_any);
    /* A resumed handshake asks for no certificate. Sessions made under another
     * check are not resumed here (internal.h, trk__sid_ctx_for), and OpenSSL
     * clients resume when a server renegotiates: that handshake must be full. */
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    unsigned len;
    trk__sid_ctx_for(mode, !verify, sid, &len);
    SSL_set_session_id_context(conn->ssl, sid, len);
    SSL_set_options(conn->ssl, SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    return TRK_OK;
}
