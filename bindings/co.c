/*
 * co.c - the C half of the cosocket transport (engine/co.h): an operation
 * object per call, which runs the object's own method under the operation
 * and tells the Lua driver (lua/cache/cosocket.lua) what to do with its
 * socket. The driver moves bytes and nothing else.
 *
 *   core.co_new(obj)               a new operation on obj's backend
 *   core.co_run(op, fn, obj, ...)  fn(obj, ...) run under op: true when an
 *                                  exchange is left to make, false and
 *                                  fn's results when done, nil and the
 *                                  message when fn raised
 *   core.co_step(op, ok, x)        what happened to the last action (x: the
 *                                  times a connection was reused, the bytes
 *                                  read, or the error text), then the next,
 *                                  on the connection numbered slot (an
 *                                  operation may hold several at once):
 *     "connect", slot, host|"unix:/path", port|nil, pool, connect_ms,
 *                send_ms, read_ms, pool_size, backlog|nil
 *     "send", slot, bytes   "recv", slot, max   "keepalive", slot, idle_ms,
 *     pool_size             "close", slot       "run" (run the method again)
 *   core.transport(obj)            "auto", "cosocket", "blocking", or nil
 *                                  when obj's backend has no cosocket path
 *
 * co_run and co_step call no Lua code that can yield: fn is one of the
 * module's C methods. Each operation owns its buffers; nothing is shared
 * with another operation suspended on the same worker.
 */
#include <math.h>
#include <string.h>

#include "bindings.h"
#include "cache.h"
#include "co.h"

#define CO_MT "cache.core.co"

typedef struct co_ud {
    cache_co *co;
} co_ud;

static int co_gc(lua_State *L)
{
    co_ud *u = luaL_checkudata(L, 1, CO_MT);
    cache_co_free(u->co);
    u->co = NULL;
    return 0;
}

static cache_co *check_co(lua_State *L)
{
    co_ud *u = luaL_checkudata(L, 1, CO_MT);
    if (!u->co)
        luaL_error(L, "cache: operation already freed");
    return u->co;
}

static int l_co_new(lua_State *L)
{
    cache_backend *b = cache_lua_backend(L, 1);
    if (!b)
        return luaL_error(L, "bad self: not an open cache object");
    if (!b->co)
        return luaL_error(L, "%s has no cosocket transport", b->vt->name);
    co_ud *u = lua_newuserdata(L, sizeof *u);
    u->co = NULL;
    luaL_getmetatable(L, CO_MT);
    lua_setmetatable(L, -2);
    cache_err err = {0, ""};
    u->co = cache_co_new(b, &err);
    if (!u->co)
        return luaL_error(L, "%s", err.msg);
    return 1;
}

static int l_co_run(lua_State *L)
{
    cache_co *co = check_co(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 2;
    cache_co_begin_run(co);
    int st = lua_pcall(L, nargs, LUA_MULTRET, 0);
    int pending = cache_co_end_run(co);
    if (st != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (pending) {
        lua_pushboolean(L, 1);
        return 1;
    }
    int nres = lua_gettop(L) - 1;
    lua_pushboolean(L, 0);
    lua_insert(L, 2);
    return nres + 1;
}

/* Seconds to the milliseconds of ngx.socket timeouts: at least 1 ms, and
 * no limit (0) as the largest value nginx takes, never nginx's default. */
static lua_Number to_ms(double s)
{
    const double max = 2147483647.0;
    if (!(s > 0))
        return max;
    double m = ceil(s * 1000.0);
    return m < 1 ? 1 : m > max ? max : m;
}

static int l_co_step(lua_State *L)
{
    cache_co *co = check_co(L);
    int ok = lua_toboolean(L, 2);
    int64_t value = 0;
    const char *data = NULL;
    size_t len = 0;
    if (lua_type(L, 3) == LUA_TNUMBER)
        value = (int64_t)lua_tonumber(L, 3);
    else if (lua_type(L, 3) == LUA_TSTRING)
        data = lua_tolstring(L, 3, &len);
    else if (!ok)
        data = "error";
    cache_co_action a;
    cache_co_step(co, ok, value, data, len, &a);
    switch (a.kind) {
    case CACHE_CO_CONNECT:
        lua_pushliteral(L, "connect");
        lua_pushinteger(L, a.slot);
        if (a.io->path) {
            lua_pushfstring(L, "unix:%s", a.io->path);
            lua_pushnil(L);
        } else {
            lua_pushstring(L, a.io->host);
            lua_pushinteger(L, a.io->port);
        }
        lua_pushstring(L, a.io->pool);
        lua_pushnumber(L, to_ms(a.io->connect_timeout));
        lua_pushnumber(L, to_ms(a.io->timeout));
        lua_pushnumber(L, to_ms(a.io->timeout));
        lua_pushnumber(L, (lua_Number)a.opts->pool_size);
        if (a.opts->backlog >= 0)
            lua_pushnumber(L, (lua_Number)a.opts->backlog);
        else
            lua_pushnil(L);
        return 10;
    case CACHE_CO_SEND:
        lua_pushliteral(L, "send");
        lua_pushinteger(L, a.slot);
        lua_pushlstring(L, a.bytes, a.len);
        return 3;
    case CACHE_CO_RECV:
        lua_pushliteral(L, "recv");
        lua_pushinteger(L, a.slot);
        lua_pushinteger(L, CACHE_CO_CHUNK);
        return 3;
    case CACHE_CO_KEEPALIVE:
        lua_pushliteral(L, "keepalive");
        lua_pushinteger(L, a.slot);
        lua_pushnumber(L, a.opts->keepalive_timeout > 0
                              ? to_ms(a.opts->keepalive_timeout)
                              : 0);
        lua_pushnumber(L, (lua_Number)a.opts->pool_size);
        return 4;
    case CACHE_CO_CLOSE:
        lua_pushliteral(L, "close");
        lua_pushinteger(L, a.slot);
        return 2;
    case CACHE_CO_RUN:
    default:
        lua_pushliteral(L, "run");
        return 1;
    }
}

static int l_transport(lua_State *L)
{
    cache_backend *b = cache_lua_backend(L, 1);
    if (!b || !b->co)
        return 0;
    lua_pushstring(L, cache_co_transport_name(b->co->transport));
    return 1;
}

static const luaL_Reg functions[] = {
    {"co_new", l_co_new},
    {"co_run", l_co_run},
    {"co_step", l_co_step},
    {"transport", l_transport},
    {NULL, NULL},
};

int cache_bind_co(lua_State *L)
{
    luaL_newmetatable(L, CO_MT);
    lua_pushcfunction(L, co_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    for (const luaL_Reg *f = functions; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    return 0;
}
