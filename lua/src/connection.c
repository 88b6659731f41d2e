/*
 * connection.c - the methods of a tlsrekey connection.
 *
 * Each method checks its arguments, calls one core function and converts the
 * status. The return conventions, in one place:
 *   read      -> string | nil (clean close) | nil, "want_read"/"want_write"
 *   read_into -> bytes read into the buffer | the same nil, nil + want as read
 *   write     -> bytes written | nil, "want_read"/"want_write"
 *   everything else returns its value or raises (errors.c); would-block included.
 * close, __close and __gc are one function.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "shim.h"

#define DEFAULT_READ_SIZE 16384
#define MAX_EXPORT_LENGTH 16384

/* ------------------------------------------------------------------------- */
/* Creation and lifetime                                                       */
/* ------------------------------------------------------------------------- */

ltrk_connection *ltrk_connection_new(lua_State *L, int ctx_idx, int owned)
{
    ltrk_connection *c;

    ctx_idx = lua_absindex(L, ctx_idx);
    c = lua_newuserdatauv(L, sizeof *c, owned ? LTRK_UV_SOCKET : LTRK_UV_EVENT_FN);
    memset(c, 0, sizeof *c);
    c->conn = NULL;
    c->peer = NULL;
    c->L = NULL;
    c->parked_ref = LUA_NOREF;
    luaL_setmetatable(L, LTRK_CONNECTION_MT);
    lua_pushvalue(L, ctx_idx);
    lua_setiuservalue(L, -2, LTRK_UV_CONTEXT);
    return c;
}

/* close, __close and __gc: frees the core connection (which drops its context
 * reference and closes only a socket the core opened itself), forgets the pair
 * peer and releases the user values. Idempotent. */
static int conn_close(lua_State *L)
{
    ltrk_connection *c = luaL_checkudata(L, 1, LTRK_CONNECTION_MT);
    int uv;

    if (c->busy)
        return ltrk_raise_status(L, TRK_STATE, "connection is busy",
                                 "cannot close a connection from inside its own "
                                 "event callback");
    if (c->conn != NULL) {
        trk_conn *conn = c->conn;

        c->conn = NULL;
        trk_conn_set_event_callback(conn, NULL, NULL);
        trk_conn_free(conn);
    }
    if (c->peer != NULL) {
        c->peer->peer = NULL;
        c->peer = NULL;
    }
    ltrk_release_parked(L, c);
    for (uv = 1; uv <= LTRK_UV_COUNT; uv++) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, uv);
    }
    return 0;
}

/* The context in field `name` of the options table at index 1. */
static ltrk_context *pair_context(lua_State *L, const char *name)
{
    ltrk_context *c;

    lua_getfield(L, 1, name);
    c = luaL_testudata(L, -1, LTRK_CONTEXT_MT);
    if (c == NULL)
        luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' must be a tlsrekey.context, "
                                               "got %s",
                                            name, luaL_typename(L, -1)));
    lua_pop(L, 1); /* anchored in the options table */
    if (c->ctx == NULL)
        ltrk_raise_status(L, TRK_STATE, "context is released", "the context is released");
    return c;
}

/* core.pair{client_ctx = c, server_ctx = s [, server_hostname = h]} -> client,
 * server. One table, as tlsrekey.pair takes: whatever the core refuses (a TLS
 * context with a DTLS one, a bad host name) is "bad argument #1 to 'pair'", its
 * sentence naming the option. */
int ltrk_pair_new(lua_State *L)
{
    static const char *const known[] = {"client_ctx", "server_ctx", "server_hostname",
                                        NULL};
    ltrk_context *cctx, *sctx;
    size_t hlen = 0;
    const char *hostname = NULL;
    ltrk_connection *client, *server;
    trk_error err;
    trk_status st;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    ltrk_check_options(L, 1, known);
    cctx = pair_context(L, "client_ctx");
    sctx = pair_context(L, "server_ctx");
    lua_getfield(L, 1, "server_hostname"); /* 2 */
    if (lua_type(L, 2) == LUA_TSTRING)
        hostname = ltrk_no_nul(L, lua_tolstring(L, 2, &hlen), hlen, 1,
                               "option 'server_hostname'");
    else if (!lua_isnil(L, 2))
        luaL_argerror(L, 1, lua_pushfstring(L, "option 'server_hostname' must be a string, "
                                               "got %s",
                                            luaL_typename(L, 2)));
    lua_getfield(L, 1, "client_ctx"); /* 3 */
    lua_getfield(L, 1, "server_ctx"); /* 4 */
    client = ltrk_connection_new(L, 3, 1); /* 5 */
    server = ltrk_connection_new(L, 4, 1); /* 6 */
    st = trk_pair_new(cctx->ctx, sctx->ctx, hostname, &client->conn, &server->conn, &err);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 1);
    client->role = trk_conn_role(client->conn);
    server->role = trk_conn_role(server->conn);
    /* Each end is driven from inside the other's calls: they live and die together. */
    client->peer = server;
    server->peer = client;
    lua_pushvalue(L, 6);
    lua_setiuservalue(L, 5, LTRK_UV_PEER);
    lua_pushvalue(L, 5);
    lua_setiuservalue(L, 6, LTRK_UV_PEER);
    return 2;
}

/* ------------------------------------------------------------------------- */
/* Calling the core                                                            */
/* ------------------------------------------------------------------------- */

static void raise_closed(lua_State *L)
{
    ltrk_raise_status(L, TRK_STATE, "connection is closed", "the connection is closed");
}

/*
 * The connection userdata at index 1 of a method. Every method carries the connection
 * metatable as its upvalue 1 and the buffer metatable as its upvalue 2
 * (ltrk_connection_open), so each check is one pointer comparison; luaL_checkudata
 * looks the metatable up in the registry by name on every call (a tenth of the shim's
 * cost per read or write). Anything else falls through to luaL_checkudata for its
 * usual error message.
 */
static ltrk_connection *check_self(lua_State *L)
{
    ltrk_connection *c = lua_touserdata(L, 1);
    int same = 0;

    if (c != NULL && lua_getmetatable(L, 1)) {
        same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
    }
    return same ? c : luaL_checkudata(L, 1, LTRK_CONNECTION_MT);
}

/* For questions: an open connection (event callbacks may ask them). */
static ltrk_connection *check_open(lua_State *L)
{
    ltrk_connection *c = check_self(L);

    if (c->conn == NULL)
        raise_closed(L);
    return c;
}

/* For actions: an open connection not already inside a core call. */
static ltrk_connection *check_idle(lua_State *L)
{
    ltrk_connection *c = check_open(L);

    if (c->busy || (c->peer != NULL && c->peer->busy))
        ltrk_raise_status(L, TRK_STATE, "connection is busy",
                          "the connection is busy: an event callback must not drive "
                          "the connection it was called for");
    return c;
}

/*
 * For calls that use the socket: check_idle, and the socket object given to wrap
 * must still hold the connection's fd. Its owner may have closed it since (LuaSocket
 * then says -1), and the number may be another file's by now: the core then fails
 * the connection for good (trk_conn_check_fd). A LuaSocket object's fd is read in
 * place, any other object's getfd() is called (context.c says why); an integer fd
 * given to wrap has no owner object to ask.
 */
static ltrk_connection *check_io(lua_State *L)
{
    ltrk_connection *c = check_idle(L);
    lua_Integer fd = -1;
    trk_error err;
    trk_status st;

    if (c->sock == LTRK_SOCK_NONE)
        return c;
    lua_getiuservalue(L, 1, LTRK_UV_SOCKET);
    if (c->sock == LTRK_SOCK_LUASOCKET) {
        fd = *(const int *)lua_touserdata(L, -1);
    } else if (lua_getfield(L, -1, "getfd") == LUA_TFUNCTION) {
        int isint;

        lua_pushvalue(L, -2);
        lua_call(L, 1, 1);
        fd = lua_tointegerx(L, -1, &isint); /* LuaSocket's fd is a float */
        if (!isint || fd < 0 || fd > 0x7fffffff)
            fd = -1;
        lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    st = trk_conn_check_fd(c->conn, (int)fd, &err);
    if (st != TRK_OK)
        ltrk_raise(L, st, &err, 0);
    return c;
}

/* After a core call that may run event callbacks: an error raised by one wins,
 * since it is what the user's own code reported. */
static trk_status leave(lua_State *L, ltrk_connection *c, trk_status st)
{
    ltrk_call_leave(L, c);
    ltrk_raise_parked(L, c);
    if (st == TRK_CALLBACK)
        ltrk_raise_status(L, TRK_CALLBACK, "event callback failed",
                          "the event callback failed");
    return st;
}

/* Returns true, or raises. */
static int done(lua_State *L, ltrk_connection *c, trk_status st, const trk_error *err)
{
    leave(L, c, st);
    if (st != TRK_OK)
        return ltrk_raise(L, st, err, 0);
    lua_pushboolean(L, 1);
    return 1;
}

/* A call that takes no argument and returns true: the connection, the core call,
 * and done(). */
typedef trk_status (*conn_action)(trk_conn *, trk_error *);

static int run_action(lua_State *L, conn_action fn)
{
    ltrk_connection *c = check_io(L);
    trk_error err;
    trk_status st;

    ltrk_call_enter(L, c);
    st = fn(c->conn, &err);
    return done(L, c, st, &err);
}

/* read/write: would-block is a result, not an error. */
static int would_block(lua_State *L, trk_status st)
{
    lua_pushnil(L);
    lua_pushstring(L, trk_status_name(st));
    return 2;
}

/* What read and read_into return when no data came: nil at a clean close,
 * nil + want, or they raise. */
static int read_nothing(lua_State *L, trk_status st, const trk_error *err)
{
    switch (st) {
    case TRK_CLOSED:
        lua_pushnil(L);
        return 1;
    case TRK_WANT_READ:
    case TRK_WANT_WRITE:
        return would_block(L, st);
    default:
        return ltrk_raise(L, st, err, 0);
    }
}

/* The bytes of the buffer argument at idx (NULL if it is something else). */
static unsigned char *to_buffer(lua_State *L, int idx, size_t *len)
{
    return ltrk_to_buffer(L, idx, lua_upvalueindex(2), len);
}

/* The optional length argument that goes with a buffer of `size` bytes: from min
 * to size, default size. */
static size_t opt_length(lua_State *L, int arg, size_t size, lua_Integer min)
{
    lua_Integer n;

    if (lua_isnoneornil(L, arg))
        return size;
    n = luaL_checkinteger(L, arg);
    if (n < min || (lua_Unsigned)n > size)
        luaL_argerror(L, arg, lua_pushfstring(L, "n must be from %I to #buf (%I), got %I",
                                              min, (lua_Integer)size, n));
    return (size_t)n;
}

/* ------------------------------------------------------------------------- */
/* I/O                                                                         */
/* ------------------------------------------------------------------------- */

static int conn_do_handshake(lua_State *L)
{
    return run_action(L, trk_conn_do_handshake);
}

/*
 * Reads of up to DEFAULT_READ_SIZE bytes land in one buffer per OS thread rather than
 * in a fresh luaL_Buffer box (a userdata plus a 16 KiB allocation and its free on
 * every read); the bytes are copied into the result string either way. A read made
 * while the buffer is in use (from an event callback) takes the luaL_Buffer path.
 */
static _Thread_local char read_scratch[DEFAULT_READ_SIZE];
static _Thread_local int read_scratch_busy;

/* conn:read([n]) */
static int conn_read(lua_State *L)
{
    ltrk_connection *c = check_io(L);
    lua_Integer cap = luaL_optinteger(L, 2, DEFAULT_READ_SIZE);
    luaL_Buffer b;
    trk_error err;
    trk_status st;
    size_t n = 0;
    int scratch;
    char *p;

    luaL_argcheck(L, cap >= 0, 2, "size must not be negative"); /* 0: "", as receive(0) */
    /* what can arrive, not what was asked: read(1 << 40) must not set aside 1 TiB */
    if (cap > TRK_READ_CHUNK)
        cap = (lua_Integer)trk_conn_read_size(c->conn, (lua_Unsigned)cap > (size_t)-1 / 2
                                                           ? (size_t)-1 / 2
                                                           : (size_t)cap);
    lua_settop(L, 1);
    /* The buffer first: its allocation may raise, and must not leave the
     * connection (and its pair peer) marked busy for good. */
    scratch = cap > LUAL_BUFFERSIZE && cap <= DEFAULT_READ_SIZE && !read_scratch_busy;
    if (scratch) {
        read_scratch_busy = 1;
        p = read_scratch;
    } else {
        p = luaL_buffinitsize(L, &b, (size_t)cap);
    }
    ltrk_call_enter(L, c);
    st = trk_conn_read(c->conn, p, (size_t)cap, &n, &err);
    read_scratch_busy = 0; /* leave() runs no Lua code unless it raises */
    leave(L, c, st);
    if (st != TRK_OK)
        return read_nothing(L, st, &err);
    if (scratch)
        lua_pushlstring(L, read_scratch, n);
    else
        luaL_pushresultsize(&b, n);
    return 1;
}

/* conn:read_into(buf [, n]): up to n (default #buf) bytes into buf[1..count]; no
 * string is made, which is the point (a 16 KiB string per record is an allocation,
 * a copy and garbage). The buffer stays on the stack, alive, during the call. */
static int conn_read_into(lua_State *L)
{
    ltrk_connection *c = check_io(L);
    size_t size = 0, cap, n = 0;
    unsigned char *p = to_buffer(L, 2, &size);
    trk_error err;
    trk_status st;

    if (p == NULL)
        return luaL_typeerror(L, 2, LTRK_BUFFER_MT);
    cap = opt_length(L, 3, size, 0); /* 0: reads nothing, returns 0 */
    lua_settop(L, 2);
    ltrk_call_enter(L, c);
    st = trk_conn_read(c->conn, p, cap, &n, &err);
    leave(L, c, st);
    if (st != TRK_OK)
        return read_nothing(L, st, &err);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* conn:write(s) or conn:write(buf [, n]) (n from 0 to #buf, default #buf): ""
 * still calls the core (it sends an owed KeyUpdate reply). A length goes with a
 * buffer only: LuaSocket's send(s, i) reads a second number as a start index. */
/*
 * A write's error carries `written`: the bytes of the data that went out and are
 * not sent again, so that a retry sends only the rest (an event callback may fail
 * after they left). 0 after a timeout: the write is pending, the same call
 * finishes it. A callback's own error, when bytes went out, becomes the `cause` of
 * a "callback" error (the error on the stack top); with none out it is raised as
 * it was.
 */
static int raise_written(lua_State *L, trk_status st, const trk_error *err, size_t n)
{
    if (err == NULL) {
        int cause = lua_gettop(L);
        trk_error e;

        memset(&e, 0, sizeof e);
        e.alert = -1;
        snprintf(e.reason, sizeof e.reason, "callback failed");
        snprintf(e.message, sizeof e.message,
                 "write: an event callback failed after %zu bytes went out "
                 "(err.written): %s", n, luaL_tolstring(L, cause, NULL));
        lua_pop(L, 1);
        ltrk_push_error(L, st, &e);
        lua_pushvalue(L, cause);
        lua_setfield(L, -2, "cause");
    } else {
        ltrk_push_error(L, st, err);
    }
    lua_pushinteger(L, (lua_Integer)n);
    lua_setfield(L, -2, "written");
    return lua_error(L);
}

static int conn_write(lua_State *L)
{
    ltrk_connection *c = check_io(L);
    size_t len, n = 0;
    const char *s;
    trk_error err;
    trk_status st;

    /* numbers too, as luaL_checklstring always took them */
    if (lua_type(L, 2) == LUA_TSTRING || lua_type(L, 2) == LUA_TNUMBER) {
        s = lua_tolstring(L, 2, &len);
        luaL_argcheck(L, lua_isnoneornil(L, 3), 3,
                      "a length goes with a buffer only (for a string: s:sub(1, n))");
    } else if ((s = (const char *)to_buffer(L, 2, &len)) != NULL) {
        len = opt_length(L, 3, len, 0);
    } else {
        return luaL_typeerror(L, 2, "string or " LTRK_BUFFER_MT);
    }

    ltrk_call_enter(L, c);
    st = trk_conn_write(c->conn, s, len, &n, &err);
    ltrk_call_leave(L, c);
    if (ltrk_take_parked(L, c)) {
        if (n == 0) /* nothing went out: the callback's error as it was raised */
            return lua_error(L);
        return raise_written(L, TRK_CALLBACK, NULL, n);
    }
    switch (st) {
    case TRK_OK:
        lua_pushinteger(L, (lua_Integer)n);
        return 1;
    case TRK_WANT_READ:
    case TRK_WANT_WRITE:
        return would_block(L, st);
    default:
        return raise_written(L, st, &err, n);
    }
}

static int conn_pending(lua_State *L)
{
    ltrk_connection *c = check_open(L);

    lua_pushinteger(L, (lua_Integer)trk_conn_pending(c->conn));
    return 1;
}

/* conn:shutdown() -> true once the peer's close_notify has arrived too. */
static int conn_shutdown(lua_State *L)
{
    ltrk_connection *c = check_io(L);
    int complete = 0;
    trk_error err;
    trk_status st;

    ltrk_call_enter(L, c);
    st = trk_conn_shutdown(c->conn, &complete, &err);
    leave(L, c, st);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 0);
    lua_pushboolean(L, complete);
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Memory transport                                                            */
/* ------------------------------------------------------------------------- */

static int conn_feed(lua_State *L)
{
    ltrk_connection *c = check_idle(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    trk_error err;
    trk_status st;

    ltrk_call_enter(L, c);
    st = trk_conn_feed(c->conn, s, len, &err);
    return done(L, c, st, &err);
}

static int conn_feed_eof(lua_State *L)
{
    return run_action(L, trk_conn_feed_eof);
}

/* conn:drain() -> everything waiting to be sent, "" if nothing. */
static int conn_drain(lua_State *L)
{
    ltrk_connection *c = check_idle(L);
    size_t want = trk_conn_outgoing(c->conn), n = 0;
    luaL_Buffer b;
    trk_error err;
    trk_status st;
    char *p;

    lua_settop(L, 1);
    p = luaL_buffinitsize(L, &b, want > 0 ? want : 1); /* may raise: before entering */
    ltrk_call_enter(L, c);
    /* always asked: on a connection that is not a memory one it says so */
    st = trk_conn_drain(c->conn, p, want, &n, &err);
    leave(L, c, st);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 0);
    luaL_pushresultsize(&b, n);
    return 1;
}

static int conn_outgoing(lua_State *L)
{
    ltrk_connection *c = check_open(L);

    lua_pushinteger(L, (lua_Integer)trk_conn_outgoing(c->conn));
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Key update and renegotiation                                                */
/* ------------------------------------------------------------------------- */

/* conn:key_update([type [, now]]): type "not_requested" (default) or "requested". */
static int conn_key_update(lua_State *L)
{
    ltrk_connection *c = check_self(L);
    int type = TRK_KEY_UPDATE_NOT_REQUESTED, now = 0;
    trk_error err;
    trk_status st;

    if (!lua_isnoneornil(L, 2)) {
        const char *name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;

        if (name == NULL)
            return luaL_typeerror(L, 2, "\"not_requested\" or \"requested\"");
        if (trk_key_update_type_from_name(name, &type) != 0 ||
            type == TRK_KEY_UPDATE_NONE)
            return luaL_argerror(
                L, 2, lua_pushfstring(L, "key update type must be \"not_requested\" or "
                                         "\"requested\", got \"%s\"", name));
    }
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TBOOLEAN);
        now = lua_toboolean(L, 3);
    }
    c = check_io(L);
    lua_settop(L, 1);
    ltrk_call_enter(L, c);
    st = trk_conn_key_update(c->conn, type, now, &err);
    leave(L, c, st);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 2);
    lua_pushboolean(L, 1);
    return 1;
}

static int conn_get_key_update_type(lua_State *L)
{
    ltrk_connection *c = check_open(L);

    lua_pushstring(L, trk_key_update_type_name(trk_conn_get_key_update_type(c->conn)));
    return 1;
}

static int conn_renegotiate(lua_State *L)
{
    return run_action(L, trk_conn_renegotiate);
}

static int conn_renegotiate_abbreviated(lua_State *L)
{
    return run_action(L, trk_conn_renegotiate_abbreviated);
}

static int conn_renegotiate_pending(lua_State *L)
{
    ltrk_connection *c = check_open(L);

    lua_pushboolean(L, trk_conn_renegotiate_pending(c->conn));
    return 1;
}

static int opt_boolean_arg(lua_State *L, int arg, int def)
{
    if (lua_isnoneornil(L, arg))
        return def;
    luaL_checktype(L, arg, LUA_TBOOLEAN);
    return lua_toboolean(L, arg);
}

/* conn:set_verify_client([required=true [, verify=true]]) */
static int conn_set_verify_client(lua_State *L)
{
    ltrk_connection *c = check_self(L);
    int required = opt_boolean_arg(L, 2, 1);
    int verify = opt_boolean_arg(L, 3, 1);
    trk_error err;
    trk_status st;

    c = check_idle(L);
    st = trk_conn_set_verify_client(c->conn, required, verify, &err);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 0);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:set_rekey_policy{ bytes =, records =, seconds =, request_peer =,
 * use_renegotiation =, aead_limit = } */
static int conn_set_rekey_policy(lua_State *L)
{
    trk_rekey_policy policy;
    trk_error err;
    trk_status st;
    ltrk_connection *c = check_idle(L);

    ltrk_check_policy(L, 2, 2, &policy);
    st = trk_conn_set_rekey_policy(c->conn, &policy, &err);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 2);
    return 0;
}

static int conn_get_rekey_policy(lua_State *L)
{
    trk_rekey_policy policy;
    ltrk_connection *c = check_open(L);

    trk_conn_get_rekey_policy(c->conn, &policy);
    ltrk_push_policy(L, &policy);
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Introspection                                                               */
/* ------------------------------------------------------------------------- */

static int push_string_or_nil(lua_State *L, const char *s)
{
    if (s != NULL)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
    return 1;
}

static int conn_role(lua_State *L)
{
    ltrk_connection *c = check_open(L);

    lua_pushstring(L, trk_role_name(trk_conn_role(c->conn)));
    return 1;
}

static int conn_version(lua_State *L)
{
    return push_string_or_nil(L, trk_conn_version(check_open(L)->conn));
}

static int conn_cipher(lua_State *L)
{
    return push_string_or_nil(L, trk_conn_cipher(check_open(L)->conn));
}

static int conn_group(lua_State *L)
{
    return push_string_or_nil(L, trk_conn_group(check_open(L)->conn));
}

static int conn_alpn(lua_State *L)
{
    ltrk_connection *c = check_open(L);
    const unsigned char *proto = NULL;
    size_t len = 0;

    trk_conn_alpn(c->conn, &proto, &len);
    if (proto == NULL || len == 0)
        lua_pushnil(L);
    else
        lua_pushlstring(L, (const char *)proto, len);
    return 1;
}

static int conn_session_reused(lua_State *L)
{
    lua_pushboolean(L, trk_conn_session_reused(check_open(L)->conn));
    return 1;
}

static int conn_secure_renegotiation(lua_State *L)
{
    lua_pushboolean(L, trk_conn_secure_renegotiation(check_open(L)->conn));
    return 1;
}

static int conn_handshake_done(lua_State *L)
{
    lua_pushboolean(L, trk_conn_handshake_done(check_open(L)->conn));
    return 1;
}

/* state() answers even after close ("released"): it is a question about the
 * object, not an action on the connection. */
static int conn_state(lua_State *L)
{
    ltrk_connection *c = check_self(L);

    lua_pushstring(L, c->conn != NULL ? trk_conn_state(c->conn) : "released");
    return 1;
}

static int conn_stats(lua_State *L)
{
    ltrk_connection *c = check_open(L);
    const trk_stat_field *f;
    trk_stats stats;

    trk_conn_stats(c->conn, &stats);
    lua_createtable(L, 0, (int)(sizeof stats / sizeof(uint64_t)));
    for (f = trk_stat_fields; f->name != NULL; f++) {
        uint64_t v;

        memcpy(&v, (const char *)&stats + f->offset, sizeof v);
        lua_pushinteger(L, (lua_Integer)v);
        lua_setfield(L, -2, f->name);
    }
    return 1;
}

/* conn:peer_certificate() -> {subject, issuer, serial, not_before, not_after, san,
 * der} or nil when the peer sent none. */
static int conn_peer_certificate(lua_State *L)
{
    ltrk_connection *c = check_open(L);
    unsigned char *der = NULL;
    size_t der_len = 0;
    trk_cert_info info;
    trk_error err;
    trk_status st;

    memset(&info, 0, sizeof info);
    st = trk_conn_peer_certificate(c->conn, &info, &der, &der_len, &err);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 0);
    if (der == NULL) {
        lua_pushnil(L);
        return 1;
    }
    /* Copy the DER into Lua first, so nothing malloc'ed outlives an error. */
    lua_pushlstring(L, (const char *)der, der_len); /* a push may raise on OOM: */
    trk_free(der);                                  /* tolerated, as everywhere */
    lua_createtable(L, 0, 7);
    lua_insert(L, -2);
    lua_setfield(L, -2, "der");
#define SET_FIELD(name)                                                              \
    do {                                                                             \
        info.name[sizeof info.name - 1] = '\0';                                      \
        lua_pushstring(L, info.name);                                                \
        lua_setfield(L, -2, #name);                                                  \
    } while (0)
    SET_FIELD(subject);
    SET_FIELD(issuer);
    SET_FIELD(serial);
    SET_FIELD(not_before);
    SET_FIELD(not_after);
    SET_FIELD(san);
#undef SET_FIELD
    return 1;
}

/* conn:export_keying_material(label, length [, context]) */
static int conn_export_keying_material(lua_State *L)
{
    ltrk_connection *c = check_self(L);
    size_t label_len;
    const char *label = luaL_checklstring(L, 2, &label_len);
    lua_Integer length = luaL_checkinteger(L, 3);
    size_t context_len = 0;
    const char *context = luaL_optlstring(L, 4, NULL, &context_len);
    luaL_Buffer b;
    trk_error err;
    trk_status st;
    char *p;

    ltrk_no_nul(L, label, label_len, 2, "label");
    luaL_argcheck(L, length > 0 && length <= MAX_EXPORT_LENGTH, 3,
                  "length must be from 1 to 16384");
    c = check_open(L);
    p = luaL_buffinitsize(L, &b, (size_t)length);
    st = trk_conn_export_keying_material(c->conn, (unsigned char *)p, (size_t)length,
                                         label, (const unsigned char *)context,
                                         context_len, &err);
    if (st != TRK_OK) /* TRK_ARG: the length is past what the suite can export */
        return ltrk_raise(L, st, &err, 3);
    luaL_pushresultsize(&b, (size_t)length);
    return 1;
}

static int conn_getfd(lua_State *L)
{
    lua_pushinteger(L, trk_conn_fd(check_open(L)->conn));
    return 1;
}

/* conn:settimeout(t): nil or negative blocks, 0 never blocks, > 0 bounds each call
 * (LuaSocket's convention). */
static int conn_settimeout(lua_State *L)
{
    ltrk_connection *c = check_idle(L);
    double t = TRK_TIMEOUT_NONE;
    trk_error err;
    trk_status st;

    if (!lua_isnoneornil(L, 2)) {
        t = (double)luaL_checknumber(L, 2);
        luaL_argcheck(L, t == t, 2, "timeout must not be NaN");
        if (t < 0)
            t = TRK_TIMEOUT_NONE;
    }
    st = trk_conn_set_timeout(c->conn, t, &err);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 2);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:gettimeout() -> seconds, or nil when blocking. */
static int conn_gettimeout(lua_State *L)
{
    double t = trk_conn_timeout(check_open(L)->conn);

    if (t < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, (lua_Number)t);
    return 1;
}

/* ------------------------------------------------------------------------- */
/* DTLS                                                                        */
/* ------------------------------------------------------------------------- */

static int conn_is_dtls(lua_State *L)
{
    lua_pushboolean(L, trk_conn_is_dtls(check_open(L)->conn));
    return 1;
}

/* conn:get_timeout() -> seconds until the DTLS retransmission timer fires (0 once it
 * has), or nil when none runs. Not conn:gettimeout(), the socket's own timeout. */
static int conn_get_timeout(lua_State *L)
{
    double seconds;

    if (trk_conn_dtls_get_timeout(check_open(L)->conn, &seconds))
        lua_pushnumber(L, (lua_Number)seconds);
    else
        lua_pushnil(L);
    return 1;
}

/* conn:handle_timeout() -> true; retransmits the last flight if the timer expired. */
static int conn_handle_timeout(lua_State *L)
{
    return run_action(L, trk_conn_dtls_handle_timeout);
}

/* conn:set_mtu(n): the link MTU (e.g. 1500), instead of the socket's path MTU. */
static int conn_set_mtu(lua_State *L)
{
    ltrk_connection *c = check_self(L);
    lua_Integer mtu = luaL_checkinteger(L, 2);
    trk_error err;
    trk_status st;

    c = check_idle(L);
    /* The core alone says which MTUs are valid (one range in every message); a
     * value past a long is past that range too. */
    st = trk_conn_set_mtu(c->conn, mtu > LONG_MAX ? LONG_MAX : mtu < LONG_MIN ? LONG_MIN
                                                                               : (long)mtu,
                          &err);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 2);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:data_mtu() -> the largest write that fits one packet (0 before a cipher). */
static int conn_data_mtu(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)trk_conn_dtls_data_mtu(check_open(L)->conn));
    return 1;
}

/* conn:context() -> the context userdata this connection was made from. */
static int conn_context(lua_State *L)
{
    check_open(L);
    lua_getiuservalue(L, 1, LTRK_UV_CONTEXT);
    return 1;
}

/* "tlsrekey.connection client TLSv1.3 TLS_AES_256_GCM_SHA384 established
 *  key_update=requested" */
static int conn_tostring(lua_State *L)
{
    ltrk_connection *c = luaL_checkudata(L, 1, LTRK_CONNECTION_MT);
    luaL_Buffer b;
    const char *s;
    int type;

    luaL_buffinit(L, &b);
    luaL_addstring(&b, "tlsrekey.connection ");
    luaL_addstring(&b, trk_role_name(c->role));
    if (c->conn == NULL) {
        luaL_addstring(&b, " released");
        luaL_pushresult(&b);
        return 1;
    }
    if ((s = trk_conn_version(c->conn)) != NULL) {
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, s);
    }
    if ((s = trk_conn_cipher(c->conn)) != NULL) {
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, s);
    }
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, trk_conn_state(c->conn));
    type = trk_conn_get_key_update_type(c->conn);
    if (type != TRK_KEY_UPDATE_NONE) {
        luaL_addstring(&b, " key_update=");
        luaL_addstring(&b, trk_key_update_type_name(type));
    }
    if (trk_conn_renegotiate_pending(c->conn))
        luaL_addstring(&b, " renegotiate_pending");
    luaL_pushresult(&b);
    return 1;
}

void ltrk_connection_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"do_handshake", conn_do_handshake},
        {"read", conn_read},
        {"read_into", conn_read_into},
        {"write", conn_write},
        {"pending", conn_pending},
        {"shutdown", conn_shutdown},
        {"close", conn_close},
        {"feed", conn_feed},
        {"feed_eof", conn_feed_eof},
        {"drain", conn_drain},
        {"outgoing", conn_outgoing},
        {"key_update", conn_key_update},
        {"get_key_update_type", conn_get_key_update_type},
        {"renegotiate", conn_renegotiate},
        {"renegotiate_abbreviated", conn_renegotiate_abbreviated},
        {"renegotiate_pending", conn_renegotiate_pending},
        {"set_verify_client", conn_set_verify_client},
        {"set_rekey_policy", conn_set_rekey_policy},
        {"get_rekey_policy", conn_get_rekey_policy},
        {"export_keying_material", conn_export_keying_material},
        {"on_event", ltrk_on_event},
        {"role", conn_role},
        {"version", conn_version},
        {"cipher", conn_cipher},
        {"group", conn_group},
        {"alpn", conn_alpn},
        {"session_reused", conn_session_reused},
        {"secure_renegotiation", conn_secure_renegotiation},
        {"handshake_done", conn_handshake_done},
        {"peer_certificate", conn_peer_certificate},
        {"state", conn_state},
        {"stats", conn_stats},
        {"getfd", conn_getfd},
        {"settimeout", conn_settimeout},
        {"gettimeout", conn_gettimeout},
        {"context", conn_context},
        {"is_dtls", conn_is_dtls},
        {"get_timeout", conn_get_timeout},
        {"handle_timeout", conn_handle_timeout},
        {"set_mtu", conn_set_mtu},
        {"data_mtu", conn_data_mtu},
        {NULL, NULL}};
    static const luaL_Reg metamethods[] = {
        {"__gc", conn_close},
        {"__close", conn_close},
        {"__tostring", conn_tostring},
        {NULL, NULL}};

    luaL_newmetatable(L, LTRK_CONNECTION_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlibtable(L, methods);
    lua_pushvalue(L, -2);
    luaL_getmetatable(L, LTRK_BUFFER_MT); /* ltrk_buffer_open ran first */
    luaL_setfuncs(L, methods, 2); /* upvalues of every method: the two metatables */
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
