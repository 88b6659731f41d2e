/* An echo peer on wolfSSL for the interop matrix, compiled at test time by
 * tests/interop/stacks.py against Debian's libwolfssl-dev:
 *
 *   wolfssl_peer role=server|client version=1.2|1.3 cafile=PATH [port=N]
 *                [certificate=PATH key=PATH]
 *
 * The line protocol is in peer_common.h. "K" is wolfSSL_update_keys(), which sends a
 * KeyUpdate asking for the peer's; wolfSSL has no call for one that does not ask,
 * so "k" is UNSUPPORTED. "R" is wolfSSL_Rehandshake() where the library has secure
 * renegotiation; the first line says whether it does ("FEATURES
 * secure_renegotiation=0|1"): Debian builds it without (HAVE_SECURE_RENEGOTIATION
 * undefined, only the server's renegotiation_info extension), so its client offers
 * neither the extension nor the SCSV. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "peer_common.h"

static WOLFSSL *ssl;
static int fd;

static void die_ssl(const char *what, int ret)
{
    char text[WOLFSSL_MAX_ERROR_SZ];
    int err = wolfSSL_get_error(ssl, ret);
    wolfSSL_ERR_error_string((unsigned long)err, text);
    die("%s: %s (%d)", what, text, err);
}

/* Retries a call that wants the socket; dies on anything else. */
static int want(const char *what, int ret)
{
    int err = wolfSSL_get_error(ssl, ret);
    if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
        wait_fd(fd, err == WOLFSSL_ERROR_WANT_WRITE);
        return 1;
    }
    if (err == WOLFSSL_ERROR_ZERO_RETURN) {
        say("CLOSED");
        exit(0);
    }
    die_ssl(what, ret);
    return 0;
}

static void send_all(const char *p, size_t n)
{
    while (n > 0) {
        int r = wolfSSL_write(ssl, p, (int)n);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else {
            want("wolfSSL_write", r);
        }
    }
}

static void command(char *line)
{
    int r;
    if (line[0] == 'S' && line[1] == ' ') {
        send_all(line + 2, unhex(line + 2));
        say("DONE S");
    } else if (strcmp(line, "K") == 0) {
        while ((r = wolfSSL_update_keys(ssl)) != WOLFSSL_SUCCESS)
            want("wolfSSL_update_keys", r);
        say("DONE K");
#ifdef HAVE_SECURE_RENEGOTIATION
    } else if (strcmp(line, "R") == 0) {
        while ((r = wolfSSL_Rehandshake(ssl)) != WOLFSSL_SUCCESS)
            want("wolfSSL_Rehandshake", r);
        say("DONE R");
#endif
    } else if (strcmp(line, "Q") == 0) {
        wolfSSL_shutdown(ssl);
        say("DONE Q");
        exit(0);
    } else {
        say("UNSUPPORTED %s", line);
    }
}

int main(int argc, char **argv)
{
    const char *role = arg(argc, argv, "role", "server");
    int tls12 = strcmp(arg(argc, argv, "version", "1.3"), "1.2") == 0;
    int server = strcmp(role, "server") == 0, r;
    WOLFSSL_CTX *ctx;
    static char buf[65536];

#ifdef HAVE_SECURE_RENEGOTIATION
    say("FEATURES secure_renegotiation=1");
#else
    say("FEATURES secure_renegotiation=0");
#endif
    wolfSSL_Init();
    if (server)
        ctx = wolfSSL_CTX_new(tls12 ? wolfTLSv1_2_server_method() : wolfTLSv1_3_server_method());
    else
        ctx = wolfSSL_CTX_new(tls12 ? wolfTLSv1_2_client_method() : wolfTLSv1_3_client_method());
    if (!ctx)
        die("wolfSSL_CTX_new failed");
    if (server) {
        if (wolfSSL_CTX_use_certificate_chain_file(ctx, arg(argc, argv, "certificate", ""))
                != WOLFSSL_SUCCESS
            || wolfSSL_CTX_use_PrivateKey_file(ctx, arg(argc, argv, "key", ""),
                                               WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
            die("cannot load the server certificate or key");
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    } else {
        if (wolfSSL_CTX_load_verify_locations(ctx, arg(argc, argv, "cafile", ""), NULL)
                != WOLFSSL_SUCCESS)
            die("cannot load the CA");
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
    }
    fd = peer_socket(role, arg(argc, argv, "port", "0"));
    ssl = wolfSSL_new(ctx);
    if (!ssl)
        die("wolfSSL_new failed");
    wolfSSL_set_fd(ssl, fd);
    if (!server) {
        wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, "localhost", 9);
        wolfSSL_check_domain_name(ssl, "localhost");
    }
    while ((r = server ? wolfSSL_accept(ssl) : wolfSSL_connect(ssl)) != WOLFSSL_SUCCESS)
        want("handshake", r);
    say("HANDSHAKE %s", wolfSSL_get_version(ssl));

    for (;;) {
        int ready = wolfSSL_pending(ssl) > 0 ? 2 : wait_either(fd);
        if (ready & 1)
            read_commands(command);
        if (ready & 2) {
            r = wolfSSL_read(ssl, buf, sizeof buf);
            if (r > 0)
                send_all(buf, (size_t)r);
            else if (wolfSSL_get_error(ssl, r) != WOLFSSL_ERROR_WANT_READ)
                want("wolfSSL_read", r);   /* CLOSED or ERROR; WANT_WRITE waits */
        }
    }
}
