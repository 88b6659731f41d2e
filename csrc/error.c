/*
 * error.c - the one place where OpenSSL's state becomes a trk_status.
 *
 * Capture, then map: each public call starts with an empty OpenSSL error queue
 * (trk__usable clears it); on failure the queue is moved into the caller's trk_error
 * and emptied, on success it is emptied too. Nothing stale reaches the next call.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

static const struct {
    const char *name;
    const char *message;
} status_table[TRK_STATUS_COUNT] = {
    [TRK_OK] = {"ok", "success"},
    [TRK_WANT_READ] = {"want_read", "the operation needs data from the peer first"},
    [TRK_WANT_WRITE] = {"want_write", "the operation needs to send data first"},
    [TRK_CLOSED] = {"closed", "the peer closed the TLS connection (close_notify)"},
    [TRK_SYSCALL] = {"syscall", "the transport failed"},
    [TRK_PROTOCOL] = {"protocol", "TLS protocol error"},
    [TRK_VERIFY] = {"verify", "certificate verification failed"},
    [TRK_STATE] = {"state", "the call is not valid in the connection's current state"},
    [TRK_TIMEOUT] = {"timeout", "the operation timed out"},
    [TRK_ARG] = {"arg", "invalid argument"},
    [TRK_NOMEM] = {"nomem", "out of memory"},
    [TRK_CALLBACK] = {"callback", "a callback raised an error"},
};

const char *trk_status_name(trk_status status)
{
    if ((int)status < 0 || status >= TRK_STATUS_COUNT)
        return NULL;
    return status_table[status].name;
}

const char *trk_status_message(trk_status status)
{
    if ((int)status < 0 || status >= TRK_STATUS_COUNT)
        return NULL;
    return status_table[status].message;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    if (src == NULL)
        src = "";
    snprintf(dst, cap, "%s", src);
}

static void reset(trk_error *err, trk_status status)
{
    err->status = status;
    err->ssl_error = 0;
    err->sys_errno = 0;
    err->verify_code = 0;
    err->alert = -1;
    err->library[0] = '\0';
    err->reason[0] = '\0';
    err->message[0] = '\0';
    err->nqueue = 0;
}

/* Moves the thread's OpenSSL error queue into err; the first (oldest) error gives
 * library and reason. Returns the first packed error code, 0 if the queue was empty. */
static unsigned long take_queue(trk_error *err)
{
    unsigned long first = 0, code;
    const char *file, *func, *data;
    int line, flags;

    /* Inside an event callback the queue below the mark is the failing call's
     * (internal.h, trk__in_event): this failure takes nothing from it. */
    if (trk__in_event > 0) {
        trk__err_clear_getter();
        return 0;
    }

    while ((code = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
        if (first == 0) {
            first = code;
            copy_str(err->library, sizeof err->library, ERR_lib_error_string(code));
            /* OpenSSL 3 queues system errors with the errno as their reason and no
             * text for it ("reason(2)"): say what the errno means. */
            if (ERR_GET_LIB(code) == ERR_LIB_SYS)
                copy_str(err->reason, sizeof err->reason, strerror(ERR_GET_REASON(code)));
            else
                copy_str(err->reason, sizeof err->reason, ERR_reason_error_string(code));
            if (err->reason[0] == '\0')
                snprintf(err->reason, sizeof err->reason, "reason(%d)",
                         ERR_GET_REASON(code));
        }
        if (err->nqueue < TRK_ERROR_QUEUE_MAX) {
            char text[TRK_ERROR_LINE_MAX];
            ERR_error_string_n(code, text, sizeof text);
            if ((flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0')
                snprintf(err->queue[err->nqueue], TRK_ERROR_LINE_MAX, "%.150s (%.45s)", text,
                         data);
            else
                copy_str(err->queue[err->nqueue], TRK_ERROR_LINE_MAX, text);
            err->nqueue++;
        }
    }
    return first;
}

static void vformat(trk_error *err, const char *fmt, va_list ap)
{
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

trk_status trk__fail(trk_error *err, trk_status status, const char *reason,
                     const char *fmt, ...)
{
    trk__err_clear_getter(); /* inside an event callback: not the failing call's */
    if (err == NULL)
        return status;
    reset(err, status);
    copy_str(err->reason, sizeof err->reason, reason);
    va_list ap;
    va_start(ap, fmt);
    vformat(err, fmt, ap);
    va_end(ap);
    return status;
}

/* Appends src to dst (holding *len chars), truncating at cap - 1. */
static void append(char *dst, size_t cap, size_t *len, const char *src)
{
    size_t n = strlen(src);
    if (n > cap - 1 - *len)
        n = cap - 1 - *len;
    memcpy(dst + *len, src, n);
    *len += n;
    dst[*len] = '\0';
}

trk_status trk__want(trk_error *err, trk_status status, const char *op)
{
    if (err == NULL)
        return status;
    size_t len = 0;
    reset(err, status);
    append(err->message, sizeof err->message, &len, op);
    append(err->message, sizeof err->message, &len, ": ");
    append(err->message, sizeof err->message, &len, status_table[status].message);
    return status;
}

trk_status trk__fail_openssl(trk_error *err, trk_status status, const char *reason,
                             const char *fmt, ...)
{
    if (err == NULL) {
        trk__err_clear();
        return status;
    }
    reset(err, status);
    take_queue(err);
    if (reason != NULL)
        copy_str(err->reason, sizeof err->reason, reason);
    char head[TRK_ERROR_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    if (err->reason[0] != '\0')
        snprintf(err->message, sizeof err->message, "%.190s: %.127s", head,
                 err->reason);
    else
        copy_str(err->message, sizeof err->message, head);
    return status;
}

void trk__remember_fatal(trk_conn *conn, const trk_error *err)
{
    if (conn->fatal != NULL)
        return;
    conn->fatal = malloc(sizeof *conn->fatal);
    if (conn->fatal != NULL)
        *conn->fatal = *err;
    trk__wake_readers(conn); /* their read can only fail now: they learn at once */
}

trk_status trk__replay_fatal(const trk_conn *conn, trk_error *err)
{
    trk__err_clear();
    if (err != NULL)
        *err = *conn->fatal;
    return conn->fatal->status;
}

trk_status trk__usable(trk_conn *conn, const char *op, trk_error *err)
{
    trk__err_clear();
    /* A callback failure is carried within one call only (finish_renegotiation to
     * the call's own step); a call that failed for a reason of its own reported it
     * with that failure, and the next call must not report it again. */
    if (conn != NULL)
        conn->callback_failed = 0;
    if (conn == NULL || conn->ssl == NULL)
        return trk__fail(err, TRK_STATE, "connection is closed",
                         "%s: the connection is closed", op);
    if (conn->fatal != NULL)
        return trk__replay_fatal(conn, err);
    return TRK_OK;
}

/* A renegotiation this end asked for is scheduled or under way, past the first
 * handshake: a failure now is most likely the peer refusing it. */
static int own_renegotiation(const trk_conn *conn)
{
    return conn->hs.reneg_ours && conn->handshake_done;
}

/* A few OpenSSL reasons mean little to someone who does not know OpenSSL; the
 * sentence says what probably happened. Matched on the reason code (OPENSSL-NOTES 19). */
static const char *hint_for(const trk_conn *conn, int lib, int reason)
{
    if (lib != ERR_LIB_SSL)
        return NULL;
    switch (reason) {
    case SSL_R_NO_RENEGOTIATION:
        if (conn->role == TRK_SERVER)
            return "the client refused this server's HelloRequest; many clients "
                   "never renegotiate (Go's by default, rustls)";
        return "the peer refused to renegotiate; OpenSSL 3 servers refuse "
               "client-initiated renegotiation unless allow_client_renegotiation is set";
    case SSL_R_UNSUPPORTED_PROTOCOL:
        return "no TLS version in common with the peer";
    case SSL_R_WRONG_VERSION_NUMBER:
        return "the peer does not speak this TLS version (or is not TLS at all)";
    case SSL_R_NO_SHARED_CIPHER:
        return "no cipher in common with the peer";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        return "the peer does not trust our certificate";
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return "a client certificate is required and the peer sent none";
    default:
        break;
    }
    if (own_renegotiation(conn))
        /* Go's and wolfSSL's servers answer a ClientHello after the handshake with
         * an unexpected_message alert; a peer that sends data in the middle of a
         * renegotiation makes OpenSSL fail with "unexpected record". */
        return "the peer refused or broke off the renegotiation this connection "
               "started (some TLS stacks never renegotiate)";
    return NULL;
}

trk_status trk__ssl_status(trk_conn *conn, int ret, int sys_errno, const char *op,
                           trk_error *err)
{
    int e = SSL_get_error(conn->ssl, ret);
    trk_error scratch;

    /* SSL_get_error answers SSL_ERROR_SSL or SYSCALL whenever an error is queued
     * (ssl_lib.c: it peeks first), so after a WANT the queue is known empty. */
    switch (e) {
    case SSL_ERROR_NONE:
        trk__err_clear();
        return TRK_OK;
    case SSL_ERROR_WANT_READ:
        return TRK_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TRK_WANT_WRITE;
    default:
        break;
    }
    if (err == NULL)
        err = &scratch;
    reset(err, TRK_PROTOCOL);
    unsigned long first = take_queue(err);
    err->ssl_error = e;
    err->sys_errno = sys_errno;

    if (e == SSL_ERROR_ZERO_RETURN && !conn->close_notify_received &&
        SSL_has_pending(conn->ssl)) {
        /* ignore_unexpected_eof turns EOF into a close, even in the middle of a
         * record: a truncated record is still an error, never a silent end. */
        err->status = TRK_SYSCALL;
        copy_str(err->reason, sizeof err->reason, "unexpected eof while reading");
        snprintf(err->message, sizeof err->message,
                 "%s: the transport ended in the middle of a record (truncated)", op);
        trk__remember_fatal(conn, err);
        return TRK_SYSCALL;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        conn->closed_by_peer = 1;
        err->status = TRK_CLOSED;
        copy_str(err->reason, sizeof err->reason, "close notify");
        if (own_renegotiation(conn))
            /* lighttpd with GnuTLS answers a renegotiation so */
            snprintf(err->message, sizeof err->message,
                     "%s: the peer closed the TLS connection (close_notify) in answer "
                     "to the renegotiation this connection started: it refused to "
                     "renegotiate",
                     op);
        else
            snprintf(err->message, sizeof err->message,
                     "%s: the peer closed the TLS connection (close_notify)", op);
        return TRK_CLOSED;
    }

    if (e == SSL_ERROR_SYSCALL && first == 0) {
        err->status = TRK_SYSCALL;
        if (sys_errno != 0) {
            copy_str(err->reason, sizeof err->reason, strerror(sys_errno));
            snprintf(err->message, sizeof err->message, "%s: transport failed: %s", op,
                     strerror(sys_errno));
        } else {
            copy_str(err->reason, sizeof err->reason, "unexpected eof while reading");
            snprintf(err->message, sizeof err->message,
                     "%s: the peer closed the transport without close_notify "
                     "(unexpected EOF)",
                     op);
        }
        trk__remember_fatal(conn, err);
        return TRK_SYSCALL;
    }

    int lib = ERR_GET_LIB(first), reason = ERR_GET_REASON(first);
    /* A received alert is queued as reason SSL_AD_REASON_OFFSET + its code ("sslv3
     * alert handshake failure" on 3.0, "ssl/tls alert handshake failure" on 3.5). */
    if (lib == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET &&
        reason < SSL_AD_REASON_OFFSET + 256)
        err->alert = reason - SSL_AD_REASON_OFFSET;
    if (lib == ERR_LIB_SYS) {
        /* OpenSSL 3.2 and later report a failed transport call (EPIPE, EBADF) as
         * a system-library error in the queue, its errno as the reason, where 3.0
         * answered SSL_ERROR_SYSCALL with an empty queue: the same failure. */
        err->status = TRK_SYSCALL;
        if (err->sys_errno == 0)
            err->sys_errno = reason;
        snprintf(err->message, sizeof err->message, "%s: transport failed: %s", op,
                 strerror(err->sys_errno));
    } else if (lib == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        /* OpenSSL 3 reports EOF without close_notify as SSL_ERROR_SSL (OPENSSL-NOTES 17). */
        err->status = TRK_SYSCALL;
        snprintf(err->message, sizeof err->message,
                 "%s: the peer closed the transport without close_notify "
                 "(unexpected EOF)",
                 op);
    } else if (lib == ERR_LIB_SSL && reason == SSL_R_READ_TIMEOUT_EXPIRED) {
        /* DTLS: the retransmission timer fired too often without an answer. */
        err->status = TRK_TIMEOUT;
        snprintf(err->message, sizeof err->message,
                 "%s: the DTLS peer did not answer any retransmission (%s)", op,
                 err->reason);
    } else if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long vr = SSL_get_verify_result(conn->ssl);
        err->status = TRK_VERIFY;
        err->verify_code = vr;
        snprintf(err->message, sizeof err->message,
                 "%s: certificate verify failed: %s (verify code %ld)", op,
                 X509_verify_cert_error_string(vr), vr);
    } else if (first == 0) {
        copy_str(err->reason, sizeof err->reason, "internal error");
        snprintf(err->message, sizeof err->message,
                 "%s: TLS failure with no OpenSSL error (SSL_get_error %d)", op, e);
    } else {
        const char *hint = hint_for(conn, lib, reason);
        snprintf(err->message, sizeof err->message, "%s: %s (%s)%s%.200s", op,
                 err->reason, err->library[0] ? err->library : "OpenSSL",
                 hint ? ": " : "", hint ? hint : "");
    }
    trk__remember_fatal(conn, err);
    return err->status;
}
