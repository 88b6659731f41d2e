/*
 * limit.c - the C limit: every benchmark workload written against OpenSSL directly,
 * with nothing between the program and libssl. The bindings are measured as ratios
 * to this program in the same run (bench/run.py).
 *
 *   limit --transport pair   --workload W --count N --cert C --key K
 *       both ends in this process, joined by an OpenSSL BIO pair (the in-memory limit)
 *   limit --transport socket --role client|server --fd FD ...
 *       one end over a connected socket the driver made (socketpair(2)); the driver
 *       runs the other end in a second process
 *   limit --transport socket --role client|server --path P --workload W4|MEM ...
 *       W4 and MEM over sockets: the server listens on the Unix socket P and the
 *       client connects once per handshake (W4 needs a fresh stream per handshake;
 *       MEM's N connections would not fit in one process's fd limit twice over)
 *
 * Workloads (bench/README.md): W1 bulk, W2 ping-pong, W3 key update, W3b TLS 1.2
 * renegotiation, W4 handshakes, MEM bytes per idle connected pair. TLS 1.3 with
 * TLS_AES_128_GCM_SHA256 and X25519 (W3b: TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256,
 * X25519); the negotiated parameters are checked and a mismatch is fatal.
 *
 * Output: one JSON object on stdout, as every implementation prints it:
 *   {"ops": N, "elapsed": s, "cpu": s, "negotiated": {...}}  timed workloads
 *   {"ops": N, "rss_delta": bytes, "negotiated": {...}}      MEM
 * elapsed is wall time, cpu this process's CPU time, both over the timed loop. In
 * socket mode the client's clock is the one that counts (it stops when the server
 * says it has read everything); the server reports its own CPU time and no
 * "negotiated" (the client checks).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define CHUNK 16384 /* W1 write size */
#define MSG 64      /* W2 message size */
#define HOST "localhost"

static struct {
    const char *workload, *transport, *role, *cert, *key, *path;
    long count;
    int fd;
} opt = {.fd = -1};

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "limit: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The workload's clocks: wall time, and this process's CPU time. */
static double wall0, wall1, cpu0, cpu1;

static void clock_start(void)
{
    cpu0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    wall0 = clock_seconds(CLOCK_MONOTONIC);
}

static void clock_stop(void)
{
    wall1 = clock_seconds(CLOCK_MONOTONIC);
    cpu1 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

/* The result line of a timed workload; neg NULL for a socket server. */
static void print_timed(long n, const char *neg)
{
    printf("{\"ops\": %ld, \"elapsed\": %.9f, \"cpu\": %.9f", n, wall1 - wall0,
           cpu1 - cpu0);
    if (neg != NULL)
        printf(", \"negotiated\": %s", neg);
    printf("}\n");
}

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL || fscanf(f, "%ld %ld", &size, &resident) != 2)
        die("cannot read /proc/self/statm");
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------------------- */
/* Contexts and connections                                                   */
/* ------------------------------------------------------------------------- */

static int tls12(void)
{
    return strcmp(opt.workload, "W3b") == 0;
}

static SSL_CTX *make_ctx(int server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    int v = tls12() ? TLS1_2_VERSION : TLS1_3_VERSION;
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, v) ||
        !SSL_CTX_set_max_proto_version(ctx, v) ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
        !SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256") ||
        /* TLS 1.2 only accepts a P-256 certificate if P-256 is among the groups; the
         * key exchange still uses X25519 (checked) */
        !SSL_CTX_set1_groups_list(ctx, tls12() ? "X25519:P-256" : "X25519"))
        die("cannot configure a context");
    if (server) {
        if (SSL_CTX_use_certificate_chain_file(ctx, opt.cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, opt.key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
            die("cannot load %s / %s", opt.cert, opt.key);
        /* W3b: the client starts the renegotiations; OpenSSL 3 refuses that unless
         * asked. */
        SSL_CTX_set_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
    } else {
        if (SSL_CTX_load_verify_locations(ctx, opt.cert, NULL) != 1)
            die("cannot load %s as a CA", opt.cert);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

/* Clients send SNI and check the host name, as every binding here does. */
static SSL *make_ssl(SSL_CTX *ctx, int server)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        die("SSL_new");
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (!SSL_set_tlsext_host_name(ssl, HOST) || !SSL_set1_host(ssl, HOST))
            die("cannot set the host name");
    }
    return ssl;
}

static const char *group_name(SSL *ssl)
{
    int nid = SSL_get_negotiated_group(ssl);
    return nid > 0 ? OBJ_nid2sn(nid) : "?";
}

/* Fails loudly unless the connection negotiated what the workload pins. */
static void check_negotiated(SSL *ssl, char *out, size_t outlen)
{
    const char *want_v = tls12() ? "TLSv1.2" : "TLSv1.3";
    const char *want_c = tls12() ? "ECDHE-ECDSA-AES128-GCM-SHA256" : "TLS_AES_128_GCM_SHA256";
    const char *v = SSL_get_version(ssl), *c = SSL_get_cipher_name(ssl);
    const char *g = group_name(ssl);
    if (strcmp(v, want_v) != 0 || strcmp(c, want_c) != 0 || strcmp(g, "X25519") != 0)
        die("negotiated %s %s %s, wanted %s %s X25519", v, c, g, want_v, want_c);
    snprintf(out, outlen, "{\"version\": \"%s\", \"cipher\": \"%s\", \"group\": \"%s\"}",
             v, c, g);
}

/* ------------------------------------------------------------------------- */
/* Both ends in this process over a BIO pair                                  */
/* ------------------------------------------------------------------------- */

static void want(SSL *ssl, int r, const char *what)
{
    int e = SSL_get_error(ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        die("%s failed (SSL_get_error %d)", what, e);
}

static void pair_handshake(SSL *c, SSL *s)
{
    for (int i = 0; i < 100; i++) {
        int rc = SSL_do_handshake(c), rs = SSL_do_handshake(s);
        if (rc == 1 && rs == 1)
            return;
        if (rc != 1)
            want(c, rc, "client handshake");
        if (rs != 1)
            want(s, rs, "server handshake");
    }
    die("handshake does not progress");
}

/* A BIO pair with OpenSSL's default buffer (17 KiB: one full record fits). */
static void pair_new(SSL_CTX *cctx, SSL_CTX *sctx, SSL **c, SSL **s)
{
    BIO *bc, *bs;
    *c = make_ssl(cctx, 0);
    *s = make_ssl(sctx, 1);
    if (!BIO_new_bio_pair(&bc, 0, &bs, 0))
        die("BIO_new_bio_pair");
    SSL_set_bio(*c, bc, bc);
    SSL_set_bio(*s, bs, bs);
    pair_handshake(*c, *s);
}

static void write_all(SSL *ssl, const void *buf, size_t len)
{
    size_t n;
    int r = SSL_write_ex(ssl, buf, len, &n);
    if (r != 1 || n != len)
        die("write of %zu bytes failed (SSL_get_error %d)", len, SSL_get_error(ssl, r));
}

static void read_exact(SSL *ssl, void *buf, size_t len)
{
    size_t got = 0, n;
    while (got < len) {
        int r = SSL_read_ex(ssl, (char *)buf + got, len - got, &n);
        if (r != 1)
            die("read failed (SSL_get_error %d)", SSL_get_error(ssl, r));
        got += n;
    }
}

static void run_pair(void)
{
    static unsigned char buf[CHUNK], rbuf[CHUNK];
    char neg[200];
    SSL_CTX *cctx = make_ctx(0), *sctx = make_ctx(1);
    SSL *c, *s;
    long n = opt.count;

    memset(buf, 'x', sizeof buf);
    if (strcmp(opt.workload, "W4") == 0 || strcmp(opt.workload, "MEM") == 0) {
        /* W4: a pair is one full handshake, then one byte server -> client (the
         * client thereby reads its session tickets, as over a socket). */
        int mem = strcmp(opt.workload, "MEM") == 0;
        SSL **keep = mem ? calloc((size_t)n * 2, sizeof *keep) : NULL;
        long rss0 = 0;
        pair_new(cctx, sctx, &c, &s);
        check_negotiated(c, neg, sizeof neg);
        SSL_free(c);
        SSL_free(s);
        if (mem)
            rss0 = rss_bytes();
        clock_start();
        for (long i = 0; i < n; i++) {
            pair_new(cctx, sctx, &c, &s);
            write_all(s, "x", 1);
            read_exact(c, rbuf, 1);
            if (mem) {
                keep[2 * i] = c;
                keep[2 * i + 1] = s;
            } else {
                SSL_free(c);
                SSL_free(s);
            }
        }
        clock_stop();
        if (mem)
            printf("{\"ops\": %ld, \"rss_delta\": %ld, \"negotiated\": %s}\n", n,
                   rss_bytes() - rss0, neg);
        else
            print_timed(n, neg);
        return;
    }

    pair_new(cctx, sctx, &c, &s);
    check_negotiated(c, neg, sizeof neg);
    clock_start();
    if (strcmp(opt.workload, "W1") == 0) {
        for (long i = 0; i < n; i++) {
            write_all(c, buf, CHUNK);
            read_exact(s, rbuf, CHUNK);
        }
    } else if (strcmp(opt.workload, "W2") == 0) {
        for (long i = 0; i < n; i++) {
            write_all(c, buf, MSG);
            read_exact(s, rbuf, MSG);
            write_all(s, rbuf, MSG);
            read_exact(c, rbuf, MSG);
        }
    } else if (strcmp(opt.workload, "W3") == 0) {
        for (long i = 0; i < n; i++) {
            if (SSL_key_update(c, SSL_KEY_UPDATE_NOT_REQUESTED) != 1)
                die("SSL_key_update");
            write_all(c, "x", 1);
            read_exact(s, rbuf, 1);
        }
    } else if (strcmp(opt.workload, "W3b") == 0) {
        for (long i = 0; i < n; i++) {
            size_t w;
            int r, k;
            if (SSL_renegotiate(c) != 1)
                die("SSL_renegotiate");
            /* The client's write runs the handshake; the server's reads answer it. */
            for (k = 0; (r = SSL_write_ex(c, "x", 1, &w)) != 1; k++) {
                want(c, r, "renegotiating write");
                if (k > 20)
                    die("renegotiation does not progress");
                r = SSL_read_ex(s, rbuf, 1, &w);
                if (r != 1)
                    want(s, r, "renegotiating read");
                else
                    die("server read data before the renegotiation finished");
            }
            read_exact(s, rbuf, 1);
        }
        if (SSL_total_renegotiations(c) != n || SSL_session_reused(c))
            die("expected %ld full renegotiations, saw %ld", n,
                SSL_total_renegotiations(c));
    } else {
        die("unknown workload %s", opt.workload);
    }
    clock_stop();
    print_timed(n, neg);
}

/* ------------------------------------------------------------------------- */
/* One end over a socket; the other end is another process                    */
/* ------------------------------------------------------------------------- */

static void sock_handshake(SSL *ssl, int server)
{
    int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
    if (r != 1)
        die("handshake failed (SSL_get_error %d)", SSL_get_error(ssl, r));
}

/* One byte each way, so that both processes start the clock together. */
static void sync_ends(SSL *ssl, int server)
{
    unsigned char b;
    if (server) {
        read_exact(ssl, &b, 1);
        write_all(ssl, "s", 1);
    } else {
        write_all(ssl, "s", 1);
        read_exact(ssl, &b, 1);
    }
}

static int unix_socket(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    return fd;
}

static void unix_addr(struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (strlen(opt.path) >= sizeof a->sun_path)
        die("socket path too long");
    strcpy(a->sun_path, opt.path);
}

/* Waits up to 10 s for the server process to listen on --path. */
static int unix_connect(const struct sockaddr_un *a)
{
    for (int tries = 0; tries < 1000; tries++) {
        int fd = unix_socket();
        if (connect(fd, (const struct sockaddr *)a, sizeof *a) == 0)
            return fd;
        close(fd);
        if (errno != ENOENT && errno != ECONNREFUSED)
            break;
        usleep(10000);
    }
    die("cannot connect to %s: %s", opt.path, strerror(errno));
    return -1;
}

/*
 * W4 and MEM over sockets: connections to/from the Unix socket at --path, one per
 * handshake. Each: connect/accept, a full handshake, one byte server -> client (the
 * client thereby takes its session tickets off the wire). W4 closes each connection
 * (SSL_free, close: no close_notify, as a binding's close() does) and times N of them
 * after one untimed connection that checks the parameters and lines the processes up;
 * MEM keeps N open and reports the RSS they added to this process.
 */
static void run_socket_conns(SSL_CTX *ctx, int server)
{
    struct sockaddr_un a;
    unsigned char b;
    char neg[200] = "null";
    int mem = strcmp(opt.workload, "MEM") == 0, lfd = -1;
    long n = opt.count, rss0 = 0;

    unix_addr(&a);
    if (server) {
        lfd = unix_socket();
        if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 512) != 0)
            die("cannot listen on %s: %s", opt.path, strerror(errno));
    }
    for (long i = -1; i < n; i++) {
        if (i == 0) {
            rss0 = rss_bytes();
            clock_start();
        }
        int fd = server ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : unix_connect(&a);
        if (fd < 0)
            die("accept: %s", strerror(errno));
        SSL *ssl = make_ssl(ctx, server);
        SSL_set_fd(ssl, fd);
        sock_handshake(ssl, server);
        if (server)
            write_all(ssl, "x", 1);
        else
            read_exact(ssl, &b, 1);
        if (i < 0 && !server)
            check_negotiated(ssl, neg, sizeof neg);
        if (i < 0 || !mem) {
            SSL_free(ssl);
            close(fd);
        } /* else kept open until the process exits */
    }
    clock_stop();
    if (mem)
        printf("{\"ops\": %ld, \"rss_delta\": %ld, \"negotiated\": %s}\n", n,
               rss_bytes() - rss0, neg);
    else
        print_timed(n, server ? NULL : neg);
}

static void run_socket(void)
{
    static unsigned char buf[CHUNK], rbuf[CHUNK];
    int server = strcmp(opt.role, "server") == 0;
    SSL_CTX *ctx = make_ctx(server);
    char neg[200] = "null";
    long n = opt.count;
    SSL *ssl;

    memset(buf, 'x', sizeof buf);
    if (strcmp(opt.workload, "MEM") == 0 || strcmp(opt.workload, "W4") == 0) {
        run_socket_conns(ctx, server);
        return;
    }
    if (opt.fd < 0)
        die("--fd is required");
    ssl = make_ssl(ctx, server);
    SSL_set_fd(ssl, opt.fd);
    sock_handshake(ssl, server);
    if (!server)
        check_negotiated(ssl, neg, sizeof neg);
    sync_ends(ssl, server);
    clock_start();
    if (strcmp(opt.workload, "W1") == 0) {
        if (server) {
            long total = n * CHUNK, got = 0;
            while (got < total) {
                size_t k;
                int r = SSL_read_ex(ssl, rbuf, CHUNK, &k);
                if (r != 1)
                    die("read failed (SSL_get_error %d)", SSL_get_error(ssl, r));
                got += (long)k;
            }
        } else {
            for (long i = 0; i < n; i++)
                write_all(ssl, buf, CHUNK);
        }
    } else if (strcmp(opt.workload, "W2") == 0) {
        for (long i = 0; i < n; i++) {
            if (server) {
                read_exact(ssl, rbuf, MSG);
                write_all(ssl, rbuf, MSG);
            } else {
                write_all(ssl, buf, MSG);
                read_exact(ssl, rbuf, MSG);
            }
        }
    } else if (strcmp(opt.workload, "W3") == 0) {
        for (long i = 0; i < n; i++) {
            if (server) {
                read_exact(ssl, rbuf, 1);
            } else {
                if (SSL_key_update(ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1)
                    die("SSL_key_update");
                write_all(ssl, "x", 1);
            }
        }
    } else if (strcmp(opt.workload, "W3b") == 0) {
        for (long i = 0; i < n; i++) {
            if (server) {
                read_exact(ssl, rbuf, 1);
            } else {
                if (SSL_renegotiate(ssl) != 1)
                    die("SSL_renegotiate");
                write_all(ssl, "x", 1); /* runs the handshake, then sends */
            }
        }
        if (!server && (SSL_total_renegotiations(ssl) != n || SSL_session_reused(ssl)))
            die("expected %ld full renegotiations", n);
    } else {
        die("unknown workload %s", opt.workload);
    }
    /* The server says when it has read everything; the client's clock stops then. */
    if (server) {
        write_all(ssl, "d", 1);
    } else {
        read_exact(ssl, rbuf, 1);
    }
    clock_stop();
    print_timed(n, server ? NULL : neg);
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--workload") == 0)
            opt.workload = v;
        else if (strcmp(k, "--count") == 0)
            opt.count = atol(v);
        else if (strcmp(k, "--transport") == 0)
            opt.transport = v;
        else if (strcmp(k, "--role") == 0)
            opt.role = v;
        else if (strcmp(k, "--fd") == 0)
            opt.fd = atoi(v);
        else if (strcmp(k, "--path") == 0)
            opt.path = v;
        else if (strcmp(k, "--cert") == 0)
            opt.cert = v;
        else if (strcmp(k, "--key") == 0)
            opt.key = v;
        else
            die("unknown option %s", k);
    }
    if (!opt.workload || !opt.transport || !opt.cert || !opt.key || opt.count <= 0)
        die("usage: limit --transport pair|socket --workload W --count N --cert C "
            "--key K [--role client|server --fd FD | --path P]");
    if (strcmp(opt.transport, "pair") == 0)
        run_pair();
    else if (strcmp(opt.transport, "socket") == 0 && opt.role != NULL)
        run_socket();
    else
        die("bad --transport/--role");
    return 0;
}
