/*
 * tlsrekey.h - the contract of the tlsrekey core.
 *
 * The core owns every OpenSSL call. The Python and Lua shims include this header
 * and nothing else of the core; they convert arguments, call a trk_ function and
 * convert its status. All policy lives here.
 *
 * Conventions (true of every function below unless it says otherwise):
 *
 *  - A function that can fail returns a trk_status. TRK_OK means done; results come
 *    back through out-parameters. On any other status the trk_error the caller passed
 *    is filled in (status, SSL_get_error value, errno, verify result, OpenSSL library
 *    and reason, a sentence, the whole OpenSSL error queue). On TRK_OK the trk_error
 *    is left untouched, so the hot path never pays for it. `err` may be NULL.
 *  - The OpenSSL error queue of the calling thread is empty when a trk_ function
 *    returns, whatever the outcome: errors never leak into the next call.
 *  - One connection (and both ends of a trk_pair together) must be driven by one
 *    thread at a time; the shims serialise. Distinct connections may be used from
 *    distinct threads at once, also when they share contexts: a context's reference
 *    count is atomic, and what its callbacks read during handshakes (ALPN list, key
 *    log) is locked against the setters. The other context setters change OpenSSL's
 *    SSL_CTX and must not run while another thread makes a connection from it.
 *  - The core never stores interpreter objects: callbacks get a `void *`.
 */
#ifndef TLSREKEY_H
#define TLSREKEY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TRK_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------- */
/* Statuses and errors                                                        */
/* ------------------------------------------------------------------------- */

/*
 * One table (csrc/error.c) gives each status its name (the Lua err.code and the
 * suffix of the Python class) and a default sentence.
 */
typedef enum trk_status {
    TRK_OK = 0,      /* done */
    TRK_WANT_READ,   /* non-blocking or memory transport: bytes must arrive first */
    TRK_WANT_WRITE,  /* non-blocking or memory transport: bytes must leave first */
    TRK_CLOSED,      /* the peer sent close_notify */
    TRK_SYSCALL,     /* transport failed, or EOF without close_notify */
    TRK_PROTOCOL,    /* alert, handshake failure, bad record, refused renegotiation */
    TRK_VERIFY,      /* certificate or host name verification failed */
    TRK_STATE,       /* a valid call at the wrong time (before the handshake, key
                        update on TLS 1.2, renegotiation on TLS 1.3, after close, on a
                        socket its owner closed: trk_conn_check_fd) */
    TRK_TIMEOUT,     /* blocking transport: the timeout passed */
    TRK_ARG,         /* a bad argument value (key update type NONE, unknown version) */
    TRK_NOMEM,       /* allocation failed */
    TRK_CALLBACK,    /* a user callback reported failure; the shim re-raises what
                        it parked (the core knows nothing more) */
    TRK_STATUS_COUNT
} trk_status;

/* "ok", "want_read", "want_write", "closed", "syscall", "protocol", "verify",
 * "state", "timeout", "arg", "nomem", "callback"; NULL for an unknown value. */
const char *trk_status_name(trk_status status);
/* A default sentence for the status ("the peer closed the connection", ...). */
const char *trk_status_message(trk_status status);

#define TRK_ERROR_QUEUE_MAX 8
#define TRK_ERROR_LINE_MAX 200

typedef struct trk_error {
    trk_status status;
    int ssl_error;          /* SSL_get_error() value, 0 when not from an SSL call */
    int sys_errno;          /* errno captured at the failure, 0 if none */
    long verify_code;       /* X509_V_* verify result, 0 (X509_V_OK) if not relevant */
    int alert;              /* the alert the peer sent that ended the call (its RFC 8446
                               section 6.2 code: 40 handshake_failure, ...), -1 if the
                               failure was not a peer's alert; the same on every OpenSSL
                               version, where `reason` words it differently */
    char library[48];       /* OpenSSL library of the first queued error, "" if none */
    char reason[128];       /* OpenSSL's reason ("wrong ssl version"), or the core's
                               own short reason for checks it makes itself */
    char message[320];      /* one readable sentence, no trailing newline */
    int nqueue;             /* lines in queue[] */
    char queue[TRK_ERROR_QUEUE_MAX][TRK_ERROR_LINE_MAX]; /* the whole OpenSSL queue */
} trk_error;

/* ------------------------------------------------------------------------- */
/* Key update types: OpenSSL's values                                          */
/* ------------------------------------------------------------------------- */

#define TRK_KEY_UPDATE_NONE (-1)
#define TRK_KEY_UPDATE_NOT_REQUESTED 0
#define TRK_KEY_UPDATE_REQUESTED 1

/* "none", "not_requested", "requested"; NULL for another value. */
const char *trk_key_update_type_name(int type);
/* The inverse; returns 0 and sets *type, or -1 for an unknown name. */
int trk_key_update_type_from_name(const char *name, int *type);

/* ------------------------------------------------------------------------- */
/* Contexts                                                                   */
/* ------------------------------------------------------------------------- */

typedef struct trk_ctx trk_ctx;
typedef struct trk_conn trk_conn;

typedef enum trk_role { TRK_CLIENT = 0, TRK_SERVER = 1 } trk_role;

/* "client" / "server". */
const char *trk_role_name(trk_role role);

/*
 * Creates a context with safe defaults:
 *  - minimum version TLS 1.2, maximum the highest OpenSSL supports;
 *  - client: peer verification on (against nothing until a CA is loaded, see
 *    trk_ctx_load_default_verify), host name check on;
 *  - server: no client certificate requested, client-initiated renegotiation refused
 *    (OpenSSL 3 default), insecure legacy renegotiation never allowed;
 *  - SSL_MODE_AUTO_RETRY and SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER.
 * The caller owns one reference; trk_ctx_free drops it. Connections hold their own.
 */
trk_status trk_ctx_new(trk_role role, trk_ctx **out, trk_error *err);
/*
 * The same for DTLS (datagrams over UDP; see "DTLS" below): versions DTLS 1.2 only
 * by default ("DTLSv1" can be allowed with trk_ctx_set_min_version), and a server
 * answers every first ClientHello with a HelloVerifyRequest (cookie exchange, see
 * trk_ctx_set_dtls_cookie_exchange). Every other context setter works as for TLS;
 * TLS 1.3 settings (ciphersuites, num_tickets) are accepted and have no effect.
 */
trk_status trk_ctx_new_dtls(trk_role role, trk_ctx **out, trk_error *err);
/* 1 for a context made by trk_ctx_new_dtls. */
int trk_ctx_is_dtls(const trk_ctx *ctx);
void trk_ctx_up_ref(trk_ctx *ctx);
void trk_ctx_free(trk_ctx *ctx);           /* drops one reference; NULL is fine */
trk_role trk_ctx_role(const trk_ctx *ctx);

/* Protocol versions by name: "TLSv1.2", "TLSv1.3" (also "TLSv1", "TLSv1.1" where
 * OpenSSL's security level allows them); DTLS contexts take "DTLSv1.2" and "DTLSv1"
 * only. NULL means "no limit" (OpenSSL's range). TRK_ARG for an unknown name, a
 * name of the other protocol, or min > max. */
trk_status trk_ctx_set_min_version(trk_ctx *ctx, const char *name, trk_error *err);
trk_status trk_ctx_set_max_version(trk_ctx *ctx, const char *name, trk_error *err);

/*
 * Certificate material. When `is_pem` is nonzero, `data`/`len` is PEM text held in
 * memory (the core copies what it needs); otherwise `data` is a NUL-terminated file
 * path (PEM) and `len` is ignored. A certificate chain in the PEM is used whole.
 * TRK_ARG when the file cannot be read or the PEM does not parse; trk_ctx_use_private_key
 * also checks that the key matches the certificate (TRK_ARG "key values mismatch").
 */
trk_status trk_ctx_use_certificate(trk_ctx *ctx, const char *data, size_t len,
                                   int is_pem, trk_error *err);
trk_status trk_ctx_use_private_key(trk_ctx *ctx, const char *data, size_t len,
                                   int is_pem, trk_error *err);

/*
 * Whether connections made from the context can work, once every option is set:
 * a server holds a certificate and its private key, and a context holding a key
 * holds the certificate it goes with. Without them every handshake fails later,
 * far from the cause ("no shared cipher" on a server without a certificate). The
 * shims call it last when they build a context from options. TRK_ARG otherwise;
 * *option (option may be NULL) is set to the option at fault, "cert" or "key",
 * which the shims name with the sentence (it does not name it itself, so that a
 * shim can give the option its own name: pair()'s client_cert).
 */
trk_status trk_ctx_check(const trk_ctx *ctx, const char **option, trk_error *err);

/* Trust anchors: a CA file (path or in-memory PEM per `is_pem`; `data` may be NULL)
 * and/or a CA directory (`capath`, may be NULL). */
trk_status trk_ctx_load_verify(trk_ctx *ctx, const char *data, size_t len, int is_pem,
                               const char *capath, trk_error *err);
/* The system trust store (SSL_CTX_set_default_verify_paths). */
trk_status trk_ctx_load_default_verify(trk_ctx *ctx, trk_error *err);

typedef enum trk_verify_mode {
    TRK_VERIFY_NONE = 0,     /* client: accept any server; server: ask no certificate */
    TRK_VERIFY_OPTIONAL = 1, /* server: ask for a client certificate, verify if sent */
    TRK_VERIFY_REQUIRED = 2  /* client: verify the server; server: require one */
} trk_verify_mode;
trk_status trk_ctx_set_verify(trk_ctx *ctx, trk_verify_mode mode, trk_error *err);
/* Client only: check the certificate against the connection's server_hostname
 * (a DNS name or an IP address literal). On by default for clients. */
trk_status trk_ctx_set_check_hostname(trk_ctx *ctx, int on, trk_error *err);
int trk_ctx_check_hostname(const trk_ctx *ctx);

/* OpenSSL cipher strings: TLS 1.2 list (SSL_CTX_set_cipher_list), TLS 1.3 suites
 * (SSL_CTX_set_ciphersuites), groups (SSL_CTX_set1_groups_list). TRK_ARG if OpenSSL
 * accepts none of the names. */
trk_status trk_ctx_set_ciphers(trk_ctx *ctx, const char *list, trk_error *err);
trk_status trk_ctx_set_ciphersuites(trk_ctx *ctx, const char *list, trk_error *err);
trk_status trk_ctx_set_groups(trk_ctx *ctx, const char *list, trk_error *err);

/* ALPN: `n` NUL-terminated protocol names, each 1..255 bytes. A client offers them
 * in order; a server picks the first of its own list that the client offered and
 * refuses the handshake (no_application_protocol) if there is none. n == 0 clears. */
trk_status trk_ctx_set_alpn(trk_ctx *ctx, const char *const *protos, size_t n,
                            trk_error *err);

/* Session cache (servers: the internal cache; clients: none is kept by the core) and
 * TLS 1.3 session tickets sent by a server after each handshake (default 2; 0 none). */
trk_status trk_ctx_set_session_cache(trk_ctx *ctx, int on, trk_error *err);
trk_status trk_ctx_set_num_tickets(trk_ctx *ctx, int n, trk_error *err);
/* TLS 1.2 session tickets (RFC 5077), on by default; off: SSL_OP_NO_TICKET. GnuTLS
 * clients fail a rehandshake whose ServerHello drops the ticket extension the first
 * one had, which OpenSSL does when resumption on renegotiation is off (as after
 * trk_conn_set_verify_client): a server that will do that turns tickets off. */
trk_status trk_ctx_set_session_tickets(trk_ctx *ctx, int on, trk_error *err);

/* Appends NSS key log lines (SSLKEYLOGFILE format) to the file at `path`; NULL stops. */
trk_status trk_ctx_set_keylog_file(trk_ctx *ctx, const char *path, trk_error *err);
/* The same with the path from the SSLKEYLOGFILE environment variable, when the user
 * asks for it (keylog=True / keylog = true); unset or empty: no key log. Wireshark
 * reads the file; TLS 1.3 lines hold the first traffic secrets only, and Wireshark
 * derives each later generation from them when it sees a KeyUpdate in the capture
 * (RFC 8446 7.2), so a capture of a key-updating connection decrypts throughout. */
trk_status trk_ctx_set_keylog_from_env(trk_ctx *ctx, trk_error *err);

/* Renegotiation policy. allow_client: a server accepts client-initiated
 * renegotiation (SSL_OP_ALLOW_CLIENT_RENEGOTIATION). none: no renegotiation in
 * either direction (SSL_OP_NO_RENEGOTIATION): renegotiate() fails at once with
 * TRK_STATE and a peer's request is refused with a no_renegotiation alert. */
trk_status trk_ctx_set_renegotiation(trk_ctx *ctx, int allow_client, int none,
                                     trk_error *err);

/* EOF without close_notify: TRK_SYSCALL "unexpected eof while reading" by default;
 * on: treated as a clean close (TRK_CLOSED), SSL_OP_IGNORE_UNEXPECTED_EOF. */
trk_status trk_ctx_set_ignore_unexpected_eof(trk_ctx *ctx, int on, trk_error *err);
/* SSL_MODE_RELEASE_BUFFERS: idle connections free their record buffers. */
trk_status trk_ctx_set_release_buffers(trk_ctx *ctx, int on, trk_error *err);

/* ------------------------------------------------------------------------- */
/* Connections                                                                */
/* ------------------------------------------------------------------------- */

/*
 * Every constructor takes a reference on `ctx` (released by trk_conn_free), so a
 * context may be freed before its connections. The role comes from the context.
 * `server_hostname` (may be NULL) is, for a client, the SNI name and the name checked
 * against the certificate when the context checks host names: a client context with
 * the check on and no name fails with TRK_ARG, and so does a name that is not ASCII
 * (an internationalized one goes in its IDNA form, "xn--bcher-kva.example", as
 * certificates hold it). Servers ignore it.
 */

/* Timeouts in seconds: TRK_TIMEOUT_NONE blocks for as long as it takes;
 * 0 is non-blocking (WANT_READ/WANT_WRITE are returned); > 0 bounds each call. */
#define TRK_TIMEOUT_NONE (-1.0)

/*
 * A connection over a connected stream socket the caller owns. The core never
 * closes it (trk_conn_new_connect's sockets excepted), and leaves its flags as they
 * are between calls: the caller's own use of the socket finds it as the caller set
 * it. With TRK_TIMEOUT_NONE the socket may be blocking or O_NONBLOCK (the core then
 * waits with poll()). With a timeout >= 0 the core never blocks inside OpenSSL (a
 * blocking read cannot be bounded): it sends and receives with MSG_DONTWAIT, or,
 * where that cannot be (DTLS, an fd that is no socket), makes the fd non-blocking
 * for each step and puts its flags back right after; for > 0 it waits with poll()
 * until the deadline of each call.
 */
trk_status trk_conn_new_fd(trk_ctx *ctx, int fd, double timeout,
                           const char *server_hostname, trk_conn **out,
                           trk_error *err);
/* What trk_conn_new_fd checks of `fd` before anything else: an open descriptor;
 * for TLS a stream socket that is not listening (or a stream that is no socket, a
 * pty), for DTLS a connected UDP socket. TRK_ARG otherwise, the sentence says why.
 * A shim asks it first to name the socket argument in its error. */
trk_status trk_ctx_check_fd(const trk_ctx *ctx, int fd, trk_error *err);
/* Opens a TCP connection to host:port (getaddrinfo, each address in turn, within
 * `timeout`), then wraps it like trk_conn_new_fd; this socket IS closed by
 * trk_conn_close. server_hostname NULL means `host`. The handshake is not done. */
trk_status trk_conn_new_connect(trk_ctx *ctx, const char *host, int port, double timeout,
                                const char *server_hostname, trk_conn **out,
                                trk_error *err);
int trk_conn_fd(const trk_conn *conn);             /* -1 if none / closed */
/*
 * The socket of trk_conn_new_fd stays its owner's, who may close it behind the
 * connection's back; the number then goes to the next file opened, and a write would
 * put a TLS record into that file. A shim holding the owner's socket object passes,
 * before each call that uses the socket, the descriptor that object holds now (-1
 * when it says closed): TRK_OK while it is the connection's. Otherwise the connection
 * forgets the number (never touches or closes it again) and fails for good: TRK_STATE
 * "socket closed by its owner", from this call and every later one but close.
 * Connections over other transports: TRK_OK.
 */
trk_status trk_conn_check_fd(trk_conn *conn, int fd, trk_error *err);
/* Socket connections only (TRK_STATE for memory and pair transports). */
trk_status trk_conn_set_timeout(trk_conn *conn, double timeout, trk_error *err);
double trk_conn_timeout(const trk_conn *conn);

/*
 * A memory transport: the caller feeds the peer's bytes in and drains ours out.
 * Calls return WANT_READ when they need more input. Any call may produce output
 * (a read can answer a KeyUpdate request or continue a renegotiation), so drain after
 * every call.
 */
trk_status trk_conn_new_memory(trk_ctx *ctx, const char *server_hostname,
                               trk_conn **out, trk_error *err);
/* Appends len bytes of the peer's data (DTLS: one datagram, see "DTLS"). */
trk_status trk_conn_feed(trk_conn *conn, const void *data, size_t len, trk_error *err);
/* The peer's end of stream: later reads see EOF (without close_notify: an error,
 * unless the context ignores unexpected EOF). */
trk_status trk_conn_feed_eof(trk_conn *conn, trk_error *err);
/* Bytes waiting to be drained. */
size_t trk_conn_outgoing(const trk_conn *conn);
/* Moves up to cap bytes of output into buf; *n gets the count (0 if none).
 * DTLS: exactly one datagram per call (see "DTLS"). */
trk_status trk_conn_drain(trk_conn *conn, void *buf, size_t cap, size_t *n,
                          trk_error *err);

/*
 * Two connections in one process, joined by an OpenSSL BIO pair, handshaken before
 * this returns (both ends complete). Whenever one end would wait for the other, the
 * core moves the other end forward itself (it reads what is waiting for it, keeping
 * any application data for that end's next read), so a renegotiation or a key update
 * request completes inside ordinary calls. A write of any size goes through whole:
 * the other end keeps in memory what it has not read yet. Both ends must be
 * serialised together.
 * Freeing one end leaves the other disconnected (its I/O fails with TRK_SYSCALL).
 * server_hostname: the name the client sends and checks (may be NULL when the client
 * context does not check host names).
 */
trk_status trk_pair_new(trk_ctx *client_ctx, trk_ctx *server_ctx,
                        const char *server_hostname, trk_conn **client,
                        trk_conn **server, trk_error *err);
/* The other end of a pair, or NULL. */
trk_conn *trk_conn_peer(const trk_conn *conn);

/* Frees the TLS state (no close_notify is sent: call trk_conn_shutdown first for
 * that) and closes a socket the core opened. Idempotent; every later call on the
 * connection returns TRK_STATE "connection is closed". */
void trk_conn_close(trk_conn *conn);
/* trk_conn_close, then frees the object and drops the context reference. NULL ok. */
void trk_conn_free(trk_conn *conn);

/* The context (borrowed; the connection holds a reference until freed). */
trk_ctx *trk_conn_ctx(const trk_conn *conn);
trk_role trk_conn_role(const trk_conn *conn);

/* ------------------------------------------------------------------------- */
/* DTLS (datagram TLS, 1.2): contexts from trk_ctx_new_dtls                     */
/* ------------------------------------------------------------------------- */

/*
 * A DTLS context gives datagram connections over the same constructors:
 *  - trk_conn_new_fd: `fd` is a CONNECTED UDP socket (connect() done, for a server
 *    too: one socket per client); TRK_ARG for a stream socket or an unconnected
 *    one. A TLS context given a UDP socket is TRK_ARG too. Timeouts as for TLS;
 *    while the core waits it also runs the retransmission timer (below).
 *    An ICMP "port unreachable" seen by the socket is TRK_SYSCALL (ECONNREFUSED).
 *  - trk_conn_new_memory: trk_conn_feed takes ONE datagram per call (len may be
 *    0..65535), trk_conn_drain returns ONE datagram per call (TRK_ARG, nothing
 *    taken, if cap is smaller than that datagram: a cap of trk_conn_outgoing(),
 *    the bytes of every waiting datagram, always suffices), trk_conn_outgoing
 *    counts the bytes of every waiting datagram. Dropping or reordering what
 *    drain returned is allowed: that is UDP.
 *  - trk_pair_new with two DTLS contexts: the ends are joined by in-memory datagram
 *    queues that keep message boundaries (OpenSSL 3.0 has no datagram BIO pair).
 *    Mixing a TLS and a DTLS context is TRK_ARG.
 *
 * Datagrams: one trk_conn_write is one DTLS record in one datagram: len at most
 * 16384 (TRK_ARG above, the connection unharmed). Writes larger than
 * trk_conn_dtls_data_mtu are still sent whole (IP fragments them). A read returns
 * the data of one datagram only, never several joined; when cap is smaller than
 * the datagram the rest comes with the next read(s). A zero-length write sends no
 * datagram: it only performs a scheduled renegotiation.
 *
 * Rekeying: trk_conn_key_update is TRK_STATE "wrong ssl version" (DTLS 1.3 is not
 * in OpenSSL 3.0). Renegotiation works as on TLS 1.2, with OpenSSL 3.0's DTLS
 * behaviour (tests/c/test_dtls.c checks each):
 *  - a client answering a server's renegotiate()/renegotiate_abbreviated() does a
 *    FULL handshake, no resumption (the manual: "For historical reasons, DTLS
 *    clients will not attempt to resume the session in the new handshake");
 *  - a client's own renegotiate_abbreviated() resumes the session (session_reused
 *    becomes 1), like TLS; its renegotiate() does not;
 *  - a server refuses a client's renegotiation unless allow_client_renegotiation,
 *    which loses the connection, as on TLS.
 * A rekey policy (trk_rekey_policy) with use_renegotiation never splits a datagram:
 * the renegotiation is scheduled before the datagram that would cross a threshold.
 */

/*
 * Servers: cookie exchange (RFC 6347 4.2.1, OpenSSL's SSL_OP_COOKIE_EXCHANGE), on
 * by default: the first ClientHello is answered with a HelloVerifyRequest carrying
 * an HMAC-SHA256 of the client's address and port under a random per-context
 * secret (memory and pair transports have no address: a fixed tag stands in), and
 * the handshake goes on only when the client echoes it. TRK_ARG on a client or TLS
 * context.
 */
trk_status trk_ctx_set_dtls_cookie_exchange(trk_ctx *ctx, int on, trk_error *err);
/* The first retransmission timeout of each flight, in seconds (it doubles on every
 * retransmission, up to 60 s; OpenSSL gives up after 12 in a row: TRK_TIMEOUT
 * "read timeout expired", fatal). 0 restores OpenSSL's default of 1 second. For
 * connections created afterwards. TRK_ARG outside 0.001..60 (0 allowed) or on a TLS
 * context. */
trk_status trk_ctx_set_dtls_initial_timeout(trk_ctx *ctx, double seconds,
                                            trk_error *err);

/* 1 for a connection on a DTLS context. */
int trk_conn_is_dtls(const trk_conn *conn);

/*
 * The retransmission timer, for non-blocking and memory users (a blocking socket's
 * waits run it themselves). *seconds gets the time left before the timer fires
 * (0 once it has) and the function returns 1 while a timer runs; else it returns
 * 0 and *seconds is -1 (no timer, closed, or not DTLS). Call
 * trk_conn_dtls_handle_timeout once the time has passed: it retransmits the last
 * flight if the timer really expired, else does nothing (TRK_OK both ways; drain
 * after it on memory transports). A read or handshake after expiry retransmits by
 * itself too. TRK_TIMEOUT "read timeout expired" (fatal) after too many
 * retransmissions; TRK_STATE on a closed or TLS connection.
 */
int trk_conn_dtls_get_timeout(const trk_conn *conn, double *seconds);
trk_status trk_conn_dtls_handle_timeout(trk_conn *conn, trk_error *err);

/*
 * The link MTU (the largest IP packet, e.g. 1500), instead of asking the socket
 * (SSL_OP_NO_QUERY_MTU + DTLS_set_link_mtu): handshake messages are fragmented to
 * fit. The IP+UDP overhead is taken off (28 bytes on IPv4, 48 on IPv6; memory and
 * pair transports count 28). Without a call, sockets use the kernel's path MTU and
 * memory/pair transports 1500. TRK_ARG below the minimum OpenSSL accepts (256);
 * TRK_STATE on a closed or TLS connection.
 */
trk_status trk_conn_set_mtu(trk_conn *conn, long mtu, trk_error *err);
/* The largest write whose record fits in one packet of the current MTU
 * (DTLS_get_data_mtu), 0 before a cipher is agreed, or on TLS. */
size_t trk_conn_dtls_data_mtu(const trk_conn *conn);

/* ------------------------------------------------------------------------- */
/* I/O                                                                        */
/* ------------------------------------------------------------------------- */

/* Runs the handshake to completion (or the next WANT on non-blocking/memory
 * transports). On an established TLS 1.3 connection it sends a scheduled key update
 * at once; on TLS 1.2 it performs a scheduled renegotiation. It does NOT send the
 * reply owed to a peer's key update request: a zero-length write does. */
trk_status trk_conn_do_handshake(trk_conn *conn, trk_error *err);

/* Reads up to cap bytes into buf. TRK_OK with *n > 0, or TRK_CLOSED once the
 * peer's close_notify arrived. Application data that already arrived is returned even
 * when a KeyUpdate or a session ticket came first. Completes the handshake first.
 * cap 0 (buf may then be NULL) reads nothing and does nothing, as read(2) does:
 * TRK_OK with *n = 0, unless the connection is closed or failed. */
trk_status trk_conn_read(trk_conn *conn, void *buf, size_t cap, size_t *n,
                         trk_error *err);

/* Writes all len bytes (len may be 0: OpenSSL is still called, sending whatever
 * protocol message is owed, such as the reply to a key update request), with or
 * without a rekey policy splitting them between key updates: TRK_OK has *n == len.
 * WANT_WRITE/WANT_READ, TRK_TIMEOUT or an interrupted wait leave the write pending,
 * *n 0: call again with the same data (the same len) and it goes on where it
 * stopped; any other write meanwhile is TRK_STATE ("write pending"), harmless.
 * Any other failure sets *n to the bytes that went out and are not sent again: an
 * event callback that failed after the data left (TRK_CALLBACK), a policy's rekey
 * refused after some chunks. */
trk_status trk_conn_write(trk_conn *conn, const void *buf, size_t len, size_t *n,
                          trk_error *err);

/* Whether a read or write of `len` bytes may take long. 0: no, it seals or opens at
 * most a small record in memory. TRK_MAY_BLOCK_SOCKET: only by waiting on its
 * socket, which trk_conn_try_read/trk_conn_try_write never do. TRK_MAY_BLOCK_WORK:
 * it may run (or move the other end of a pair through) a handshake or key update, or
 * seal or open much data. A shim holding an interpreter lock releases it around
 * such calls, and may first try a TRK_MAY_BLOCK_SOCKET one with the lock kept. */
#define TRK_MAY_BLOCK_SOCKET 1
#define TRK_MAY_BLOCK_WORK 2
int trk_conn_may_block(const trk_conn *conn, size_t len);

/* trk_conn_read / trk_conn_write that never wait on a socket, whatever the timeout:
 * where those would wait they return TRK_WANT_READ / TRK_WANT_WRITE (a write's record
 * stays with OpenSSL: the plain call with the same data then completes it). They may
 * also say WANT where the plain call would not have to wait, having done nothing
 * (DTLS over a socket). On other transports they are the plain calls. */
trk_status trk_conn_try_read(trk_conn *conn, void *buf, size_t cap, size_t *n,
                             trk_error *err);
trk_status trk_conn_try_write(trk_conn *conn, const void *buf, size_t len, size_t *n,
                              trk_error *err);

/* Bytes a read returns without touching the transport: decrypted data, and on a
 * socket 1 when a whole record has arrived that is not decrypted yet (the core reads
 * sockets ahead; such a record may carry no data, e.g. a KeyUpdate). 0 means nothing
 * that has arrived waits inside the connection: a caller may poll the socket. */
size_t trk_conn_pending(const trk_conn *conn);

/* The size of buffer worth setting aside for a trk_conn_read of up to `cap` bytes:
 * `cap` itself up to TRK_READ_CHUNK (a record's plaintext, the most one read takes
 * from the transport), else the larger of TRK_READ_CHUNK and what has already
 * arrived (trk_conn_pending), at most `cap`. A shim whose read(n) makes its own
 * buffer sizes it with this when n > TRK_READ_CHUNK, so that read(1 << 40) sets
 * aside what can arrive rather than what was asked, and smaller reads pay nothing. */
#define TRK_READ_CHUNK 16384
size_t trk_conn_read_size(const trk_conn *conn, size_t cap);

/* Sends close_notify (once). *complete is set to 1 when the peer's close_notify has
 * also been received, else 0; a later call tries to receive it (blocking transports
 * wait up to the timeout; others may return WANT_READ). */
trk_status trk_conn_shutdown(trk_conn *conn, int *complete, trk_error *err);

/* ------------------------------------------------------------------------- */
/* Key update and renegotiation (SSL_key_update(3))                            */
/* ------------------------------------------------------------------------- */

/*
 * Schedules a TLS 1.3 key update of `type` (TRK_KEY_UPDATE_NOT_REQUESTED or
 * TRK_KEY_UPDATE_REQUESTED); it goes out with the next I/O, or at once if `now`
 * (the core then runs trk_conn_do_handshake).
 *  TRK_ARG   type is NONE or unknown ("invalid key update type")
 *  TRK_STATE closed, handshake not complete, not TLS 1.3 ("wrong ssl version", the
 *            message names the negotiated version), an update already scheduled
 *            (the message names its type), a write pending after WANT_WRITE
 *            ("bad write retry"). None of these harm the connection.
 */
trk_status trk_conn_key_update(trk_conn *conn, int type, int now, trk_error *err);
/* The scheduled type, or TRK_KEY_UPDATE_NONE. After a peer's update request this is
 * the owed reply (NOT_REQUESTED) until our next write sends it. NONE when closed. */
int trk_conn_get_key_update_type(const trk_conn *conn);

/*
 * TLS 1.2 and older. Client: renegotiate() schedules a full new handshake without
 * session resumption; renegotiate_abbreviated() one that resumes the session.
 * Server: both schedule a HelloRequest. The work happens at the next I/O.
 *  TRK_STATE closed, before the handshake, on TLS 1.3 ("wrong ssl version"), or
 *            with renegotiation disabled on the context ("no renegotiation").
 */
trk_status trk_conn_renegotiate(trk_conn *conn, trk_error *err);
trk_status trk_conn_renegotiate_abbreviated(trk_conn *conn, trk_error *err);
/* 1 if a renegotiation or a renegotiation request is scheduled or under way and
 * not yet complete, else 0. */
int trk_conn_renegotiate_pending(const trk_conn *conn);

/* Server: ask for (required: insist on) a client certificate in this connection's
 * next handshake, e.g. before a renegotiation; verify: check it against the CAs. */
trk_status trk_conn_set_verify_client(trk_conn *conn, int required, int verify,
                                      trk_error *err);

/* ------------------------------------------------------------------------- */
/* Automatic rekeying                                                         */
/* ------------------------------------------------------------------------- */

/*
 * OpenSSL never rekeys by itself (openssl issue 23566). With a policy, the core
 * schedules a key update itself, inside trk_conn_write, BEFORE the record that would
 * cross a threshold, so that no record is ever sent past it: a write that would cross
 * is split, the update goes out in the middle. Thresholds count what we sent since
 * our sending key last changed (any KeyUpdate we sent, including the reply to a
 * peer's request, or a completed handshake); time is checked at each write.
 *
 * TLS 1.3: a key update (request_peer: of type REQUESTED, so the peer rotates too).
 * TLS 1.2: a policy with thresholds is an error (TRK_STATE from the write) unless
 * use_renegotiation is set; then the core renegotiates instead (a client a full
 * handshake, a server a HelloRequest, which the client may answer late or refuse).
 *
 * aead_limit (on by default) enforces the AEAD usage limits of RFC 8446 section 5.5
 * on TLS 1.3 whatever the thresholds: 2^24 full-size records per key for AES-GCM
 * (the RFC allows 2^24.5), 2^23 for AES-CCM; ChaCha20-Poly1305 needs none.
 *
 * A write on a non-blocking socket that sends part of its data before it would
 * block returns TRK_OK with *n smaller than len (the rest is the caller's to retry),
 * never a WANT after bytes have left.
 */
typedef struct trk_rekey_policy {
    uint64_t bytes;         /* application bytes per sending key; 0: no limit */
    uint64_t records;       /* application records per sending key; 0: no limit */
    double seconds;         /* seconds per sending key, checked at writes; 0: none
                               (users set these through trk_rekey_policy_set_*) */
    int request_peer;       /* TLS 1.3: ask the peer to update too */
    int use_renegotiation;  /* TLS 1.2: rekey by renegotiation instead of failing */
    int aead_limit;         /* RFC 8446 5.5 limits on TLS 1.3 (default 1) */
    uint64_t read_bytes;    /* application bytes received under one key of the
                               peer's; then the core asks the peer to update (TLS
                               1.3: a KeyUpdate requesting one, sent from inside the
                               read; TLS 1.2: a renegotiation); 0: no limit */
    double min_interval;    /* seconds: no automatic rekey sooner than this after
                               this end's key last changed (a peer may drop a
                               connection that updates too often: GnuTLS allows 8
                               a second); the thresholds wait for it, never the
                               AEAD limit; 0: none */
} trk_rekey_policy;

/* The default: no thresholds, aead_limit on. */
void trk_rekey_policy_default(trk_rekey_policy *policy);
/*
 * Sets one threshold, "bytes", "records" or "seconds", from a value a user gave:
 * the shims call one of these for each threshold given (and leave out the ones not
 * given), so that what a threshold may be is decided here, once for both languages.
 * A threshold given is a positive number: 0 is refused, not taken as "no limit"
 * (leaving it out is how to say that). Counts are whole numbers up to 2^64 - 1;
 * _number takes them as a float with an integral value too (1e9, 2^30) and refuses
 * a fraction; seconds are any finite positive number. TRK_ARG otherwise, with a
 * sentence naming the option ("rekey policy 'bytes' ...").
 */
trk_status trk_rekey_policy_set_count(trk_rekey_policy *policy, const char *name,
                                      uint64_t value, trk_error *err);
trk_status trk_rekey_policy_set_number(trk_rekey_policy *policy, const char *name,
                                       double value, trk_error *err);
/* Context default for connections created afterwards. TRK_ARG for negative or NaN
 * seconds. */
trk_status trk_ctx_set_rekey_policy(trk_ctx *ctx, const trk_rekey_policy *policy,
                                    trk_error *err);
void trk_ctx_get_rekey_policy(const trk_ctx *ctx, trk_rekey_policy *out);
/* This connection's policy. TRK_STATE on an established TLS 1.2 connection when the
 * policy has thresholds and not use_renegotiation. */
trk_status trk_conn_set_rekey_policy(trk_conn *conn, const trk_rekey_policy *policy,
                                     trk_error *err);
void trk_conn_get_rekey_policy(const trk_conn *conn, trk_rekey_policy *out);

/* The AEAD record limit used for `cipher_name` ("TLS_AES_128_GCM_SHA256"), 0 for
 * none. trk_testing_set_aead_scale divides every limit by `divisor` (>= 1), so tests
 * can watch the limit act without sending 2^24 records; 1 restores the RFC values.
 * Process-wide; for tests only. */
uint64_t trk_aead_record_limit(const char *cipher_name);
void trk_testing_set_aead_scale(uint64_t divisor);

/* ------------------------------------------------------------------------- */
/* Introspection                                                              */
/* ------------------------------------------------------------------------- */

/* "TLSv1.3" etc., NULL before the first handshake completed or after close. */
const char *trk_conn_version(const trk_conn *conn);
/* OpenSSL's cipher name ("TLS_AES_256_GCM_SHA384"), NULL likewise. */
const char *trk_conn_cipher(const trk_conn *conn);
/* The key exchange group of the last full handshake, by the name `groups` takes
 * ("x25519", "secp256r1"), NULL likewise or when there was none (TLS 1.2 RSA key
 * exchange). A resumption reports the group of the handshake that made the session. */
const char *trk_conn_group(const trk_conn *conn);
/* Negotiated ALPN protocol: *len 0 if none. The bytes belong to the connection. */
void trk_conn_alpn(const trk_conn *conn, const unsigned char **proto, size_t *len);
/* 1 if the last handshake resumed a session. */
int trk_conn_session_reused(const trk_conn *conn);
/* 1 if the peer supports secure renegotiation (RFC 5746). */
int trk_conn_secure_renegotiation(const trk_conn *conn);
/* "new", "handshaking", "established", "renegotiating", "closed" (close_notify seen
 * or sent), "failed" (a fatal error happened), "released" (trk_conn_close). */
const char *trk_conn_state(const trk_conn *conn);
/* Whether the first handshake has completed. */
int trk_conn_handshake_done(const trk_conn *conn);

typedef struct trk_cert_info {
    char subject[256];      /* RFC 2253 one-line form */
    char issuer[256];
    char serial[80];        /* hex */
    char not_before[32];    /* "YYYY-MM-DDTHH:MM:SSZ" */
    char not_after[32];
    char san[512];          /* "DNS:a, DNS:b, IP Address:127.0.0.1" or "" */
} trk_cert_info;
/* The peer's certificate: TRK_OK and *der (malloc'ed, free with trk_free) or
 * TRK_OK with *der NULL when the peer sent none. `info` may be NULL. */
trk_status trk_conn_peer_certificate(const trk_conn *conn, trk_cert_info *info,
                                     unsigned char **der, size_t *der_len,
                                     trk_error *err);
/* RFC 5705 / RFC 8446 7.5 exporter (tls-exporter channel binding: label
 * "EXPORTER-Channel-Binding", no context, 32 bytes). context may be NULL. */
trk_status trk_conn_export_keying_material(const trk_conn *conn, unsigned char *out,
                                           size_t out_len, const char *label,
                                           const unsigned char *context,
                                           size_t context_len, trk_error *err);

/* Counters, from OpenSSL's message callback. */
typedef struct trk_stats {
    uint64_t key_updates_sent;
    uint64_t key_updates_received;
    uint64_t key_update_requests_sent;      /* of those sent, asking for a reply */
    uint64_t key_update_requests_received;
    uint64_t automatic_rekeys;              /* key updates / renegotiations the core
                                               started itself by policy */
    uint64_t renegotiations;                /* renegotiation handshakes completed
                                               here, whichever side started them */
    uint64_t hello_requests_sent;
    uint64_t hello_requests_received;
    uint64_t handshakes;                    /* completed handshakes, first included */
    uint64_t alerts_sent;
    uint64_t alerts_received;
    uint64_t bytes_written;                 /* application bytes */
    uint64_t bytes_read;
    uint64_t records_written;               /* TLS records of any type */
    uint64_t records_read;
} trk_stats;
void trk_conn_stats(const trk_conn *conn, trk_stats *out);

/* The fields of trk_stats by name, in order, ending with {NULL, 0}: the shims build
 * their dict/table from this, so the names live in one place. */
typedef struct trk_stat_field {
    const char *name;
    size_t offset;
} trk_stat_field;
extern const trk_stat_field trk_stat_fields[];

/* ------------------------------------------------------------------------- */
/* Events                                                                     */
/* ------------------------------------------------------------------------- */

typedef enum trk_event_type {
    TRK_EV_KEY_UPDATE_SENT = 0,
    TRK_EV_KEY_UPDATE_RECEIVED,
    TRK_EV_HELLO_REQUEST_SENT,
    TRK_EV_HELLO_REQUEST_RECEIVED,
    TRK_EV_HANDSHAKE_START,       /* a ClientHello sent or received */
    TRK_EV_HANDSHAKE_DONE,        /* first handshake complete */
    TRK_EV_RENEGOTIATION_DONE,    /* a later handshake complete */
    TRK_EV_ALERT_SENT,
    TRK_EV_ALERT_RECEIVED,
    TRK_EV_REKEY_OVERDUE,         /* a TLS 1.2 server writes past its rekey policy's
                                     limit: its HelloRequest is out and the client has
                                     not begun the new handshake yet (once per epoch) */
    TRK_EV_COUNT
} trk_event_type;

typedef struct trk_event {
    trk_event_type type;
    const char *name;          /* "key_update_sent", ... (trk_event_name) */
    int request_update;        /* key update events: 1 if update_requested */
    int automatic;             /* key_update_sent, hello_request_sent and
                                  handshake_start: started by the rekey policy */
    int alert_level;           /* alert events: 1 warning, 2 fatal */
    int alert_description;     /* alert events: the RFC 8446 code */
    const char *alert_text;    /* alert events: "close notify", ... */
} trk_event;

const char *trk_event_name(trk_event_type type);

/* Called synchronously from inside the I/O call that saw or sent the message, after
 * the counters moved. Return 0, or nonzero to make that I/O call return TRK_CALLBACK
 * once OpenSSL is done with it (the connection stays usable). The callback must not
 * drive this connection. fn NULL removes it. */
typedef int (*trk_event_fn)(void *userdata, trk_conn *conn, const trk_event *event);
void trk_conn_set_event_callback(trk_conn *conn, trk_event_fn fn, void *userdata);

/* ------------------------------------------------------------------------- */
/* Interruption                                                               */
/* ------------------------------------------------------------------------- */

/* Called (on the calling thread) when a signal interrupts a wait of a socket
 * connection, blocking or with a timeout. Return nonzero to end the call with
 * TRK_CALLBACK ("interrupted"): the shim re-raises what its check parked (Python's
 * KeyboardInterrupt). The connection stays usable; an interrupted write must be
 * retried with the same data. fn NULL removes it. */
typedef int (*trk_interrupt_fn)(void *userdata);
void trk_conn_set_interrupt_check(trk_conn *conn, trk_interrupt_fn fn, void *userdata);

/* Full duplex (socket transports). A shim that serialises the calls on a
 * connection with a lock of its own can let another thread use the connection
 * while a read waits for the socket: the core calls fn(userdata, TRK_WAIT_RELEASE)
 * just before such a wait (the shim lets its lock go) and fn(userdata,
 * TRK_WAIT_RETAKE) right after it (the shim takes it back). Only reads let go, and
 * only between two SSL_read calls, where OpenSSL's state is as after any
 * non-blocking read: a write, key update or close from another thread meanwhile
 * is one call after another, never two at once. A call that may have taken what
 * the reader waits for (a renegotiation driven by a write reads the peer's data
 * into the stash; shutdown, close, a failure) wakes it; it then takes the stashed
 * data, or reports the close.
 * A signal that ends the wait calls fn(userdata, TRK_WAIT_ABANDON) instead of
 * RETAKE, and so does a RETAKE that returns nonzero (a signal ended the wait for
 * the lock): the read then returns TRK_CALLBACK ("interrupted") at once, without
 * the connection and without touching it again, having read nothing; the shim
 * runs its signal handlers and may call read again. fn NULL (the default) keeps
 * the connection through the wait. */
enum { TRK_WAIT_RELEASE = 0, TRK_WAIT_RETAKE = 1, TRK_WAIT_ABANDON = 2 };
typedef int (*trk_wait_hook_fn)(void *userdata, int phase);
void trk_conn_set_wait_hook(trk_conn *conn, trk_wait_hook_fn fn, void *userdata);

/* trk_conn_new_connect whose wait for the TCP connection asks `check` (as above)
 * when a signal arrives: nonzero ends it with TRK_CALLBACK ("interrupted"), the
 * socket closed. Give the new connection its own check afterwards. */
trk_status trk_conn_new_connect_checked(trk_ctx *ctx, const char *host, int port,
                                        double timeout, const char *server_hostname,
                                        trk_interrupt_fn check, void *check_ud,
                                        trk_conn **out, trk_error *err);

/* ------------------------------------------------------------------------- */
/* Test certificates                                                          */
/* ------------------------------------------------------------------------- */

/* A throwaway self-signed ECDSA P-256 certificate for `common_name` (also in the
 * subjectAltName, as DNS, and as an IP address when it is one; "localhost" also gets
 * IP 127.0.0.1 and ::1), valid from yesterday for 30 days. *cert_pem and *key_pem are
 * NUL-terminated, malloc'ed: free with trk_free. TRK_ARG for an empty or over-long
 * name (> 64 bytes). */
trk_status trk_make_test_cert(const char *common_name, char **cert_pem, size_t *cert_len,
                              char **key_pem, size_t *key_len, trk_error *err);

void trk_free(void *p);

/* OpenSSL's version text, e.g. "OpenSSL 3.0.19 27 Jan 2026". */
const char *trk_openssl_version(void);

#ifdef __cplusplus
}
#endif
#endif /* TLSREKEY_H */
