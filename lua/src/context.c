/*
 * context.c - tlsrekey.context{...} and the three ways to open a connection on it
 * (connect, wrap, memory).
 *
 * Options are applied in a fixed order (the key must follow the certificate, the
 * system store is loaded only when no CA was given), never in the table's order,
 * and a name the shim does not know is an error: a typo must not silently give a
 * weaker context.
 */
#include <string.h>

#include "shim.h"

static const char *const context_options[] = {
    "mode", "cafile", "capath", "verify", "check_hostname", "min_version",
    "max_version", "cert", "key", "ciphers", "ciphersuites", "groups", "alpn",
    "keylog", "allow_client_renegotiation", "no_renegotiation",
    "ignore_unexpected_eof", "release_buffers", "num_tickets", "session_cache", "session_tickets", "rekey",
    "protocol", "cookie_exchange", "dtls_initial_timeout", NULL};

ltrk_context *ltrk_check_context(lua_State *L, int idx)
{
    ltrk_context *c = luaL_checkudata(L, idx, LTRK_CONTEXT_MT);

    if (c->ctx == NULL)
        ltrk_raise_status(L, TRK_STATE, "context is released", "the context is released");
    return c;
}

/* Raises for a failed setter: argument errors name the option. */
static void check_option(lua_State *L, trk_status st, const trk_error *err,
                         const char *option)
{
    if (st == TRK_OK)
        return;
    if (st == TRK_ARG) {
        luaL_argerror(L, 1, lua_pushfstring(L, "option '%s': %s", option,
                                            err->message[0] != '\0'
                                                ? err->message
                                                : trk_status_message(st)));
    }
    ltrk_raise(L, st, err, 0);
}

static const char *opt_string(lua_State *L, const char *name, size_t *len)
{
    const char *s = NULL;

    lua_getfield(L, 1, name);
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        s = lua_tolstring(L, -1, &n);
        if (memchr(s, '\0', n) != NULL)
            luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' contains a NUL byte", name));
        if (len != NULL)
            *len = n;
    } else if (!lua_isnil(L, -1)) {
        luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' must be a string, got %s",
                                            name, luaL_typename(L, -1)));
    }
    lua_pop(L, 1); /* the string stays anchored in the options table */
    return s;
}

/* -1 when absent, else 0 or 1. */
static int opt_boolean(lua_State *L, const char *name)
{
    int v = -1;

    lua_getfield(L, 1, name);
    if (lua_type(L, -1) == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' must be a boolean, got %s",
                                            name, luaL_typename(L, -1)));
    lua_pop(L, 1);
    return v;
}

/* A string starting with "-----BEGIN" is PEM text; anything else is a file path. */
static int is_pem(const char *s)
{
    return s != NULL && strncmp(s, "-----BEGIN", 10) == 0;
}

static void apply_verify(lua_State *L, ltrk_context *c, trk_role role)
{
    trk_error err;
    trk_verify_mode mode = TRK_VERIFY_NONE;
    size_t cafile_len = 0;
    const char *cafile = opt_string(L, "cafile", &cafile_len);
    const char *capath = opt_string(L, "capath", NULL);
    int check_hostname;

    lua_getfield(L, 1, "verify");
    if (lua_isnil(L, -1))
        mode = role == TRK_CLIENT ? TRK_VERIFY_REQUIRED : TRK_VERIFY_NONE;
    else if (lua_type(L, -1) == LUA_TBOOLEAN)
        mode = lua_toboolean(L, -1) ? TRK_VERIFY_REQUIRED : TRK_VERIFY_NONE;
    else if (role == TRK_SERVER && lua_type(L, -1) == LUA_TSTRING &&
             strcmp(lua_tostring(L, -1), "optional") == 0)
        mode = TRK_VERIFY_OPTIONAL;
    else
        luaL_argerror(L, 1, role == TRK_SERVER
                                ? "option 'verify' must be false, true or \"optional\""
                                : "option 'verify' must be a boolean");
    lua_pop(L, 1);

    if (cafile != NULL || capath != NULL) {
        check_option(L, trk_ctx_load_verify(c->ctx, cafile, cafile_len, is_pem(cafile),
                                            capath, &err),
                     &err, cafile != NULL ? "cafile" : "capath");
    } else if (role == TRK_CLIENT && mode != TRK_VERIFY_NONE) {
        check_option(L, trk_ctx_load_default_verify(c->ctx, &err), &err, "verify");
    }
    check_option(L, trk_ctx_set_verify(c->ctx, mode, &err), &err, "verify");

    /* Checking a name on a certificate nobody verified means nothing: the check
     * follows verification unless the caller says otherwise. */
    check_hostname = opt_boolean(L, "check_hostname");
    if (check_hostname < 0)
        check_hostname = role == TRK_CLIENT && mode != TRK_VERIFY_NONE;
    if (role == TRK_CLIENT || check_hostname)
        check_option(L, trk_ctx_set_check_hostname(c->ctx, check_hostname, &err), &err,
                     "check_hostname");
}

static void apply_alpn(lua_State *L, ltrk_context *c)
{
    trk_error err;
    const char *protos[64];
    lua_Integer i, n;

    lua_getfield(L, 1, "alpn");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1))
        luaL_argerror(L, 1, "option 'alpn' must be an array of strings");
    n = (lua_Integer)lua_rawlen(L, -1);
    if (n > (lua_Integer)(sizeof protos / sizeof protos[0]))
        luaL_argerror(L, 1, "option 'alpn' has too many protocols");
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, 1, "option 'alpn' must be an array of strings");
        size_t plen;
        protos[i - 1] = lua_tolstring(L, -1, &plen);
        ltrk_no_nul(L, protos[i - 1], plen, 1, "an 'alpn' protocol name");
        lua_pop(L, 1); /* anchored in the array */
    }
    check_option(L, trk_ctx_set_alpn(c->ctx, protos, (size_t)n, &err), &err, "alpn");
    lua_pop(L, 1);
}

/* tlsrekey.context{ mode = "client"|"server", ... } */
int ltrk_context_new(lua_State *L)
{
    static const char *const modes[] = {"client", "server", NULL};
    trk_error err;
    ltrk_context *c;
    trk_role role;
    const char *s;
    size_t len;
    int allow_client, no_reneg, b, dtls = 0;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    ltrk_check_options(L, 1, context_options);

    lua_getfield(L, 1, "mode");
    if (lua_isnil(L, -1))
        luaL_argerror(L, 1, "option 'mode' is required (\"client\" or \"server\")");
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, 1, "option 'mode' must be \"client\" or \"server\"");
    s = lua_tostring(L, -1);
    if (strcmp(s, modes[0]) == 0)
        role = TRK_CLIENT;
    else if (strcmp(s, modes[1]) == 0)
        role = TRK_SERVER;
    else
        return luaL_argerror(L, 1, lua_pushfstring(L, "option 'mode' must be \"client\" "
                                                      "or \"server\", got \"%s\"", s));
    lua_pop(L, 1);
    if ((s = opt_string(L, "protocol", NULL)) != NULL) {
        if (strcmp(s, "dtls") == 0)
            dtls = 1;
        else if (strcmp(s, "tls") != 0)
            return luaL_argerror(L, 1, lua_pushfstring(L, "option 'protocol' must be "
                                                          "\"tls\" or \"dtls\", got \"%s\"",
                                                       s));
    }

    /* The userdata first: from here on the collector owns whatever we create. */
    c = lua_newuserdatauv(L, sizeof *c, 0);
    c->ctx = NULL;
    luaL_setmetatable(L, LTRK_CONTEXT_MT);
    check_option(L, dtls ? trk_ctx_new_dtls(role, &c->ctx, &err)
                         : trk_ctx_new(role, &c->ctx, &err),
                 &err, dtls ? "protocol" : "mode");

    if ((s = opt_string(L, "min_version", NULL)) != NULL)
        check_option(L, trk_ctx_set_min_version(c->ctx, s, &err), &err, "min_version");
    if ((s = opt_string(L, "max_version", NULL)) != NULL)
        check_option(L, trk_ctx_set_max_version(c->ctx, s, &err), &err, "max_version");
    if ((s = opt_string(L, "ciphers", NULL)) != NULL)
        check_option(L, trk_ctx_set_ciphers(c->ctx, s, &err), &err, "ciphers");
    if ((s = opt_string(L, "ciphersuites", NULL)) != NULL)
        check_option(L, trk_ctx_set_ciphersuites(c->ctx, s, &err), &err, "ciphersuites");
    if ((s = opt_string(L, "groups", NULL)) != NULL)
        check_option(L, trk_ctx_set_groups(c->ctx, s, &err), &err, "groups");

    if ((s = opt_string(L, "cert", &len)) != NULL)
        check_option(L, trk_ctx_use_certificate(c->ctx, s, len, is_pem(s), &err), &err,
                     "cert");
    /* key left out: it is looked for in cert (one PEM or file may hold both), as
     * Python's Context does */
    if ((s = opt_string(L, "key", &len)) != NULL || (s = opt_string(L, "cert", &len)) != NULL)
        check_option(L, trk_ctx_use_private_key(c->ctx, s, len, is_pem(s), &err), &err,
                     "key");
    apply_verify(L, c, role);
    apply_alpn(L, c);

    if ((b = opt_boolean(L, "session_cache")) >= 0)
        check_option(L, trk_ctx_set_session_cache(c->ctx, b, &err), &err, "session_cache");
    if ((b = opt_boolean(L, "session_tickets")) >= 0)
        check_option(L, trk_ctx_set_session_tickets(c->ctx, b, &err), &err,
                     "session_tickets");
    lua_getfield(L, 1, "num_tickets");
    if (!lua_isnil(L, -1)) {
        int isnum = 0;
        lua_Integer n = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isnum) : 0;
        if (!isnum || n < 0 || n > 1000)
            luaL_argerror(L, 1, "option 'num_tickets' must be an integer from 0 to 1000");
        check_option(L, trk_ctx_set_num_tickets(c->ctx, (int)n, &err), &err,
                     "num_tickets");
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "keylog"); /* a path, or true: honour SSLKEYLOGFILE */
    if (lua_type(L, -1) == LUA_TSTRING)
        check_option(L, trk_ctx_set_keylog_file(c->ctx, ltrk_no_nul(L, lua_tostring(L, -1),
                                                                    lua_rawlen(L, -1), 1,
                                                                    "option 'keylog'"),
                                                &err),
                     &err,
                     "keylog");
    else if (lua_toboolean(L, -1) && lua_isboolean(L, -1))
        check_option(L, trk_ctx_set_keylog_from_env(c->ctx, &err), &err, "keylog");
    else if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        luaL_argerror(L, 1, lua_pushfstring(L, "option 'keylog' must be a path or a "
                                               "boolean, got %s",
                                            luaL_typename(L, -1)));
    lua_pop(L, 1);

    allow_client = opt_boolean(L, "allow_client_renegotiation");
    no_reneg = opt_boolean(L, "no_renegotiation");
    if (allow_client >= 0 || no_reneg >= 0)
        check_option(L, trk_ctx_set_renegotiation(c->ctx, allow_client > 0, no_reneg > 0,
                                                  &err),
                     &err, allow_client >= 0 ? "allow_client_renegotiation"
                                             : "no_renegotiation");
    if ((b = opt_boolean(L, "ignore_unexpected_eof")) >= 0)
        check_option(L, trk_ctx_set_ignore_unexpected_eof(c->ctx, b, &err), &err,
                     "ignore_unexpected_eof");
    if ((b = opt_boolean(L, "release_buffers")) >= 0)
        check_option(L, trk_ctx_set_release_buffers(c->ctx, b, &err), &err,
                     "release_buffers");
    lua_getfield(L, 1, "rekey");
    if (!lua_isnil(L, -1)) {
        trk_rekey_policy policy;
        ltrk_check_policy(L, -1, 1, &policy);
        check_option(L, trk_ctx_set_rekey_policy(c->ctx, &policy, &err), &err, "rekey");
    }
    lua_pop(L, 1);
    if ((b = opt_boolean(L, "cookie_exchange")) >= 0)
        check_option(L, trk_ctx_set_dtls_cookie_exchange(c->ctx, b, &err), &err,
                     "cookie_exchange");
    lua_getfield(L, 1, "dtls_initial_timeout");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_argerror(L, 1, "option 'dtls_initial_timeout' must be a number");
        check_option(L, trk_ctx_set_dtls_initial_timeout(c->ctx, (double)lua_tonumber(L, -1),
                                                         &err),
                     &err, "dtls_initial_timeout");
    }
    lua_pop(L, 1);
    {
        const char *option = NULL;
        trk_status st = trk_ctx_check(c->ctx, &option, &err);
        check_option(L, st, &err, option != NULL ? option : "mode");
    }
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Opening connections                                                         */
/* ------------------------------------------------------------------------- */

static const char *const conn_options[] = {"server_hostname", "timeout", NULL};
static const char *const memory_options[] = {"server_hostname", NULL};

/* An options table at `arg` (may be absent); leaves nothing on the stack. */
static void check_conn_options(lua_State *L, int arg, const char *const known[])
{
    if (!lua_isnoneornil(L, arg)) {
        luaL_checktype(L, arg, LUA_TTABLE);
        ltrk_check_options(L, arg, known);
    }
}

static const char *conn_hostname(lua_State *L, int arg)
{
    const char *s = NULL;

    if (lua_isnoneornil(L, arg))
        return NULL;
    lua_getfield(L, arg, "server_hostname");
    if (lua_type(L, -1) == LUA_TSTRING)
        s = ltrk_no_nul(L, lua_tostring(L, -1), lua_rawlen(L, -1), arg,
                        "option 'server_hostname'");
    else if (!lua_isnil(L, -1))
        luaL_argerror(L, arg, "option 'server_hostname' must be a string");
    lua_pop(L, 1);
    return s;
}

/* LuaSocket's convention: nil or negative blocks, 0 never blocks, > 0 bounds. */
static double timeout_value(lua_State *L, int idx, int arg)
{
    double t;

    if (lua_isnil(L, idx))
        return TRK_TIMEOUT_NONE;
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_argerror(L, arg, "timeout must be a number or nil");
    t = (double)lua_tonumber(L, idx);
    if (t != t)
        luaL_argerror(L, arg, "timeout must not be NaN");
    return t < 0 ? TRK_TIMEOUT_NONE : t;
}

/* Returns 1 and sets *t when the options table at arg has a timeout. */
static int conn_timeout(lua_State *L, int arg, double *t)
{
    int found = 0;

    if (lua_isnoneornil(L, arg))
        return 0;
    lua_getfield(L, arg, "timeout");
    if (!lua_isnil(L, -1)) {
        *t = timeout_value(L, -1, arg);
        found = 1;
    }
    lua_pop(L, 1);
    return found;
}

/* The status of a constructor: TRK_ARG points at the options table. */
static int opened(lua_State *L, trk_status st, const trk_error *err, int opts_arg)
{
    if (st != TRK_OK)
        return ltrk_raise(L, st, err, opts_arg);
    return 1;
}

/* ctx:connect(host, port, opts) */
static int context_connect(lua_State *L)
{
    ltrk_context *c = ltrk_check_context(L, 1);
    size_t host_len;
    const char *host = luaL_checklstring(L, 2, &host_len);
    lua_Integer port = luaL_checkinteger(L, 3);
    double timeout = TRK_TIMEOUT_NONE;
    const char *hostname;
    ltrk_connection *conn;
    trk_error err;
    trk_status st;

    ltrk_no_nul(L, host, host_len, 2, "host");
    luaL_argcheck(L, port > 0 && port < 65536, 3, "port must be from 1 to 65535");
    check_conn_options(L, 4, conn_options);
    hostname = conn_hostname(L, 4);
    conn_timeout(L, 4, &timeout);
    conn = ltrk_connection_new(L, 1, 0);
    st = trk_conn_new_connect(c->ctx, host, (int)port, timeout, hostname, &conn->conn,
                              &err);
    if (st == TRK_OK)
        conn->role = trk_conn_role(conn->conn);
    return opened(L, st, &err, 4);
}

/*
 * The socket object's owner may close it while the connection uses it, so its fd is
 * asked for before each call that uses the socket (connection.c, check_io). A
 * LuaSocket tcp or udp object begins with its descriptor (t_socket, an int on POSIX),
 * which its close() sets to -1, and its metatable names the groups LuaSocket itself
 * checks it by: reading that int is one load, where calling getfd() cost ~900
 * instructions per call, 11% of a 64-byte write (callgrind). Only an object whose
 * first int is what its getfd() just answered is read in place.
 */
static int luasocket_fd_in_place(lua_State *L, int idx, lua_Integer fd)
{
    int group;

    if (lua_type(L, idx) != LUA_TUSERDATA || lua_rawlen(L, idx) < sizeof(int) ||
        !lua_getmetatable(L, idx))
        return 0;
    lua_pushliteral(L, "tcp{any}");
    group = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
    if (!group) {
        lua_pushliteral(L, "udp{any}");
        group = lua_rawget(L, -2) != LUA_TNIL;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return group && *(const int *)lua_touserdata(L, idx) == fd;
}

/* ctx:wrap(sock_or_fd, opts): a LuaSocket object (kept alive, never closed, its own
 * timeout followed unless opts.timeout says otherwise, asked for its fd before each
 * call that uses it) or an integer fd. A DTLS context takes a connected UDP socket
 * (udp:setpeername). */
static int context_wrap(lua_State *L)
{
    ltrk_context *c = ltrk_check_context(L, 1);
    double timeout = TRK_TIMEOUT_NONE;
    const char *hostname;
    ltrk_connection *conn;
    lua_Integer fd;
    trk_error err;
    trk_status st;
    int have_timeout;

    check_conn_options(L, 3, conn_options);
    hostname = conn_hostname(L, 3);
    have_timeout = conn_timeout(L, 3, &timeout);
    lua_settop(L, 3);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        int isint;

        fd = lua_tointegerx(L, 2, &isint);
        if (!isint)
            return luaL_argerror(L, 2, "fd must be an integer");
    } else {
        int isint;

        if (lua_type(L, 2) != LUA_TUSERDATA && lua_type(L, 2) != LUA_TTABLE)
            return luaL_typeerror(L, 2, "LuaSocket object or integer fd");
        if (lua_getfield(L, 2, "getfd") != LUA_TFUNCTION)
            return luaL_typeerror(L, 2, "LuaSocket object or integer fd");
        lua_pushvalue(L, 2);
        lua_call(L, 1, 1);
        /* LuaSocket returns the fd as a float */
        fd = lua_tointegerx(L, -1, &isint);
        if (!isint)
            return luaL_argerror(L, 2, "getfd() did not return an integer");
        lua_pop(L, 1);
        if (!have_timeout && lua_getfield(L, 2, "gettimeout") == LUA_TFUNCTION) {
            lua_pushvalue(L, 2);
            lua_call(L, 1, 1);
            if (lua_type(L, -1) == LUA_TNUMBER)
                timeout = timeout_value(L, -1, 2);
        }
        lua_settop(L, 3);
    }
    luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 2, "not an open socket");
    /* the socket's own faults name it; trk_conn_new_fd's others are the options' */
    if ((st = trk_ctx_check_fd(c->ctx, (int)fd, &err)) != TRK_OK)
        return ltrk_raise(L, st, &err, 2);
    conn = ltrk_connection_new(L, 1, lua_type(L, 2) != LUA_TNUMBER);
    if (lua_type(L, 2) != LUA_TNUMBER) {
        lua_pushvalue(L, 2);
        lua_setiuservalue(L, -2, LTRK_UV_SOCKET);
        conn->sock = luasocket_fd_in_place(L, 2, fd) ? LTRK_SOCK_LUASOCKET : LTRK_SOCK_GETFD;
    }
    st = trk_conn_new_fd(c->ctx, (int)fd, timeout, hostname, &conn->conn, &err);
    if (st == TRK_OK)
        conn->role = trk_conn_role(conn->conn);
    return opened(L, st, &err, 3);
}

/* ctx:memory(opts): bytes in with feed(), out with drain(). */
static int context_memory(lua_State *L)
{
    ltrk_context *c = ltrk_check_context(L, 1);
    const char *hostname;
    ltrk_connection *conn;
    trk_error err;
    trk_status st;

    check_conn_options(L, 2, memory_options);
    hostname = conn_hostname(L, 2);
    conn = ltrk_connection_new(L, 1, 0);
    st = trk_conn_new_memory(c->ctx, hostname, &conn->conn, &err);
    if (st == TRK_OK)
        conn->role = trk_conn_role(conn->conn);
    return opened(L, st, &err, 2);
}

static int context_role(lua_State *L)
{
    ltrk_context *c = ltrk_check_context(L, 1);

    lua_pushstring(L, trk_role_name(trk_ctx_role(c->ctx)));
    return 1;
}

/* ctx:protocol() -> "tls" | "dtls" */
static int context_protocol(lua_State *L)
{
    ltrk_context *c = ltrk_check_context(L, 1);

    lua_pushstring(L, trk_ctx_is_dtls(c->ctx) ? "dtls" : "tls");
    return 1;
}

static int context_gc(lua_State *L)
{
    ltrk_context *c = luaL_checkudata(L, 1, LTRK_CONTEXT_MT);

    trk_ctx_free(c->ctx); /* connections hold their own core reference */
    c->ctx = NULL;
    return 0;
}

static int context_tostring(lua_State *L)
{
    ltrk_context *c = luaL_checkudata(L, 1, LTRK_CONTEXT_MT);

    if (c->ctx == NULL)
        lua_pushstring(L, "tlsrekey.context (released)");
    else
        lua_pushfstring(L, "tlsrekey.context %s%s", trk_role_name(trk_ctx_role(c->ctx)),
                        trk_ctx_is_dtls(c->ctx) ? " dtls" : "");
    return 1;
}

void ltrk_context_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"connect", context_connect},
        {"wrap", context_wrap},
        {"memory", context_memory},
        {"role", context_role},
        {"protocol", context_protocol},
        {NULL, NULL}};
    static const luaL_Reg metamethods[] = {
        {"__gc", context_gc},
        {"__tostring", context_tostring},
        {NULL, NULL}};

    luaL_newmetatable(L, LTRK_CONTEXT_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
