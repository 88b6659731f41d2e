/*
 * connection.c - trk_conn: creation over the three transports (socket, memory,
 * in-process pair), the loop that drives one SSL_* step through a transport, close.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* Each direction of an in-process pair buffers this much; a full TLS record
 * (16 KiB plus overhead) fits, so bulk writes rarely have to wait for the peer. */
#define PAIR_BUFFER (64 * 1024)
/* Bound on ping-pong rounds inside one call on a pair that bring the peer no
 * application data: a handshake needs a few; more means neither end can progress.
 * Rounds that do bring data are progress and do not count (trk__drive). */
#define PAIR_MAX_ROUNDS 10000

static int is_ip_literal(const char *name)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

static int is_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

/* Common part of every constructor: the SSL object, role, host name, callbacks. */
static trk_status conn_new(trk_ctx *ctx, const char *server_hostname, trk_conn **out,
                           trk_error *err)
{
    trk__err_clear();
    *out = NULL;
    if (ctx == NULL)
        return trk__fail(err, TRK_ARG, "no context", "a context is required");
    if (ctx->role == TRK_CLIENT && ctx->check_hostname &&
        (SSL_CTX_get_verify_mode(ctx->ssl_ctx) & SSL_VERIFY_PEER) &&
        (server_hostname == NULL || server_hostname[0] == '\0'))
        return trk__fail(err, TRK_ARG, "server_hostname required",
                         "this client context checks host names: give a "
                         "server_hostname (or turn check_hostname off)");
    trk_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return trk__fail(err, TRK_NOMEM, "out of memory",
                         "cannot allocate a connection");
    c->ssl = SSL_new(ctx->ssl_ctx);
    if (c->ssl == NULL) {
        free(c);
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot create an SSL object");
    }
    c->ctx = ctx;
    trk_ctx_up_ref(ctx);
    c->role = (unsigned char)ctx->role;
    c->dtls = ctx->dtls != 0;
    if (c->dtls)
        trk__dtls_conn_init(c);
    c->fd = -1;
    if (!trk__policy_set(c, &ctx->policy)) {
        trk_conn_free(c);
        return trk__fail(err, TRK_NOMEM, "out of memory",
                         "cannot allocate a connection");
    }
    c->epoch_start = trk__now();
    if (c->role == TRK_CLIENT) {
        SSL_set_connect_state(c->ssl);
        if (server_hostname != NULL && !is_ascii(server_hostname)) {
            /* OpenSSL would send the bytes as SNI and compare them with the
             * certificate's names, which are ASCII: a mismatch far from its cause. */
            trk_conn_free(c);
            return trk__fail(err, TRK_ARG, "invalid server_hostname",
                             "server_hostname '%.100s' is not ASCII: give an "
                             "internationalized name in its IDNA form (xn--...)",
                             server_hostname);
        }
        if (server_hostname != NULL && server_hostname[0] != '\0') {
            int ip = is_ip_literal(server_hostname);
            /* RFC 6066: SNI carries host names, never address literals. */
            if (!ip && !SSL_set_tlsext_host_name(c->ssl, server_hostname)) {
                trk_conn_free(c);
                return trk__fail_openssl(err, TRK_ARG, NULL,
                                         "invalid server_hostname '%.100s'",
                                         server_hostname);
            }
            if (ctx->check_hostname) {
                X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
                X509_VERIFY_PARAM_set_hostflags(param,
                                                X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, server_hostname)
                            : X509_VERIFY_PARAM_set1_host(param, server_hostname, 0);
                if (!ok) {
                    trk_conn_free(c);
                    return trk__fail_openssl(err, TRK_ARG, NULL,
                                             "invalid server_hostname '%.100s'",
                                             server_hostname);
                }
            }
        }
    } else {
        SSL_set_accept_state(c->ssl);
    }
    trk__events_attach(c);
    *out = c;
    return TRK_OK;
}

trk_conn_extra *trk__extra(trk_conn *conn)
{
    if (conn->x == NULL) {
        conn->x = calloc(1, sizeof *conn->x);
        if (conn->x != NULL) {
            conn->x->timeout = TRK_TIMEOUT_NONE;
            conn->x->wake_fd = -1;
        }
    }
    return conn->x;
}

trk_error trk__nomem_fatal = {
    .status = TRK_NOMEM,
    .reason = "out of memory",
    .message = "out of memory: the connection could not keep its events (counters "
               "or callback) and cannot go on",
};

trk_conn_extra *trk__extra_or_fail(trk_conn *conn)
{
    trk_conn_extra *x = trk__extra(conn);
    if (x == NULL && conn->fatal == NULL)
        conn->fatal = &trk__nomem_fatal;
    return x;
}

/* The connection's timeout (TRK_T_FD): blocking unless one was set. */
static double timeout_of(const trk_conn *conn)
{
    return conn->x != NULL ? conn->x->timeout : TRK_TIMEOUT_NONE;
}

trk_status trk_ctx_check_fd(const trk_ctx *ctx, int fd, trk_error *err)
{
    trk__err_clear();
    if (ctx == NULL)
        return trk__fail(err, TRK_ARG, "no context", "a context is required");
    if (fd < 0)
        return trk__fail(err, TRK_ARG, "invalid fd", "invalid file descriptor %d", fd);
    if (fcntl(fd, F_GETFL) == -1)
        return trk__fail(err, TRK_ARG, "invalid fd", "%d is not an open file descriptor",
                         fd);
    if (ctx->dtls)
        return trk__dtls_check_fd(fd, err);
    int type = 0, listening = 0;
    socklen_t tl = sizeof type, ll = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
        return TRK_OK; /* no socket (a pty): a byte stream all the same */
    if (type == SOCK_DGRAM)
        return trk__fail(err, TRK_ARG, "datagram socket",
                         "a TLS context needs a stream socket; for UDP use a DTLS "
                         "context");
    /* A listening socket never carries data: a handshake on it would wait forever
     * for a ClientHello that only its accept()ed sockets can receive. */
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 && listening)
        return trk__fail(err, TRK_ARG, "listening socket",
                         "a listening socket carries no connection: wrap a socket that "
                         "accept() returned");
    return TRK_OK;
}

trk_status trk_conn_new_fd(trk_ctx *ctx, int fd, double timeout,
                           const char *server_hostname, trk_conn **out,
                           trk_error *err)
{
    *out = NULL;
    trk_status st = trk_ctx_check_fd(ctx, fd, err);
    if (st != TRK_OK)
        return st;
    trk_conn *c;
    st = conn_new(ctx, server_hostname, &c, err);
    if (st != TRK_OK)
        return st;
    c->transport = TRK_T_FD;
    c->fd = fd;
    int type;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 && errno == ENOTSOCK)
        c->sock.notsock = 1; /* a pty: no MSG_DONTWAIT (io.c) */
    if ((st = trk_conn_set_timeout(c, timeout, err)) != TRK_OK) {
        trk_conn_free(c);
        return st;
    }
    if (c->dtls) { /* a connected UDP socket, datagram BIO (dtls.c) */
        if ((st = trk__dtls_attach_fd(c, err)) != TRK_OK) {
            trk_conn_free(c);
            return st;
        }
    } else if (!trk__socket_attach(c)) { /* io.c: a socket BIO that reads ahead */
        trk_conn_free(c);
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot attach the socket");
    }
    *out = c;
    return TRK_OK;
}

double trk__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds left before `deadline` for poll(): -1 for no deadline. */
static int remaining_ms(double deadline)
{
    if (deadline < 0)
        return -1;
    double left = deadline - trk__now();
    if (left <= 0)
        return 0;
    return left > 2e6 ? 2000000000 : (int)(left * 1000.0 + 0.999);
}

/* A signal arrived: does the caller want the call to end? (Python's Ctrl-C.) */
static int interrupted(const trk_conn *c)
{
    return c != NULL && c->interrupt_fn != NULL && c->interrupt_fn(c->interrupt_ud) != 0;
}

/* Waits for fd to become readable/writable: 1 ready, 0 timed out, -1 errno,
 * -2 interrupted (a signal, and the interrupt check `fn` said stop). */
static int wait_fd_checked(trk_interrupt_fn fn, void *ud, int fd, int for_write,
                           double deadline)
{
    struct pollfd p = {.fd = fd, .events = for_write ? POLLOUT : POLLIN};
    for (;;) {
        int r = poll(&p, 1, remaining_ms(deadline));
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return -1;
        if (fn != NULL && fn(ud) != 0)
            return -2;
    }
}

static int wait_fd(const trk_conn *c, int fd, int for_write, double deadline)
{
    return wait_fd_checked(c != NULL ? c->interrupt_fn : NULL,
                           c != NULL ? c->interrupt_ud : NULL, fd, for_write, deadline);
}

int trk__wait_input(trk_conn *c, double until)
{
    return wait_fd(c, c->fd, 0, until);
}

void trk_conn_set_interrupt_check(trk_conn *conn, trk_interrupt_fn fn, void *userdata)
{
    conn->interrupt_fn = fn;
    conn->interrupt_ud = fn != NULL ? userdata : NULL;
}

void trk_conn_set_wait_hook(trk_conn *conn, trk_wait_hook_fn fn, void *userdata)
{
    conn->wait_fn = fn;
    conn->wait_ud = fn != NULL ? userdata : NULL;
    /* A blocking read would wait in the kernel, inside OpenSSL, with the
     * connection held: with a hook every wait is trk__drive's poll, which lets it
     * go. */
    conn->sock.dontwait = timeout_of(conn) >= 0 || fn != NULL;
}

void trk__wake_readers(trk_conn *conn)
{
    trk_conn_extra *x = conn->x;
    if (x != NULL && x->wake_fd >= 0 &&
        __atomic_load_n(&x->readers_waiting, __ATOMIC_SEQ_CST) > 0) {
        uint64_t one = 1;
        if (write(x->wake_fd, &one, sizeof one) < 0) {
            /* EAGAIN: the counter is full, so it is readable already */
        }
    }
}

/* A read's wait may let the connection go when the shim asked for it and the
 * eventfd that wakes it can be had (without one it keeps the connection). */
static int read_wait_releases(trk_conn *c, trk_ssl_step step, trk_status st)
{
    if (step != trk__step_read || c->wait_fn == NULL || st != TRK_WANT_READ || c->x == NULL)
        return 0;
    if (c->x->wake_fd < 0)
        c->x->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return c->x->wake_fd >= 0;
}

/* The wait of a read without the connection: 1 go on (ready or woken), 0 timed
 * out, -1 errno, -3 a signal: the connection was not taken back (nothing of it
 * may be touched; the shim runs its handlers without it). */
static int released_wait(trk_conn *c, int fd, double deadline)
{
    trk_conn_extra *x = c->x;
    trk_wait_hook_fn fn = c->wait_fn;
    void *ud = c->wait_ud;
    int efd = x->wake_fd;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = efd, .events = POLLIN}};

    __atomic_add_fetch(&x->readers_waiting, 1, __ATOMIC_SEQ_CST);
    fn(ud, TRK_WAIT_RELEASE);
    int r = poll(p, 2, remaining_ms(deadline));
    int e = errno;
    int lost = r < 0 && e == EINTR;
    if (!lost && fn(ud, TRK_WAIT_RETAKE) != 0)
        lost = 1;
    __atomic_sub_fetch(&x->readers_waiting, 1, __ATOMIC_SEQ_CST);
    if (lost) {
        fn(ud, TRK_WAIT_ABANDON);
        return -3;
    }
    if (r > 0 && (p[1].revents & POLLIN)) {
        uint64_t v;
        if (read(efd, &v, sizeof v) < 0) {
            /* EAGAIN: another reader took the wake-up; this one saw it anyway */
        }
    }
    errno = e;
    return r > 0 ? 1 : r;
}

/* 0 and *out, or an errno; EINTR: the interrupt check said stop. */
static int connect_one(const struct addrinfo *ai, double deadline, trk_interrupt_fn fn,
                       void *ud, int *out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return errno;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            return e;
        }
        int r = wait_fd_checked(fn, ud, fd, 1, deadline);
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (r == -2)
            soerr = EINTR;
        else if (r == 0)
            soerr = ETIMEDOUT;
        else if (r < 0)
            soerr = errno;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        if (soerr != 0) {
            close(fd);
            return soerr;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *out = fd;
    return 0;
}

trk_status trk_conn_new_connect(trk_ctx *ctx, const char *host, int port, double timeout,
                                const char *server_hostname, trk_conn **out,
                                trk_error *err)
{
    return trk_conn_new_connect_checked(ctx, host, port, timeout, server_hostname, NULL,
                                        NULL, out, err);
}

trk_status trk_conn_new_connect_checked(trk_ctx *ctx, const char *host, int port,
                                        double timeout, const char *server_hostname,
                                        trk_interrupt_fn check, void *check_ud,
                                        trk_conn **out, trk_error *err)
{
    trk__err_clear();
    *out = NULL;
    if (ctx != NULL && trk_ctx_is_dtls(ctx))
        return trk__fail(err, TRK_ARG, "not for dtls",
                         "connect opens a TCP connection; for DTLS wrap a connected UDP "
                         "socket");
    if (host == NULL || host[0] == '\0')
        return trk__fail(err, TRK_ARG, "invalid host", "a host name is required");
    if (port <= 0 || port > 65535)
        return trk__fail(err, TRK_ARG, "invalid port",
                         "port must be between 1 and 65535, not %d", port);
    if (timeout < 0 && timeout != TRK_TIMEOUT_NONE)
        return trk__fail(err, TRK_ARG, "invalid timeout",
                         "timeout must be None/nil, 0 or positive");
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        trk__fail(err, TRK_SYSCALL, "name resolution failed",
                  "cannot resolve '%.100s': %s", host, gai_strerror(gai));
        return TRK_SYSCALL;
    }
    double deadline = timeout > 0 ? trk__now() + timeout : -1;
    int fd = -1, last = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0 && last != EINTR; ai = ai->ai_next)
        last = connect_one(ai, deadline, check, check_ud, &fd);
    freeaddrinfo(res);
    if (fd < 0 && last == EINTR)
        return trk__fail(err, TRK_CALLBACK, "interrupted",
                         "cannot connect to %.100s:%d: interrupted by a signal", host, port);
    if (fd < 0) {
        trk_status st = last == ETIMEDOUT && timeout > 0 ? TRK_TIMEOUT : TRK_SYSCALL;
        trk__fail(err, st, strerror(last), "cannot connect to %.100s:%d: %s", host, port,
                  strerror(last));
        if (err != NULL)
            err->sys_errno = last;
        return st;
    }
    trk_status st = trk_conn_new_fd(ctx, fd, timeout,
                                    server_hostname ? server_hostname : host, out, err);
    if (st != TRK_OK) {
        close(fd);
        return st;
    }
    (*out)->owns_fd = 1;
    return TRK_OK;
}

int trk_conn_fd(const trk_conn *conn)
{
    return conn->ssl != NULL ? conn->fd : -1;
}

trk_status trk_conn_check_fd(trk_conn *conn, int fd, trk_error *err)
{
    if (conn == NULL || conn->ssl == NULL || conn->transport != TRK_T_FD ||
        fd == conn->fd)
        return TRK_OK; /* the hot path: one comparison */
    trk__err_clear();
    if (conn->fatal != NULL)
        return trk__replay_fatal(conn, err);
    trk_error e;
    trk__fail(&e, TRK_STATE, "socket closed by its owner",
              "the socket was closed by its owner, and its number may be another "
              "file's by now: the connection no longer uses it (close the connection)");
    conn->fd = -1;
    trk__remember_fatal(conn, &e);
    if (err != NULL)
        *err = e;
    return TRK_STATE;
}

trk_status trk_conn_set_timeout(trk_conn *conn, double timeout, trk_error *err)
{
    trk__err_clear();
    if (conn->ssl == NULL)
        return trk__fail(err, TRK_STATE, "connection is closed",
                         "settimeout: the connection is closed");
    if (conn->transport != TRK_T_FD)
        return trk__fail(err, TRK_STATE, "not a socket connection",
                         "settimeout: only socket connections have a timeout");
    if (timeout != timeout || (timeout < 0 && timeout != TRK_TIMEOUT_NONE))
        return trk__fail(err, TRK_ARG, "invalid timeout",
                         "timeout must be None/nil (block), 0 (non-blocking) or a "
                         "positive number of seconds");
    if (timeout != TRK_TIMEOUT_NONE || conn->x != NULL) {
        if (trk__extra(conn) == NULL)
            return trk__fail(err, TRK_NOMEM, "out of memory",
                             "settimeout: cannot allocate");
        conn->x->timeout = timeout;
    }
    /* A blocking socket would block inside OpenSSL, past any deadline. The socket is
     * the caller's, as are its flags (a Python socket whose gettimeout() is None
     * must stay blocking): the core does not block instead (trk__drive). */
    conn->sock.dontwait = timeout >= 0 || conn->wait_fn != NULL;
    return TRK_OK;
}

double trk_conn_timeout(const trk_conn *conn)
{
    return timeout_of(conn);
}

trk_status trk_conn_new_memory(trk_ctx *ctx, const char *server_hostname,
                               trk_conn **out, trk_error *err)
{
    trk_conn *c;
    trk_status st = conn_new(ctx, server_hostname, &c, err);
    if (st != TRK_OK)
        return st;
    c->transport = TRK_T_MEMORY;
    if (c->dtls) { /* one datagram-queue BIO (dtls.c) */
        if ((st = trk__dtls_attach_memory(c, err)) != TRK_OK) {
            trk_conn_free(c);
            return st;
        }
        *out = c;
        return TRK_OK;
    }
    /* in: what feed() fills (SSL_get_rbio), out: what drain() empties
     * (SSL_get_wbio); both owned by the SSL. */
    BIO *in = BIO_new(BIO_s_mem()), *outb = BIO_new(BIO_s_mem());
    if (in == NULL || outb == NULL) {
        BIO_free(in);
        BIO_free(outb);
        trk_conn_free(c);
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot create memory BIOs");
    }
    BIO_set_mem_eof_return(in, -1); /* empty means "later", not EOF */
    SSL_set_bio(c->ssl, in, outb);
    *out = c;
    return TRK_OK;
}

static trk_status need_memory(trk_conn *conn, const char *op, trk_error *err)
{
    trk__err_clear();
    if (conn == NULL || conn->ssl == NULL)
        return trk__fail(err, TRK_STATE, "connection is closed",
                         "%s: the connection is closed", op);
    /* A failed connection may still be fed and drained: its alert is worth sending. */
    if (conn->transport != TRK_T_MEMORY)
        return trk__fail(err, TRK_STATE, "not a memory connection",
                         "%s: only memory-transport connections take this call", op);
    return TRK_OK;
}

trk_status trk_conn_feed(trk_conn *conn, const void *data, size_t len, trk_error *err)
{
    trk_status st = need_memory(conn, "feed", err);
    if (st != TRK_OK)
        return st;
    if (conn->dtls)
        return trk__dtls_feed(conn, data, len, err);
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int w = BIO_write(SSL_get_rbio(conn->ssl), data, chunk);
        if (w <= 0)
            return trk__fail_openssl(err, TRK_NOMEM, NULL, "feed: cannot buffer data");
        data = (const char *)data + w;
        len -= (size_t)w;
    }
    return TRK_OK;
}

trk_status trk_conn_feed_eof(trk_conn *conn, trk_error *err)
{
    trk_status st = need_memory(conn, "feed_eof", err);
    if (st != TRK_OK)
        return st;
    if (conn->dtls) {
        trk__dtls_feed_eof(conn);
        return TRK_OK;
    }
    BIO_set_mem_eof_return(SSL_get_rbio(conn->ssl), 0);
    return TRK_OK;
}

size_t trk_conn_outgoing(const trk_conn *conn)
{
    if (conn->ssl == NULL || conn->transport != TRK_T_MEMORY)
        return 0;
    if (conn->dtls)
        return trk__dtls_outgoing(conn);
    return BIO_ctrl_pending(SSL_get_wbio(conn->ssl));
}

trk_status trk_conn_drain(trk_conn *conn, void *buf, size_t cap, size_t *n,
                          trk_error *err)
{
    *n = 0;
    trk_status st = need_memory(conn, "drain", err);
    if (st != TRK_OK)
        return st;
    if (conn->dtls)
        return trk__dtls_drain(conn, buf, cap, n, err);
    BIO *out = SSL_get_wbio(conn->ssl);
    size_t avail = BIO_ctrl_pending(out);
    if (avail == 0 || cap == 0)
        return TRK_OK;
    int want = (int)(avail < cap ? avail : cap);
    if (want < 0)
        want = 1 << 30;
    int r = BIO_read(out, buf, want);
    if (r > 0)
        *n = (size_t)r;
    trk__err_clear();
    return TRK_OK;
}

trk_status trk_pair_new(trk_ctx *client_ctx, trk_ctx *server_ctx,
                        const char *server_hostname, trk_conn **client,
                        trk_conn **server, trk_error *err)
{
    *client = *server = NULL;
    if (client_ctx == NULL || server_ctx == NULL || client_ctx->role != TRK_CLIENT ||
        server_ctx->role != TRK_SERVER)
        return trk__fail(err, TRK_ARG, "invalid contexts",
                         "a pair needs a client context and a server context");
    if (client_ctx->dtls != server_ctx->dtls)
        return trk__fail(err, TRK_ARG, "invalid contexts",
                         "client_ctx is a %s context and server_ctx a %s one: a pair "
                         "needs two TLS contexts or two DTLS contexts",
                         client_ctx->dtls ? "DTLS" : "TLS", server_ctx->dtls ? "DTLS" : "TLS");
    trk_conn *c, *s;
    trk_status st = conn_new(client_ctx, server_hostname, &c, err);
    if (st != TRK_OK)
        return st;
    if ((st = conn_new(server_ctx, NULL, &s, err)) != TRK_OK) {
        trk_conn_free(c);
        return st;
    }
    if (trk__extra(c) == NULL || trk__extra(s) == NULL) { /* for peer and stash */
        trk_conn_free(c);
        trk_conn_free(s);
        return trk__fail(err, TRK_NOMEM, "out of memory", "cannot allocate a pair");
    }
    BIO *cb = NULL, *sb = NULL;
    if (c->dtls) { /* datagram queues that keep message boundaries (dtls.c) */
        if ((st = trk__dtls_attach_pair(c, s, err)) != TRK_OK) {
            trk_conn_free(c);
            trk_conn_free(s);
            return st;
        }
    } else if (!BIO_new_bio_pair(&cb, PAIR_BUFFER, &sb, PAIR_BUFFER)) {
        trk_conn_free(c);
        trk_conn_free(s);
        return trk__fail_openssl(err, TRK_NOMEM, NULL, "cannot create a BIO pair");
    } else {
        SSL_set_bio(c->ssl, cb, cb);
        SSL_set_bio(s->ssl, sb, sb);
    }
    c->transport = s->transport = TRK_T_PAIR;
    c->x->peer = s;
    s->x->peer = c;
    /* The client's handshake moves the server along; the server then reads the
     * client's last flight so that both ends are complete when we return. */
    st = trk_conn_do_handshake(c, err);
    if (st == TRK_OK)
        st = trk_conn_do_handshake(s, err);
    if (st != TRK_OK) {
        /* The failing end may be either; report what the caller saw. */
        trk_conn_free(c);
        trk_conn_free(s);
        return st;
    }
    *client = c;
    *server = s;
    return TRK_OK;
}

trk_conn *trk_conn_peer(const trk_conn *conn)
{
    return trk__peer(conn);
}

static int stash_reserve(trk_conn *conn, size_t extra)
{
    trk_conn_extra *c = trk__extra(conn);
    if (c == NULL)
        return 0;
    if (c->stash_off > 0 && c->stash_off == c->stash_len)
        c->stash_off = c->stash_len = 0;
    if (c->stash_cap - c->stash_len >= extra)
        return 1;
    size_t cap = c->stash_cap ? c->stash_cap : 16384;
    while (cap - c->stash_len < extra)
        cap *= 2;
    unsigned char *p = realloc(c->stash, cap);
    if (p == NULL)
        return 0;
    c->stash = p;
    c->stash_cap = cap;
    return 1;
}

/*
 * Moves the other end of a pair forward: it reads whatever is waiting for it (the
 * handshake, renegotiation and KeyUpdate messages are processed and answered inside
 * SSL_read) and keeps any application data in its stash for its own next read.
 * Returns PUMP_DATA if application data reached the peer, PUMP_MOVED if only other
 * bytes moved, 0 if nothing did.
 */
enum { PUMP_MOVED = 1, PUMP_DATA = 2 };

static int pump_peer(trk_conn *c)
{
    trk_conn *p = trk__peer(c);
    if (p == NULL || p->ssl == NULL || p->fatal != NULL || p->closed_by_peer)
        return 0;
    BIO *mine = SSL_get_rbio(c->ssl), *theirs = SSL_get_rbio(p->ssl);
    size_t mine_before = BIO_ctrl_pending(mine);
    size_t theirs_before = BIO_ctrl_pending(theirs);
    size_t stashed_before = trk__stashed(p);
    if (theirs_before == 0 && SSL_pending(p->ssl) == 0)
        return 0;
    for (;;) {
        size_t got = 0;
        int r;
        errno = 0;
        if (p->dtls) { /* one datagram at a time, boundaries kept (dtls.c) */
            if ((r = trk__dtls_read_to_stash(p)) > 0)
                continue;
        } else {
            if (!stash_reserve(p, 16384))
                break;
            r = SSL_read_ex(p->ssl, p->x->stash + p->x->stash_len, 16384, &got);
            if (r > 0) {
                p->x->stash_len += got;
                continue;
            }
        }
        /* Records the peer's own fatal error for its next call; WANT_* ends it. */
        trk__ssl_status(p, r, errno, "read", NULL);
        break;
    }
    /* The peer's event callback failed inside our call: it is our call that reports
     * it (the shim re-raises from here), not the peer's next, unrelated one. */
    if (p->callback_failed) {
        p->callback_failed = 0;
        c->callback_failed = 1;
    }
    if (trk__stashed(p) > stashed_before)
        return PUMP_DATA;
    return BIO_ctrl_pending(mine) != mine_before || BIO_ctrl_pending(theirs) != theirs_before
               ? PUMP_MOVED
               : 0;
}

/* WANT_READ with bytes already waiting in our own input: a step that stops after
 * each handshake record (no AUTO_RETRY) just has to be run again. */
static int own_input_waiting(trk_conn *conn, trk_status st)
{
    return st == TRK_WANT_READ && !conn->dtls &&
           BIO_ctrl_pending(SSL_get_rbio(conn->ssl)) > 0;
}

trk_status trk__drive(trk_conn *conn, trk_ssl_step step, void *arg, size_t *n,
                      const char *op, trk_error *err)
{
    double deadline = -1;
    int rounds = 0;
    if (conn->transport == TRK_T_FD && timeout_of(conn) > 0)
        deadline = conn->x->call_deadline > 0 ? conn->x->call_deadline
                                              : trk__now() + timeout_of(conn);
    /* The queue is empty here (every public call starts by emptying it). A step that
     * moved only application data leaves it so: OpenSSL queues errors on success
     * only while it handles handshake messages or alerts (SSL_shutdown after a
     * peer's alert does; the fuzzer found it), and the message callback tells when
     * one went by. Looking anyway costs ~200 instructions per call (P1b). */
    conn->hs.control_seen = 0;
    /* A step that must not block (a timeout, a try call) does not change the
     * caller's fd either: the socket BIO sends and receives with MSG_DONTWAIT (io.c).
     * What cannot (DTLS, whose datagram BIO is OpenSSL's; an fd that is no socket)
     * has a blocking fd made non-blocking for each step alone (never across a wait,
     * when other threads may have the connection), its flags back as found after. */
    int blocking_flags = -1;
    if (conn->transport == TRK_T_FD && (conn->dtls || conn->sock.notsock) &&
        (conn->sock.nowait || conn->sock.dontwait)) {
        int fl = fcntl(conn->fd, F_GETFL);
        if (fl != -1 && !(fl & O_NONBLOCK))
            blocking_flags = fl;
    }
    for (;;) {
        int restore = blocking_flags != -1 &&
                      fcntl(conn->fd, F_SETFL, blocking_flags | O_NONBLOCK) == 0;
        errno = 0;
        int ret = step(conn, arg, n);
        int step_errno = errno;
        if (restore)
            fcntl(conn->fd, F_SETFL, blocking_flags);
        trk_status st = ret > 0 ? TRK_OK : trk__ssl_status(conn, ret, step_errno, op, err);
        if (ret > 0 && conn->hs.control_seen)
            trk__err_clear();
        if (st == TRK_WANT_READ || st == TRK_WANT_WRITE) {
            if (conn->transport == TRK_T_PAIR && ++rounds < PAIR_MAX_ROUNDS &&
                own_input_waiting(conn, st))
                continue;
            if (conn->transport == TRK_T_PAIR && rounds < PAIR_MAX_ROUNDS) {
                int moved = pump_peer(conn);
                /* Data the peer took is progress, however much: a write of any
                 * size goes through (the docs promise a pair never asks to wait).
                 * The bound is for rounds that move only handshake bytes. */
                if (moved == PUMP_DATA)
                    rounds = 0;
                if (moved)
                    continue;
            }
            if (conn->transport == TRK_T_MEMORY && ++rounds < PAIR_MAX_ROUNDS &&
                own_input_waiting(conn, st))
                continue;
            if (conn->transport == TRK_T_FD && timeout_of(conn) != 0 && !conn->sock.nowait) {
                /* DTLS: the wait also ends when the retransmission timer fires,
                 * which then resends the last flight (DTLSv1_handle_timeout). */
                double timer, until = deadline;
                int on_timer = 0;
                if (conn->dtls && trk__dtls_timer(conn, &timer)) {
                    double at = trk__now() + timer;
                    if (deadline < 0 || at < deadline) {
                        until = at;
                        on_timer = 1;
                    }
                }
                /* A signal can end a blocking read() inside OpenSSL (EINTR, which
                 * it reports as a retry) or our poll(): ask before waiting on. */
                int r;
                if (step_errno == EINTR && interrupted(conn)) {
                    r = -2;
                } else if (read_wait_releases(conn, step, st)) {
                    r = released_wait(conn, conn->fd, until);
                    if (r == -3)
                        return trk__fail(err, TRK_CALLBACK, "interrupted",
                                         "%s: interrupted by a signal", op);
                    /* Other threads had the connection meanwhile. (Not trk__usable:
                     * a callback failure this read met stays armed.) */
                    if (conn->ssl == NULL)
                        return trk__fail(err, TRK_STATE, "connection is closed",
                                         "%s: the connection is closed", op);
                    if (conn->fatal != NULL)
                        return trk__replay_fatal(conn, err);
                    if (trk__stashed(conn) > 0)
                        return TRK__STASHED;
                } else {
                    r = wait_fd(conn, conn->fd, st == TRK_WANT_WRITE, until);
                }
                if (r > 0)
                    continue;
                if (r == -2)
                    return trk__fail(err, TRK_CALLBACK, "interrupted",
                                     "%s: interrupted by a signal", op);
                if (r == 0 && on_timer) {
                    /* A signal that landed at the tick ended no poll with EINTR:
                     * ask here too, or its verdict waits for the next signal. */
                    if (interrupted(conn))
                        return trk__fail(err, TRK_CALLBACK, "interrupted",
                                         "%s: interrupted by a signal", op);
                    trk_status ts = trk__dtls_on_timer(conn, op, err);
                    if (ts != TRK_OK && ts != TRK_WANT_READ && ts != TRK_WANT_WRITE)
                        return ts;
                    continue;
                }
                if (r == 0)
                    return trk__fail(err, TRK_TIMEOUT, "timed out",
                                     "%s timed out after %g seconds", op,
                                     timeout_of(conn));
                int e = errno;
                trk__fail(err, TRK_SYSCALL, strerror(e), "%s: poll failed: %s", op,
                          strerror(e));
                if (err != NULL)
                    err->sys_errno = e;
                return TRK_SYSCALL;
            }
        }
        if (conn->callback_failed && (st == TRK_OK || st == TRK_WANT_READ ||
                                      st == TRK_WANT_WRITE || st == TRK_CLOSED)) {
            conn->callback_failed = 0;
            return trk__fail(err, TRK_CALLBACK, "callback failed",
                             "%s: an event callback failed", op);
        }
        if (st == TRK_WANT_READ || st == TRK_WANT_WRITE)
            /* every status but OK fills err: no stale sentence reaches a shim */
            return trk__want(err, st, op);
        return st;
    }
}

int trk__call_deadline_begin(trk_conn *conn)
{
    if (conn == NULL || conn->transport != TRK_T_FD || timeout_of(conn) <= 0 ||
        conn->x->call_deadline > 0)
        return 0;
    conn->x->call_deadline = trk__now() + timeout_of(conn);
    return 1;
}

void trk__call_deadline_end(trk_conn *conn, int began)
{
    if (began && conn->x != NULL)
        conn->x->call_deadline = 0;
}

int trk__stash_reserve(trk_conn *c, size_t extra)
{
    return stash_reserve(c, extra);
}

size_t trk__stashed(const trk_conn *conn)
{
    const trk_conn_extra *x = conn->x;
    if (x == NULL)
        return 0;
    return (x->stash_len - x->stash_off) + (x->dstash != NULL ? x->dstash->bytes : 0);
}

int trk__stash_put(trk_conn *c, const void *data, size_t len)
{
    if (!stash_reserve(c, len))
        return 0;
    memcpy(c->x->stash + c->x->stash_len, data, len);
    c->x->stash_len += len;
    return 1;
}

/* The other end of a pair goes away: this end keeps what was already sent to it
 * (close_notify included), then sees EOF. The BIO pair itself is released here,
 * because OpenSSL's BIO pair must not be used with its other half freed. */
static void detach_from_peer(trk_conn *c)
{
    trk_conn *p = trk__peer(c);
    if (p == NULL)
        return;
    c->x->peer = NULL;
    p->x->peer = NULL;
    if (p->ssl == NULL || p->dtls)
        return; /* DTLS: the queues are reference-counted; p sees EOF after them */
    BIO *old = SSL_get_rbio(p->ssl);
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_null());
    if (in == NULL || out == NULL) {
        BIO_free(in);
        BIO_free(out);
        return; /* cannot happen in practice; SSL_free below still works */
    }
    char buf[4096];
    int r;
    while ((r = BIO_read(old, buf, sizeof buf)) > 0)
        BIO_write(in, buf, r);
    BIO_set_mem_eof_return(in, 0);
    SSL_set_bio(p->ssl, in, out); /* frees the old end of the BIO pair */
    trk__err_clear();
}

void trk_conn_close(trk_conn *conn)
{
    if (conn == NULL || conn->ssl == NULL)
        return;
    trk__wake_readers(conn);
    if (conn->transport == TRK_T_PAIR)
        detach_from_peer(conn);
    SSL_free(conn->ssl);
    conn->ssl = NULL;
    if (conn->owns_fd && conn->fd >= 0)
        close(conn->fd);
    conn->fd = -1;
    trk_conn_extra *x = conn->x;
    if (x != NULL) {
        free(x->stash);
        x->stash = NULL;
        if (x->dstash != NULL) {
            trk__dq_clear(x->dstash);
            free(x->dstash);
            x->dstash = NULL;
        }
        x->stash_len = x->stash_off = x->stash_cap = 0;
    }
    trk__err_clear();
}

void trk_conn_free(trk_conn *conn)
{
    if (conn == NULL)
        return;
    trk_conn_close(conn);
    if (conn->fatal != &trk__nomem_fatal)
        free(conn->fatal);
    if (conn->x != NULL && conn->x->wake_fd >= 0)
        close(conn->x->wake_fd);
    free(conn->x);
    trk_ctx_free(conn->ctx);
    free(conn);
}

trk_ctx *trk_conn_ctx(const trk_conn *conn)
{
    return conn->ctx;
}

trk_role trk_conn_role(const trk_conn *conn)
{
    return (trk_role)conn->role;
}
