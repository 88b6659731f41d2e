/* What the C echo peers of the interop matrix share (wolfssl_peer.c,
 * mbedtls_peer.c): arguments, the socket on 127.0.0.1, the stdin commands and the
 * line protocol of tests/interop/stacks.py (LinePeer):
 *
 *   out: LISTENING <port> | HANDSHAKE <version> | DONE <cmd> | UNSUPPORTED <cmd>
 *        | CLOSED | ERROR <the library's own words>
 *   in:  S <hex> (send) | K / k (key update, requested / not) | R (renegotiate) | Q
 *
 * Each peer supplies the TLS calls; this file has no TLS in it. Everything is
 * single-threaded: one poll() on stdin and the (non-blocking) socket. */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 10000  /* a peer that waits longer than this for its socket gives up */

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

#define die(...) do { printf("ERROR "); say(__VA_ARGS__); exit(1); } while (0)

/* key=value arguments */
static const char *arg(int argc, char **argv, const char *key, const char *dflt)
{
    size_t n = strlen(key);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=')
            return argv[i] + n + 1;
    return dflt;
}

/* The connected socket, non-blocking: a server accepts one connection on a port
 * of its own on 127.0.0.1, a client connects to 127.0.0.1:port. */
static int peer_socket(const char *role, const char *port)
{
    struct sockaddr_in a;
    int one = 1, fd;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (strcmp(role, "server") == 0) {
        socklen_t len = sizeof a;
        int ln = socket(AF_INET, SOCK_STREAM, 0);
        if (ln < 0 || bind(ln, (struct sockaddr *)&a, sizeof a) < 0 || listen(ln, 1) < 0
            || getsockname(ln, (struct sockaddr *)&a, &len) < 0)
            die("listen: %s", strerror(errno));
        say("LISTENING %d", ntohs(a.sin_port));
        fd = accept(ln, NULL, NULL);
        close(ln);
        if (fd < 0)
            die("accept: %s", strerror(errno));
    } else {
        a.sin_port = htons((unsigned short)atoi(port));
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
            die("connect: %s", strerror(errno));
    }
    /* no Nagle delay: a handshake message and the data after it are small writes */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Waits until fd is readable (want_write 0) or writable (1); dies after WAIT_MS. */
static void wait_fd(int fd, int want_write)
{
    struct pollfd p = {fd, (short)(want_write ? POLLOUT : POLLIN), 0};
    int r;
    do
        r = poll(&p, 1, WAIT_MS);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        die("timed out waiting for the socket");
}

/* Decodes hex in place; returns the byte count. */
static size_t unhex(char *s)
{
    size_t n = 0;
    for (char *p = s; p[0] && p[1]; p += 2) {
        unsigned v;
        if (sscanf(p, "%2x", &v) != 1)
            die("bad hex");
        s[n++] = (char)v;
    }
    return n;
}

/* stdin, read without blocking the loop: complete lines go to handle(line). */
static char stdin_buf[1 << 20];
static size_t stdin_len;

static void read_commands(void (*handle)(char *line))
{
    ssize_t n = read(0, stdin_buf + stdin_len, sizeof stdin_buf - 1 - stdin_len);
    if (n <= 0)
        exit(0);  /* stdin closed: the harness is gone, and so is this peer */
    stdin_len += (size_t)n;
    char *start = stdin_buf, *nl;
    while ((nl = memchr(start, '\n', stdin_len - (size_t)(start - stdin_buf))) != NULL) {
        *nl = '\0';
        handle(start);
        start = nl + 1;
    }
    stdin_len -= (size_t)(start - stdin_buf);
    memmove(stdin_buf, start, stdin_len);
}

/* Waits for stdin or the socket; returns with bit 1 set if stdin is readable and
 * bit 2 if the socket is. */
static int wait_either(int fd)
{
    struct pollfd p[2] = {{0, POLLIN, 0}, {fd, POLLIN, 0}};
    int r;
    do
        r = poll(p, 2, -1);
    while (r < 0 && errno == EINTR);
    return (p[0].revents ? 1 : 0) | (p[1].revents ? 2 : 0);
}

#endif
