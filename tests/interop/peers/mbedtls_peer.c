/* An echo peer on Mbed TLS for the interop matrix (TLS 1.2 renegotiation), compiled
 * at test time by tests/interop/stacks.py against Debian's libmbedtls-dev: 2.28 on
 * Debian 12, 3.6 on Debian 13, hence the version checks below.
 *
 *   mbedtls_peer role=server|client cafile=PATH [port=N] [certificate=PATH key=PATH]
 *                [renegotiation=0|1] [legacy=no|allow|break] [debug=0|1] [echo=1|0]
 *
 * The line protocol is in peer_common.h; "R" is mbedtls_ssl_renegotiate() (a
 * server's sends a HelloRequest, a client's runs the whole new handshake), "K"/"k"
 * are UNSUPPORTED (TLS 1.2 only here). renegotiation=1 enables renegotiation
 * (Mbed TLS disables it by default, and then answers a peer's attempt with a
 * no_renegotiation warning alert); legacy= is mbedtls_ssl_conf_legacy_renegotiation.
 * debug=1 prints the library's level-1 debug lines as "DEBUG <text>": its own words
 * for why it gave up, which its error codes do not carry. echo=0 makes it a sink:
 * it keeps what it reads and, at the end, says how much ("READ <bytes>") before
 * CLOSED or ERROR, for a test of a server that only writes. */
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/debug.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>  /* MBEDTLS_ERR_NET_*: the codes its own socket layer uses */
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_MAJOR >= 3
#include <psa/crypto.h>
#endif

#include "peer_common.h"

static mbedtls_ssl_context ssl;
static int fd;
static int echo = 1;
static unsigned long long received;

static void die_tls(const char *what, int ret)
{
    char text[200];
    if (!echo)
        say("READ %llu", received);
    mbedtls_strerror(ret, text, sizeof text);
    die("%s: %s (-0x%04x)", what, text, (unsigned)-ret);
}

static int sock_send(void *ctx, const unsigned char *p, size_t n)
{
    ssize_t r = send(*(int *)ctx, p, n, MSG_NOSIGNAL);
    if (r < 0)
        return errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_WRITE : MBEDTLS_ERR_NET_SEND_FAILED;
    return (int)r;
}

static int sock_recv(void *ctx, unsigned char *p, size_t n)
{
    ssize_t r = recv(*(int *)ctx, p, n, 0);
    if (r < 0)
        return errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_READ : MBEDTLS_ERR_NET_RECV_FAILED;
    return (int)r;
}

/* Retries a call that wants the socket; a close_notify ends the peer; dies on
 * anything else. */
static void want(const char *what, int ret)
{
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        wait_fd(fd, ret == MBEDTLS_ERR_SSL_WANT_WRITE);
        return;
    }
    if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == 0) {
        if (!echo)
            say("READ %llu", received);
        say("CLOSED");
        exit(0);
    }
    die_tls(what, ret);
}

static void send_all(const unsigned char *p, size_t n)
{
    while (n > 0) {
        int r = mbedtls_ssl_write(&ssl, p, n);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else {
            want("mbedtls_ssl_write", r);
        }
    }
}

static void command(char *line)
{
    int r;
    if (line[0] == 'S' && line[1] == ' ') {
        send_all((unsigned char *)line + 2, unhex(line + 2));
        say("DONE S");
    } else if (strcmp(line, "R") == 0) {
        while ((r = mbedtls_ssl_renegotiate(&ssl)) != 0)
            want("mbedtls_ssl_renegotiate", r);
        say("DONE R");
    } else if (strcmp(line, "Q") == 0) {
        mbedtls_ssl_close_notify(&ssl);
        say("DONE Q");
        exit(0);
    } else {
        say("UNSUPPORTED %s", line);
    }
}

static void debug_line(void *ctx, int level, const char *file, int line, const char *msg)
{
    size_t n = strlen(msg);
    (void)ctx; (void)level; (void)file; (void)line;
    while (n > 0 && msg[n - 1] == '\n')
        n--;
    say("DEBUG %.*s", (int)n, msg);
}

int main(int argc, char **argv)
{
    const char *role = arg(argc, argv, "role", "server");
    const char *legacy = arg(argc, argv, "legacy", "no");
    int server = strcmp(role, "server") == 0, r;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cert, ca;
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    static unsigned char buf[65536];

    echo = strcmp(arg(argc, argv, "echo", "1"), "0") != 0;
#if MBEDTLS_VERSION_MAJOR >= 3
    if (psa_crypto_init() != PSA_SUCCESS)  /* 3.x: its TLS needs PSA set up first */
        die("psa_crypto_init failed");
#endif
    mbedtls_ssl_init(&ssl);
    mbedtls_ssl_config_init(&conf);
    mbedtls_x509_crt_init(&cert);
    mbedtls_x509_crt_init(&ca);
    mbedtls_pk_init(&key);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    if ((r = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                   (const unsigned char *)"interop", 7)) != 0)
        die_tls("mbedtls_ctr_drbg_seed", r);
    if ((r = mbedtls_ssl_config_defaults(&conf, server ? MBEDTLS_SSL_IS_SERVER
                                                       : MBEDTLS_SSL_IS_CLIENT,
                                         MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
        die_tls("mbedtls_ssl_config_defaults", r);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
#if MBEDTLS_VERSION_MAJOR >= 3
    mbedtls_ssl_conf_min_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
    if (strcmp(arg(argc, argv, "renegotiation", "0"), "1") == 0)
        mbedtls_ssl_conf_renegotiation(&conf, MBEDTLS_SSL_RENEGOTIATION_ENABLED);
    mbedtls_ssl_conf_legacy_renegotiation(&conf,
        strcmp(legacy, "allow") == 0 ? MBEDTLS_SSL_LEGACY_ALLOW_RENEGOTIATION
        : strcmp(legacy, "break") == 0 ? MBEDTLS_SSL_LEGACY_BREAK_HANDSHAKE
        : MBEDTLS_SSL_LEGACY_NO_RENEGOTIATION);
    if (strcmp(arg(argc, argv, "debug", "0"), "1") == 0) {
        mbedtls_ssl_conf_dbg(&conf, debug_line, NULL);
        mbedtls_debug_set_threshold(1);
    }
    if (server) {
        if ((r = mbedtls_x509_crt_parse_file(&cert, arg(argc, argv, "certificate", ""))) != 0)
            die_tls("certificate", r);
#if MBEDTLS_VERSION_MAJOR >= 3
        r = mbedtls_pk_parse_keyfile(&key, arg(argc, argv, "key", ""), NULL,
                                     mbedtls_ctr_drbg_random, &drbg);
#else
        r = mbedtls_pk_parse_keyfile(&key, arg(argc, argv, "key", ""), NULL);
#endif
        if (r != 0)
            die_tls("key", r);
        if ((r = mbedtls_ssl_conf_own_cert(&conf, &cert, &key)) != 0)
            die_tls("mbedtls_ssl_conf_own_cert", r);
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        if ((r = mbedtls_x509_crt_parse_file(&ca, arg(argc, argv, "cafile", ""))) != 0)
            die_tls("cafile", r);
        mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
    if ((r = mbedtls_ssl_setup(&ssl, &conf)) != 0)
        die_tls("mbedtls_ssl_setup", r);
    if (!server && (r = mbedtls_ssl_set_hostname(&ssl, "localhost")) != 0)
        die_tls("mbedtls_ssl_set_hostname", r);
    fd = peer_socket(role, arg(argc, argv, "port", "0"));
    mbedtls_ssl_set_bio(&ssl, &fd, sock_send, sock_recv, NULL);
    while ((r = mbedtls_ssl_handshake(&ssl)) != 0)
        want("mbedtls_ssl_handshake", r);
    say("HANDSHAKE %s", mbedtls_ssl_get_version(&ssl));

    for (;;) {
        int ready = mbedtls_ssl_check_pending(&ssl) ? 2 : wait_either(fd);
        if (ready & 1)
            read_commands(command);
        if (ready & 2) {
            r = mbedtls_ssl_read(&ssl, buf, sizeof buf);
            if (r > 0 && echo)
                send_all(buf, (size_t)r);
            else if (r > 0)
                received += (unsigned)r;
            else if (r != MBEDTLS_ERR_SSL_WANT_READ)
                want("mbedtls_ssl_read", r);   /* CLOSED or ERROR; WANT_WRITE waits */
        }
    }
}
