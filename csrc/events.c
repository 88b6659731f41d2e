/*
 * events.c - counters and events, taken from OpenSSL's message callback.
 *
 * OpenSSL keeps no KeyUpdate counters and its renegotiation counters count only
 * starts, on the starting side (OPENSSL-NOTES 8, 13); SSL_CB_HANDSHAKE_DONE even fires
 * on a TLS 1.2 server right after it sends a HelloRequest. So every count here comes
 * from the messages themselves: a handshake is complete when a Finished has been
 * both sent and received since the last ClientHello.
 */
#include "internal.h"

#include <stddef.h>

#define FIELD(name) {#name, offsetof(trk_stats, name)}
const trk_stat_field trk_stat_fields[] = {
    FIELD(key_updates_sent),
    FIELD(key_updates_received),
    FIELD(key_update_requests_sent),
    FIELD(key_update_requests_received),
    FIELD(automatic_rekeys),
    FIELD(renegotiations),
    FIELD(hello_requests_sent),
    FIELD(hello_requests_received),
    FIELD(handshakes),
    FIELD(alerts_sent),
    FIELD(alerts_received),
    FIELD(bytes_written),
    FIELD(bytes_read),
    FIELD(records_written),
    FIELD(records_read),
    {NULL, 0},
};
#undef FIELD

static const char *const event_names[TRK_EV_COUNT] = {
    [TRK_EV_KEY_UPDATE_SENT] = "key_update_sent",
    [TRK_EV_KEY_UPDATE_RECEIVED] = "key_update_received",
    [TRK_EV_HELLO_REQUEST_SENT] = "hello_request_sent",
    [TRK_EV_HELLO_REQUEST_RECEIVED] = "hello_request_received",
    [TRK_EV_HANDSHAKE_START] = "handshake_start",
    [TRK_EV_HANDSHAKE_DONE] = "handshake_done",
    [TRK_EV_RENEGOTIATION_DONE] = "renegotiation_done",
    [TRK_EV_ALERT_SENT] = "alert_sent",
    [TRK_EV_ALERT_RECEIVED] = "alert_received",
    [TRK_EV_REKEY_OVERDUE] = "rekey_overdue",
};

const char *trk_event_name(trk_event_type type)
{
    if ((int)type < 0 || type >= TRK_EV_COUNT)
        return NULL;
    return event_names[type];
}

void trk_conn_stats(const trk_conn *conn, trk_stats *out)
{
    static const trk_rare_counters none;
    const trk_counters *c = &conn->stats;
    const trk_rare_counters *r = conn->x != NULL ? &conn->x->rare : &none;
    out->key_updates_sent = r->key_updates_sent;
    out->key_updates_received = r->key_updates_received;
    out->key_update_requests_sent = r->key_update_requests_sent;
    out->key_update_requests_received = r->key_update_requests_received;
    out->automatic_rekeys = r->automatic_rekeys;
    out->renegotiations = c->handshakes > 1 ? c->handshakes - 1 : 0;
    out->hello_requests_sent = r->hello_requests_sent;
    out->hello_requests_received = r->hello_requests_received;
    out->handshakes = c->handshakes;
    out->alerts_sent = r->alerts_sent;
    out->alerts_received = r->alerts_received;
    out->bytes_written = c->bytes_written;
    out->bytes_read = c->bytes_read;
    out->records_written = c->records_written;
    out->records_read = c->records_read;
}

void trk_conn_set_event_callback(trk_conn *conn, trk_event_fn fn, void *userdata)
{
    if (fn == NULL && conn->x == NULL)
        return; /* none to remove */
    trk_conn_extra *x = trk__extra_or_fail(conn);
    if (x == NULL)
        return;
    x->event_fn = fn;
    x->event_ud = fn != NULL ? userdata : NULL;
}

trk_rare_counters *trk__rare(trk_conn *conn)
{
    trk_conn_extra *x = trk__extra_or_fail(conn);
    return x != NULL ? &x->rare : NULL;
}

_Thread_local int trk__in_event;

static void emit(trk_conn *c, trk_event *ev)
{
    if (c->x == NULL || c->x->event_fn == NULL)
        return;
    ev->name = event_names[ev->type];
    /* the queue as the failing call left it is what its error will report */
    ERR_set_mark();
    trk__in_event++;
    int failed = c->x->event_fn(c->x->event_ud, c, ev) != 0;
    trk__in_event--;
    ERR_pop_to_mark();
    if (failed)
        c->callback_failed = 1;
}

void trk__emit_rekey_overdue(trk_conn *c)
{
    trk_event ev = {0};
    ev.type = TRK_EV_REKEY_OVERDUE;
    ev.automatic = 1;
    emit(c, &ev);
}

static void handshake_message(trk_conn *c, int sent, const unsigned char *p, size_t len)
{
    trk_event ev = {0};
    trk_rare_counters *r;
    /* Only the first byte (msg_type) is read for every message; DTLS handshake
     * headers are 12 bytes (RFC 6347 4.2.2), TLS ones 4. */
    size_t hdr = c->dtls ? DTLS1_HM_HEADER_LENGTH : SSL3_HM_HEADER_LENGTH;
    switch (p[0]) {
    case SSL3_MT_HELLO_REQUEST:
        if ((r = trk__rare(c)) != NULL) {
            if (sent)
                r->hello_requests_sent++;
            else
                r->hello_requests_received++;
        }
        ev.type = sent ? TRK_EV_HELLO_REQUEST_SENT : TRK_EV_HELLO_REQUEST_RECEIVED;
        ev.automatic = sent && c->auto_pending;
        break;
    case DTLS1_MT_HELLO_VERIFY_REQUEST:
        c->hs.after_hvr = 1;
        return;
    case SSL3_MT_CLIENT_HELLO:
        if (c->hs.after_hvr) {
            /* DTLS cookie exchange: the ClientHello that echoes the cookie goes on
             * with the handshake the first one started (RFC 6347 4.2.1). */
            c->hs.after_hvr = 0;
            if (c->hs.in_handshake)
                return;
        }
        c->hs.in_handshake = 1;
        c->hs.fin_sent = c->hs.fin_recv = 0;
        ev.type = TRK_EV_HANDSHAKE_START;
        ev.automatic = sent && c->auto_pending;
        if (sent)
            c->auto_pending = 0;
        break;
    case SSL3_MT_FINISHED:
        if (!c->hs.in_handshake)
            return;
        if (sent)
            c->hs.fin_sent = 1;
        else
            c->hs.fin_recv = 1;
        if (!(c->hs.fin_sent && c->hs.fin_recv))
            return;
        c->hs.in_handshake = 0;
        c->hs.reneg_ours = 0;
        c->hs.overdue_told = 0;
        c->stats.handshakes++;
        c->handshake_done = 1;
        /* sockets read ahead from now on (io.c, trk__socket_attach) */
        if (c->transport == TRK_T_FD && !c->dtls && !c->sock.lost && !c->sock.on) {
            SSL_set_read_ahead(c->ssl, 1);
            c->sock.on = c->sock.ahead = 1;
        }
        c->auto_pending = 0;
        trk__epoch_reset(c); /* new keys both ways */
        trk__read_epoch_reset(c);
        if (c->stats.handshakes > 1) { /* a renegotiation (trk_conn_stats) */
            ev.type = TRK_EV_RENEGOTIATION_DONE;
        } else {
            ev.type = TRK_EV_HANDSHAKE_DONE;
        }
        break;
    case SSL3_MT_KEY_UPDATE:
        /* The handshake header (4 bytes; 12 on DTLS, which OpenSSL 3.0 never sends
         * a KeyUpdate on), then request_update (RFC 8446 4.6.3). */
        ev.request_update = len > hdr && p[hdr] == 1;
        r = trk__rare(c);
        if (sent) {
            if (r != NULL) {
                r->key_updates_sent++;
                r->key_update_requests_sent += (unsigned)ev.request_update;
            }
            ev.automatic = c->auto_pending;
            c->auto_pending = 0;
            trk__epoch_reset(c); /* our sending key changes after this message */
        } else {
            if (r != NULL) {
                r->key_updates_received++;
                r->key_update_requests_received += (unsigned)ev.request_update;
            }
            trk__read_epoch_reset(c); /* the peer's sending key changes after it */
        }
        ev.type = sent ? TRK_EV_KEY_UPDATE_SENT : TRK_EV_KEY_UPDATE_RECEIVED;
        break;
    default:
        return;
    }
    emit(c, &ev);
}

static void message(int write_p, int version, int content_type, const void *buf,
                    size_t len, SSL *ssl, void *arg)
{
    trk_conn *c = arg;
    const unsigned char *p = buf;
    (void)version, (void)ssl;
    if (content_type != SSL3_RT_HEADER && content_type != SSL3_RT_INNER_CONTENT_TYPE)
        c->hs.control_seen = 1;
    switch (content_type) {
    case SSL3_RT_HEADER:
        if (write_p)
            c->stats.records_written++;
        else
            c->stats.records_read++;
        break;
    case SSL3_RT_HANDSHAKE:
        if (len >= 1)
            handshake_message(c, write_p, p, len);
        break;
    case SSL3_RT_ALERT:
        if (len >= 2) {
            trk_event ev = {0};
            trk_rare_counters *r = trk__rare(c);
            if (r != NULL) {
                if (write_p)
                    r->alerts_sent++;
                else
                    r->alerts_received++;
            }
            if (!write_p && p[1] == SSL_AD_CLOSE_NOTIFY)
                c->close_notify_received = 1;
            ev.type = write_p ? TRK_EV_ALERT_SENT : TRK_EV_ALERT_RECEIVED;
            ev.alert_level = p[0];
            ev.alert_description = p[1];
            ev.alert_text = SSL_alert_desc_string_long(p[1]);
            emit(c, &ev);
        }
        break;
    default:
        break;
    }
}

void trk__events_attach(trk_conn *conn)
{
    SSL_set_msg_callback(conn->ssl, message);
    SSL_set_msg_callback_arg(conn->ssl, conn);
}
