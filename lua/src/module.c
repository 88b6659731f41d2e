/*
 * module.c - luaopen_tlsrekey_core: the metatables, the module functions and the
 * constants. Sets no globals; returns the module table.
 */
#include "shim.h"

/* core.make_test_cert([common_name="localhost"]) -> cert_pem, key_pem */
static int ltrk_make_test_cert(lua_State *L)
{
    size_t cn_len;
    const char *cn = luaL_optlstring(L, 1, "localhost", &cn_len);
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    trk_error err;
    trk_status st;

    ltrk_no_nul(L, cn, cn_len, 1, "common_name");
    st = trk_make_test_cert(cn, &cert, &cert_len, &key, &key_len, &err);
    if (st != TRK_OK)
        return ltrk_raise(L, st, &err, 1);
    /* Copy both into Lua before freeing: a push only fails on OOM. */
    lua_pushlstring(L, cert, cert_len);
    lua_pushlstring(L, key, key_len);
    trk_free(cert);
    trk_free(key);
    return 2;
}

/* core.is_error(v) -> true if v is a tlsrekey error object. */
static int ltrk_is_error(lua_State *L)
{
    int is = 0;

    if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, LTRK_ERROR_MT);
        is = lua_rawequal(L, -1, -2);
    }
    lua_pushboolean(L, is);
    return 1;
}

int luaopen_tlsrekey_core(lua_State *L);

int luaopen_tlsrekey_core(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"context", ltrk_context_new},
        {"pair", ltrk_pair_new},
        {"buffer", ltrk_buffer_new},
        {"make_test_cert", ltrk_make_test_cert},
        {"is_error", ltrk_is_error},
        {"_testing_set_aead_scale", ltrk_testing_set_aead_scale},
        {NULL, NULL}};
    int i;

    ltrk_errors_open(L);
    ltrk_context_open(L);
    ltrk_buffer_open(L);
    ltrk_connection_open(L);

    luaL_newlib(L, functions);
    lua_pushstring(L, trk_key_update_type_name(TRK_KEY_UPDATE_NONE));
    lua_setfield(L, -2, "KEY_UPDATE_NONE");
    lua_pushstring(L, trk_key_update_type_name(TRK_KEY_UPDATE_NOT_REQUESTED));
    lua_setfield(L, -2, "KEY_UPDATE_NOT_REQUESTED");
    lua_pushstring(L, trk_key_update_type_name(TRK_KEY_UPDATE_REQUESTED));
    lua_setfield(L, -2, "KEY_UPDATE_REQUESTED");
    /* Every error code a Lua program can see, from the core's one table. */
    lua_createtable(L, TRK_STATUS_COUNT, 0);
    for (i = 0; i < TRK_STATUS_COUNT; i++) {
        lua_pushstring(L, trk_status_name((trk_status)i));
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "statuses");
    lua_pushliteral(L, TRK_VERSION_STRING);
    lua_setfield(L, -2, "_VERSION");
    lua_pushstring(L, trk_openssl_version());
    lua_setfield(L, -2, "OPENSSL_VERSION");
    return 1;
}
