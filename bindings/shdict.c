/*
 * shdict.c - SharedDictCache's zone: the Lua side of handing an nginx
 * lua_shared_dict over to backends/shdict.c.
 *
 * core.shdict_zone(ngx.shared.NAME) takes the dict's table, which must be
 * one of ngx.shared's own values, whose first slot lua-nginx-module fills
 * with a userdata holding the zone pointer, and returns a userdata of this
 * module holding the zone (ngx_http_lua_ffi_shdict_udata_to_zone). Only
 * such a userdata becomes the backend's "zone" option: Lua code cannot
 * make one up, nor hand over another table's userdata.
 */
#include "bindings.h"

#define ZONE_MT "cache.core.zone"
#define ZONE_TAG "ngx_shm_zone" /* backends/shdict.c asks for this tag */

void *cache_shdict_udata_to_zone(void *udata); /* backends/shdict.c */

/* Whether the table at idx is a value of the global ngx.shared. */
static int is_shared_dict(lua_State *L, int idx)
{
    int found = 0;
    lua_getglobal(L, "ngx");
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_getfield(L, -1, "shared");
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_pushnil(L);
            while (!found && lua_next(L, -2)) {
                found = lua_rawequal(L, -1, idx);
                lua_pop(L, 1);
            }
            if (found)
                lua_pop(L, 1); /* the key lua_next left */
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return found;
}

static int l_shdict_zone(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!is_shared_dict(L, 1)) {
        lua_pushnil(L);
        lua_pushliteral(L, "not a lua_shared_dict of ngx.shared");
        return 2;
    }
    lua_rawgeti(L, 1, 1);
    int t = lua_type(L, -1);
    void *udata = t == LUA_TUSERDATA || t == LUA_TLIGHTUSERDATA ? lua_touserdata(L, -1) : NULL;
    void *zone = udata ? cache_shdict_udata_to_zone(udata) : NULL;
    if (!zone) {
        lua_pushnil(L);
        lua_pushliteral(L, "not a lua_shared_dict (or not inside OpenResty)");
        return 2;
    }
    void **p = lua_newuserdata(L, sizeof *p);
    *p = zone;
    luaL_getmetatable(L, ZONE_MT);
    lua_setmetatable(L, -2);
    return 1;
}

int cache_lua_host_option(lua_State *L, int idx, cache_opt *o)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, ZONE_MT);
    int ours = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!ours)
        return 0;
    o->type = CACHE_OPT_PTR;
    o->p = *(void **)lua_touserdata(L, idx);
    o->ptag = ZONE_TAG;
    return 1;
}

void cache_bind_shdict(lua_State *L)
{
    luaL_newmetatable(L, ZONE_MT);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_shdict_zone);
    lua_setfield(L, -2, "shdict_zone");
}
