/*
 * policy.c - rekey policy tables: { bytes = n, records = n, seconds = s,
 * request_peer = bool, use_renegotiation = bool, aead_limit = bool, read_bytes = n,
 * min_interval = s }, converted to
 * and from the core's trk_rekey_policy. A nil or false threshold is left out (no
 * limit).
 */
#include <string.h>

#include "shim.h"

static const char *const policy_keys[] = {"bytes",        "records",
                                          "seconds",      "request_peer",
                                          "use_renegotiation", "aead_limit",
                                          "read_bytes",   "min_interval", NULL};

/* One threshold: nil or false leaves it out (no limit); a number goes to the core,
 * which decides what values a threshold may take and says so naming it. */
static void threshold_field(lua_State *L, int idx, int arg, trk_rekey_policy *p,
                            const char *name)
{
    trk_error err;
    trk_status st = TRK_OK;

    lua_getfield(L, idx, name);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0)
        st = trk_rekey_policy_set_count(p, name, (uint64_t)lua_tointeger(L, -1), &err);
    else if (lua_type(L, -1) == LUA_TNUMBER) /* a float (2^30, 1e9), or negative */
        st = trk_rekey_policy_set_number(p, name, (double)lua_tonumber(L, -1), &err);
    else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1)))
        luaL_argerror(L, arg, lua_pushfstring(L, "rekey policy '%s' must be a number "
                                                 "or nil, got %s",
                                              name, luaL_typename(L, -1)));
    if (st != TRK_OK)
        ltrk_raise(L, st, &err, arg);
    lua_pop(L, 1);
}

static int flag_field(lua_State *L, int idx, int arg, const char *name, int dflt)
{
    int v = dflt;
    lua_getfield(L, idx, name);
    if (lua_isboolean(L, -1))
        v = lua_toboolean(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_argerror(L, arg, lua_pushfstring(L, "rekey policy '%s' must be a boolean, "
                                                 "got %s",
                                              name, luaL_typename(L, -1)));
    lua_pop(L, 1);
    return v;
}

void ltrk_check_policy(lua_State *L, int idx, int arg, trk_rekey_policy *p)
{
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int known = 0;
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; policy_keys[i] != NULL; i++)
                known |= strcmp(lua_tostring(L, -1), policy_keys[i]) == 0;
        if (!known)
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown rekey policy option '%s'",
                                                  luaL_tolstring(L, -1, NULL)));
    }
    trk_rekey_policy_default(p);
    threshold_field(L, idx, arg, p, "bytes");
    threshold_field(L, idx, arg, p, "records");
    threshold_field(L, idx, arg, p, "seconds");
    threshold_field(L, idx, arg, p, "read_bytes");
    threshold_field(L, idx, arg, p, "min_interval");
    p->request_peer = flag_field(L, idx, arg, "request_peer", 0);
    p->use_renegotiation = flag_field(L, idx, arg, "use_renegotiation", 0);
    p->aead_limit = flag_field(L, idx, arg, "aead_limit", 1);
}

void ltrk_push_policy(lua_State *L, const trk_rekey_policy *p)
{
    lua_createtable(L, 0, 6);
    if (p->bytes > 0) {
        lua_pushinteger(L, (lua_Integer)p->bytes);
        lua_setfield(L, -2, "bytes");
    }
    if (p->records > 0) {
        lua_pushinteger(L, (lua_Integer)p->records);
        lua_setfield(L, -2, "records");
    }
    if (p->seconds > 0) {
        lua_pushnumber(L, p->seconds);
        lua_setfield(L, -2, "seconds");
    }
    lua_pushboolean(L, p->request_peer);
    lua_setfield(L, -2, "request_peer");
    lua_pushboolean(L, p->use_renegotiation);
    lua_setfield(L, -2, "use_renegotiation");
    lua_pushboolean(L, p->aead_limit);
    lua_setfield(L, -2, "aead_limit");
    if (p->read_bytes > 0) {
        lua_pushinteger(L, (lua_Integer)p->read_bytes);
        lua_setfield(L, -2, "read_bytes");
    }
    if (p->min_interval > 0) {
        lua_pushnumber(L, p->min_interval);
        lua_setfield(L, -2, "min_interval");
    }
}

/* core._testing_set_aead_scale(divisor): tests watch the AEAD limit act. */
int ltrk_testing_set_aead_scale(lua_State *L)
{
    lua_Integer d = luaL_checkinteger(L, 1);
    luaL_argcheck(L, d >= 1, 1, "divisor must be at least 1");
    trk_testing_set_aead_scale((uint64_t)d);
    return 0;
}
