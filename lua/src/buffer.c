/*
 * buffer.c - tlsrekey.buffer(size): a fixed-size block of bytes that
 * conn:read_into fills and conn:write can send from, so that bulk data does not
 * have to become a new Lua string for every record (the Lua counterpart of a
 * Python bytearray given to read_into).
 *
 * The userdata's block is the bytes themselves: #buf is lua_rawlen, there is no
 * header and no user value, and nothing links a buffer to a connection, so a
 * buffer outlives whatever read into it. What Lua code needs of the bytes is
 * string-shaped: buf:sub(i, j) and buf:byte(i, j) take string.sub's and
 * string.byte's indices.
 */
#include <string.h>

#include "shim.h"

/* Sizes go through lua_Integer, size_t and int (lua_rawlen, string.byte's count)
 * without a second thought; far beyond any record, which is at most 16 KiB. */
#define MAX_BUFFER_SIZE 0x7fffffff

unsigned char *ltrk_to_buffer(lua_State *L, int idx, int mt_idx, size_t *len)
{
    unsigned char *p = lua_touserdata(L, idx);
    int same = 0;

    if (p != NULL && lua_getmetatable(L, idx)) {
        same = lua_rawequal(L, -1, mt_idx);
        lua_pop(L, 1);
    }
    if (!same)
        return NULL;
    *len = lua_rawlen(L, idx);
    return p;
}

/* The buffer a method is called on; its metatable is the method's upvalue 1. */
static unsigned char *check_self(lua_State *L, size_t *len)
{
    unsigned char *p = ltrk_to_buffer(L, 1, lua_upvalueindex(1), len);

    if (p == NULL) { /* anything else gets luaL_checkudata's usual message */
        p = luaL_checkudata(L, 1, LTRK_BUFFER_MT);
        *len = lua_rawlen(L, 1);
    }
    return p;
}

/* core.buffer(size) -> a buffer of size bytes, all zero. */
int ltrk_buffer_new(lua_State *L)
{
    lua_Integer size = luaL_checkinteger(L, 1);
    void *p;

    luaL_argcheck(L, size > 0 && size <= MAX_BUFFER_SIZE, 1,
                  "size must be from 1 to 2147483647");
    p = lua_newuserdatauv(L, (size_t)size, 0);
    memset(p, 0, (size_t)size); /* what was read before is nobody's business */
    luaL_setmetatable(L, LTRK_BUFFER_MT);
    return 1;
}

/* string.sub's reading of a start index i over len bytes (len <= MAX_BUFFER_SIZE,
 * so -len is a lua_Integer): 1-based, negative counts from the end, clamped to 1. */
static size_t start_index(lua_Integer i, size_t len)
{
    if (i > 0)
        return (size_t)i;
    if (i < -(lua_Integer)len || i == 0)
        return 1;
    return (size_t)((lua_Integer)len + i + 1);
}

/* ... and of an end index j: negative counts from the end, clamped to 0..len. */
static size_t end_index(lua_Integer j, size_t len)
{
    if (j > (lua_Integer)len)
        return len;
    if (j >= 0)
        return (size_t)j;
    if (j < -(lua_Integer)len)
        return 0;
    return (size_t)((lua_Integer)len + j + 1);
}

/* buf:sub([i [, j]]) -> the bytes i..j as a string (string.sub's indices:
 * default all of it). */
static int buffer_sub(lua_State *L)
{
    size_t len;
    const unsigned char *p = check_self(L, &len);
    size_t first = start_index(luaL_optinteger(L, 2, 1), len);
    size_t last = end_index(luaL_optinteger(L, 3, -1), len);

    if (first > last)
        lua_pushliteral(L, "");
    else
        lua_pushlstring(L, (const char *)p + first - 1, last - first + 1);
    return 1;
}

/* buf:byte([i [, j]]) -> the bytes i..j as numbers (string.byte's indices:
 * default i = 1, j = i). */
static int buffer_byte(lua_State *L)
{
    size_t len, k;
    const unsigned char *p = check_self(L, &len);
    lua_Integer i = luaL_optinteger(L, 2, 1);
    size_t first = start_index(i, len);
    size_t last = end_index(luaL_optinteger(L, 3, i), len);
    int count;

    if (first > last)
        return 0;
    count = (int)(last - first + 1); /* at most len: an int */
    luaL_checkstack(L, count, "buffer slice too long");
    for (k = first; k <= last; k++)
        lua_pushinteger(L, p[k - 1]);
    return count;
}

static int buffer_len(lua_State *L)
{
    size_t len;

    check_self(L, &len);
    lua_pushinteger(L, (lua_Integer)len);
    return 1;
}

/* "tlsrekey.buffer(16384)" */
static int buffer_tostring(lua_State *L)
{
    size_t len;

    check_self(L, &len);
    lua_pushfstring(L, "%s(%I)", LTRK_BUFFER_MT, (lua_Integer)len);
    return 1;
}

void ltrk_buffer_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"sub", buffer_sub},
        {"byte", buffer_byte},
        {NULL, NULL}};
    static const luaL_Reg metamethods[] = {
        {"__len", buffer_len},
        {"__tostring", buffer_tostring},
        {NULL, NULL}};

    luaL_newmetatable(L, LTRK_BUFFER_MT);
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, metamethods, 1); /* upvalue 1 of each: the metatable */
    luaL_newlibtable(L, methods);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
