/*
 * events.c - the core's event callback, delivered to a Lua function.
 *
 * The core calls back synchronously from inside an I/O call, with OpenSSL on the
 * C stack, so nothing here may longjmp: the Lua function runs under lua_pcall and
 * an error it raises is parked in the registry; the core call then returns
 * TRK_CALLBACK and connection.c re-raises the parked error.
 *
 * The function lives in a user value of the connection (so a function that
 * closes over its own connection does not keep it alive forever). During a core
 * call ltrk_call_enter pushes it, and the pair peer's, onto the calling thread's
 * stack and records where: the core drives a pair's other end from inside our
 * call, and that end's events must reach its own function.
 */
#include "shim.h"

/* lua_pcall'ed: fn(event_table). Upvalue-free; args: fn, lightuserdata event. */
static int dispatch(lua_State *L)
{
    const trk_event *ev = lua_touserdata(L, 2);

    lua_settop(L, 1); /* fn, then the event table as its argument */
    lua_createtable(L, 0, 5);
    lua_pushstring(L, ev->name != NULL ? ev->name : trk_event_name(ev->type));
    lua_setfield(L, -2, "name");
    switch (ev->type) {
    case TRK_EV_KEY_UPDATE_SENT:
    case TRK_EV_KEY_UPDATE_RECEIVED:
        lua_pushboolean(L, ev->request_update);
        lua_setfield(L, -2, "request_update");
        lua_pushboolean(L, ev->automatic);
        lua_setfield(L, -2, "automatic");
        break;
    case TRK_EV_ALERT_SENT:
    case TRK_EV_ALERT_RECEIVED:
        lua_pushstring(L, ev->alert_level == 2 ? "fatal" : "warning");
        lua_setfield(L, -2, "alert_level");
        lua_pushinteger(L, ev->alert_description);
        lua_setfield(L, -2, "alert_description");
        if (ev->alert_text != NULL) {
            lua_pushstring(L, ev->alert_text);
            lua_setfield(L, -2, "alert_text");
        }
        break;
    default:
        break;
    }
    lua_call(L, 1, 0);
    return 0;
}

static int on_core_event(void *userdata, trk_conn *conn, const trk_event *event)
{
    ltrk_connection *c = userdata;
    lua_State *L = c->L;

    (void)conn;
    if (L == NULL || c->fn_index == 0)
        return 0; /* not inside one of our calls: nobody to tell */
    if (c->parked_ref != LUA_NOREF)
        return 1; /* already failed in this call: do not call it again */
    if (!lua_checkstack(L, 4))
        return 0;
    lua_pushcfunction(L, dispatch);
    lua_pushvalue(L, c->fn_index);
    lua_pushlightuserdata(L, (void *)event);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        c->parked_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return 1;
    }
    return 0;
}

/* Pushes the event function of the connection userdata at idx; returns its stack
 * index, or 0 (and pushes nil) when there is none. */
static int push_fn(lua_State *L, int idx)
{
    if (lua_getiuservalue(L, idx, LTRK_UV_EVENT_FN) == LUA_TFUNCTION)
        return lua_gettop(L);
    return 0;
}

void ltrk_call_enter(lua_State *L, ltrk_connection *self)
{
    self->L = L;
    self->busy = 1;
    if (!self->has_fn && (self->peer == NULL || !self->peer->has_fn)) {
        /* No event function on either end (the usual case): nothing to push, and no
         * user value lookups on every read and write. */
        self->fn_index = 0;
        if (self->peer != NULL) {
            self->peer->fn_index = 0;
            self->peer->L = L;
            self->peer->busy = 1;
        }
        return;
    }
    luaL_checkstack(L, 4, "tlsrekey: no stack space for the event function");
    self->fn_index = push_fn(L, 1);
    if (self->peer != NULL) {
        ltrk_connection *peer = self->peer;

        lua_getiuservalue(L, 1, LTRK_UV_PEER);
        peer->fn_index = lua_isuserdata(L, -1) ? push_fn(L, lua_gettop(L)) : 0;
        if (peer->fn_index == 0)
            lua_pop(L, 1);
        peer->L = L;
        peer->busy = 1;
    }
}

void ltrk_call_leave(lua_State *L, ltrk_connection *self)
{
    (void)L;
    self->L = NULL;
    self->busy = 0;
    self->fn_index = 0;
    if (self->peer != NULL) {
        self->peer->L = NULL;
        self->peer->busy = 0;
        self->peer->fn_index = 0;
    }
}

/* Raises the parked error of self, else of its peer; returns 0 if none. */
int ltrk_take_parked(lua_State *L, ltrk_connection *self)
{
    ltrk_connection *owner = self->parked_ref != LUA_NOREF ? self : self->peer;

    if (owner == NULL || owner->parked_ref == LUA_NOREF)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, owner->parked_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, owner->parked_ref);
    owner->parked_ref = LUA_NOREF;
    return 1;
}

int ltrk_raise_parked(lua_State *L, ltrk_connection *self)
{
    if (!ltrk_take_parked(L, self))
        return 0;
    return lua_error(L);
}

void ltrk_release_parked(lua_State *L, ltrk_connection *self)
{
    if (self->parked_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, self->parked_ref);
        self->parked_ref = LUA_NOREF;
    }
}

/* conn:on_event(fn): fn(event) for each KeyUpdate, HelloRequest, handshake and
 * alert; nil removes it. Returns the previous function. */
int ltrk_on_event(lua_State *L)
{
    ltrk_connection *c = luaL_checkudata(L, 1, LTRK_CONNECTION_MT);

    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    if (c->conn == NULL)
        return ltrk_raise_status(L, TRK_STATE, "connection is closed",
                                 "the connection is closed");
    if (c->busy)
        return ltrk_raise_status(L, TRK_STATE, "connection is busy",
                                 "the connection is busy (called from its own event "
                                 "callback)");
    lua_getiuservalue(L, 1, LTRK_UV_EVENT_FN);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, 1, LTRK_UV_EVENT_FN);
    c->has_fn = !lua_isnil(L, 2);
    trk_conn_set_event_callback(c->conn, c->has_fn ? on_core_event : NULL, c);
    return 1;
}
