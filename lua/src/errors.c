/*
 * errors.c - the one place where a core status becomes a Lua error.
 *
 * An error is a table {code, reason, library, message, ssl_error, errno,
 * verify_code, errors} sharing one metatable whose __tostring gives one line.
 * Argument errors are the exception: they are raised with luaL_argerror so that
 * they read like every other Lua library's ("bad argument #1 to 'key_update'").
 * The would-block statuses are not raised by read/write (see connection.c), but
 * they are ordinary errors everywhere else.
 */
#include <string.h>

#include "shim.h"

static void set_string(lua_State *L, const char *field, const char *value)
{
    if (value != NULL && value[0] != '\0') {
        lua_pushstring(L, value);
        lua_setfield(L, -2, field);
    }
}

void ltrk_push_error(lua_State *L, trk_status status, const trk_error *err)
{
    const char *name = trk_status_name(status);
    const char *message = err != NULL && err->message[0] != '\0'
                              ? err->message
                              : trk_status_message(status);
    int i, nqueue = err != NULL ? err->nqueue : 0;

    if (nqueue > TRK_ERROR_QUEUE_MAX)
        nqueue = TRK_ERROR_QUEUE_MAX;
    lua_createtable(L, 0, 10);
    lua_pushstring(L, name != NULL ? name : "unknown");
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message != NULL ? message : "unknown error");
    lua_setfield(L, -2, "message");
    if (err != NULL) {
        set_string(L, "reason", err->reason);
        set_string(L, "library", err->library);
    }
    lua_pushinteger(L, err != NULL ? err->ssl_error : 0);
    lua_setfield(L, -2, "ssl_error");
    lua_pushinteger(L, err != NULL ? err->sys_errno : 0);
    lua_setfield(L, -2, "errno");
    lua_pushinteger(L, err != NULL ? (lua_Integer)err->verify_code : 0);
    lua_setfield(L, -2, "verify_code");
    if (err != NULL && err->alert >= 0) {
        lua_pushinteger(L, err->alert);
        lua_setfield(L, -2, "alert");
    }
    lua_createtable(L, nqueue, 0);
    for (i = 0; i < nqueue; i++) {
        lua_pushstring(L, err->queue[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "errors");
    luaL_setmetatable(L, LTRK_ERROR_MT);
}

int ltrk_raise(lua_State *L, trk_status status, const trk_error *err, int arg)
{
    if (status == TRK_ARG && arg > 0) {
        const char *message = err != NULL && err->message[0] != '\0'
                                  ? err->message
                                  : trk_status_message(status);
        return luaL_argerror(L, arg, message);
    }
    ltrk_push_error(L, status, err);
    return lua_error(L);
}

int ltrk_raise_status(lua_State *L, trk_status status, const char *reason,
                      const char *message)
{
    trk_error err;

    memset(&err, 0, sizeof err);
    err.status = status;
    if (reason != NULL)
        strncpy(err.reason, reason, sizeof err.reason - 1);
    if (message != NULL)
        strncpy(err.message, message, sizeof err.message - 1);
    return ltrk_raise(L, status, &err, 0);
}

/* "tlsrekey: state: <message>" */
static int error_tostring(lua_State *L)
{
    const char *code, *message;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "code");
    lua_getfield(L, 1, "message");
    code = lua_tostring(L, -2);
    message = lua_tostring(L, -1);
    lua_pushfstring(L, "tlsrekey: %s: %s", code != NULL ? code : "error",
                    message != NULL ? message : "(no message)");
    return 1;
}

void ltrk_errors_open(lua_State *L)
{
    luaL_newmetatable(L, LTRK_ERROR_MT);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

void ltrk_check_options(lua_State *L, int arg, const char *const known[])
{
    int i;

    arg = lua_absindex(L, arg);
    lua_pushnil(L);
    while (lua_next(L, arg) != 0) {
        const char *key;

        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_argerror(L, arg, lua_pushfstring(L, "option names must be strings, got %s",
                                                  luaL_typename(L, -1)));
        }
        key = lua_tostring(L, -1);
        for (i = 0; known[i] != NULL; i++) {
            if (strcmp(key, known[i]) == 0)
                break;
        }
        if (known[i] == NULL)
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", key));
    }
}

const char *ltrk_no_nul(lua_State *L, const char *s, size_t len, int arg,
                        const char *what)
{
    if (s != NULL && memchr(s, '\0', len) != NULL)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s contains a NUL byte", what));
    return s;
}
