/*
 * shim.h - what the files of the Lua shim share.
 *
 * The shim converts Lua values into core arguments, calls one trk_ function and
 * converts its status back; all policy lives in csrc/. One file per concept:
 *   module.c      luaopen_tlsrekey_core: metatables, functions, constants
 *   errors.c      the one place a core status becomes a Lua error object
 *   context.c     tlsrekey.context{...} and the constructors of connections
 *   connection.c  connection methods (I/O, rekey, introspection, lifetime)
 *   events.c      the event callback: from the core into a Lua function
 *   buffer.c      tlsrekey.buffer(size): bytes that read_into fills and write sends
 */
#ifndef TLSREKEY_LUA_SHIM_H
#define TLSREKEY_LUA_SHIM_H

#include <lua.h>
#include <lauxlib.h>

#include "tlsrekey.h"

#define LTRK_CONTEXT_MT "tlsrekey.context"
#define LTRK_CONNECTION_MT "tlsrekey.connection"
#define LTRK_ERROR_MT "tlsrekey.error"
#define LTRK_BUFFER_MT "tlsrekey.buffer"

/* A context userdata: owns one core reference. */
typedef struct ltrk_context {
    trk_ctx *ctx; /* NULL once collected */
} ltrk_context;

/*
 * User values of a connection userdata (lua_newuserdatauv). They are what keeps
 * the owners alive, whatever order the collector picks. Each costs 16 bytes per
 * connection (bench/PROPOSALS.md, P6), so a connection has the third only when it
 * wraps a socket object or is a pair end (never both); a missing one reads as nil.
 */
enum {
    LTRK_UV_CONTEXT = 1, /* the context userdata */
    LTRK_UV_EVENT_FN,    /* the on_event function, or nil */
    LTRK_UV_SOCKET,      /* the wrapped LuaSocket object (never closed by us), or nil */
    LTRK_UV_PEER = LTRK_UV_SOCKET, /* the other end of a pair: the core drives it
                            from inside our calls, so it must live as long as we do */
    LTRK_UV_COUNT = LTRK_UV_SOCKET
};

/* What a connection knows of the socket object it wraps (ltrk_connection.sock). */
enum {
    LTRK_SOCK_NONE = 0,  /* none: an integer fd, a pair, memory, connect() */
    LTRK_SOCK_GETFD,     /* an object with a getfd() method */
    LTRK_SOCK_LUASOCKET  /* a LuaSocket tcp or udp object: its fd read in place */
};

/* A connection userdata. */
typedef struct ltrk_connection {
    trk_conn *conn;                /* NULL once closed */
    trk_role role;                 /* remembered for __tostring after close */
    int sock;                      /* how the socket object in LTRK_UV_SOCKET is
                                      asked for its fd before each call that uses
                                      it (LTRK_SOCK_*, connection.c) */
    struct ltrk_connection *peer;  /* the other end of a pair (kept alive by
                                      LTRK_UV_PEER), cleared when either closes */
    /* Set only while a core call runs on this connection or its peer: */
    lua_State *L;                  /* the thread making the call */
    int fn_index;                  /* stack index of the event function, 0 if none */
    int busy;                      /* re-entry from an event callback is refused */
    int has_fn;                    /* an on_event function is set: only then does a
                                      core call look up the event functions */
    int parked_ref;                /* an error raised by the event function, parked
                                      in the registry until the core call returns */
} ltrk_connection;

/* errors.c */
/* Pushes the error object for a failed core call (a table with the shared
 * LTRK_ERROR_MT metatable). */
void ltrk_push_error(lua_State *L, trk_status status, const trk_error *err);
/* Raises it. TRK_ARG becomes luaL_argerror(L, arg, message) when arg > 0. */
int ltrk_raise(lua_State *L, trk_status status, const trk_error *err, int arg);
/* Raises a shim-detected error of `status` with a short reason and sentence. */
int ltrk_raise_status(lua_State *L, trk_status status, const char *reason,
                      const char *message);
void ltrk_errors_open(lua_State *L);
/* A string that C will take as NUL-terminated: an embedded NUL would cut it short
 * without a word ("localhost\0.evil" checked as "localhost"), so it is a bad
 * argument naming `what`. Returns s. */
const char *ltrk_no_nul(lua_State *L, const char *s, size_t len, int arg,
                        const char *what);

/* context.c */
ltrk_context *ltrk_check_context(lua_State *L, int idx);
int ltrk_context_new(lua_State *L);     /* tlsrekey.context{...} */
void ltrk_context_open(lua_State *L);

/* connection.c */
/* Pushes a new, not yet opened connection userdata (conn NULL) holding the context
 * at ctx_idx. The caller then opens the core connection straight into ->conn, so a
 * core connection is never without an owner that the collector will finalise.
 * owned: it will hold a socket object or a pair's other end (LTRK_UV_SOCKET). */
ltrk_connection *ltrk_connection_new(lua_State *L, int ctx_idx, int owned);
int ltrk_pair_new(lua_State *L);        /* core.pair{client_ctx, server_ctx, server_hostname} */
void ltrk_connection_open(lua_State *L);

/* buffer.c */
int ltrk_buffer_new(lua_State *L);      /* core.buffer(size) */
/* The bytes of the buffer at idx and their count (*len), or NULL when idx holds
 * something else. mt_idx is where the caller keeps the buffer metatable (an
 * upvalue), so that the check is one comparison, not a registry look-up. */
unsigned char *ltrk_to_buffer(lua_State *L, int idx, int mt_idx, size_t *len);
/* Creates the metatable; before ltrk_connection_open, whose methods keep it. */
void ltrk_buffer_open(lua_State *L);

/* policy.c */
/* Reads a rekey policy table at idx (argument number arg for error messages). */
void ltrk_check_policy(lua_State *L, int idx, int arg, trk_rekey_policy *p);
void ltrk_push_policy(lua_State *L, const trk_rekey_policy *p);
int ltrk_testing_set_aead_scale(lua_State *L);

/* events.c */
/* Around every core call that may run event callbacks (the method's connection is
 * at stack index 1): ltrk_call_enter pushes the event functions of self and of its
 * pair peer and marks both busy; ltrk_call_leave clears that. ltrk_raise_parked
 * raises an error that an event function raised during the call (self's first,
 * then the peer's), and returns 0 if there was none. */
void ltrk_call_enter(lua_State *L, ltrk_connection *self);
void ltrk_call_leave(lua_State *L, ltrk_connection *self);
int ltrk_raise_parked(lua_State *L, ltrk_connection *self);
/* Pushes the error an event callback parked and returns 1, or returns 0. */
int ltrk_take_parked(lua_State *L, ltrk_connection *self);
void ltrk_release_parked(lua_State *L, ltrk_connection *self);
int ltrk_on_event(lua_State *L);        /* conn:on_event(fn) */

/* Options tables: raises "bad argument #arg to '<fname>' (unknown option 'x')"
 * for any string key not in the NULL-terminated `known`. */
void ltrk_check_options(lua_State *L, int arg, const char *const known[]);

#endif
