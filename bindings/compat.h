/*
 * compat.h - the few Lua 5.2+ API calls the bindings use, provided for the
 * Lua 5.1 API that LuaJIT 2.1 (and so OpenResty) exposes.
 */
#ifndef CACHE_BINDINGS_COMPAT_H
#define CACHE_BINDINGS_COMPAT_H

#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen((L), (i))

static inline int cache_absindex(lua_State *L, int i)
{
    return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}
#define lua_absindex cache_absindex

/* LuaJIT 2.1 has luaL_setfuncs and luaL_newlib; plain Lua 5.1 has not. */
#ifndef luaL_newlib
static inline void cache_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name; l++) {
        for (int i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#define luaL_setfuncs cache_setfuncs
#define luaL_newlibtable(L, l) lua_createtable((L), 0, sizeof(l) / sizeof((l)[0]) - 1)
#define luaL_newlib(L, l) (luaL_newlibtable((L), (l)), luaL_setfuncs((L), (l), 0))
#endif
#endif

/* Integers: Lua 5.3+ has an integer subtype. Under the 5.1 API every number
 * is a double, and a double that holds a whole number within 2^53 counts as
 * an integer (so 1 round-trips as an integer and 1.5 as a float). */
#if LUA_VERSION_NUM >= 503
static inline int cache_lua_isint(lua_State *L, int i, int64_t *out)
{
    if (!lua_isinteger(L, i))
        return 0;
    *out = (int64_t)lua_tointeger(L, i);
    return 1;
}
static inline void cache_lua_pushint(lua_State *L, int64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
}
#else
static inline int cache_lua_isint(lua_State *L, int i, int64_t *out)
{
    lua_Number d = lua_tonumber(L, i);
    if (d != d || d < -9007199254740992.0 || d > 9007199254740992.0 ||
        d != (lua_Number)(int64_t)d)
        return 0;
    *out = (int64_t)d;
    return 1;
}
static inline void cache_lua_pushint(lua_State *L, int64_t v)
{
    lua_pushnumber(L, (lua_Number)v);
}
#endif

#endif
