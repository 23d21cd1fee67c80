/*
 * fetch.c - the Lua face of engine/fetch.c and engine/tiered.c: the steps
 * lua/cache/fetch.lua drives, and the TieredCache constructor.
 *
 * Each step is one call that never calls Lua: fetch.lua runs callbacks,
 * sleeps and timers between them. Keys are checked by fetch.lua (so that
 * misuse raises at the caller's line); here they are taken as given.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include <time.h>

#include "bindings.h"
#include "fetch.h"
#include "tiered.h"

static cache_str arg_key(lua_State *L, int idx)
{
    cache_str k;
    int t = lua_type(L, idx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_argerror(L, idx, "key: string expected");
    k.ptr = lua_tolstring(L, idx, &k.len);
    return k;
}

static double arg_seconds(lua_State *L, int idx)
{
    double d = (double)luaL_checknumber(L, idx);
    if (isnan(d))
        luaL_argerror(L, idx, "not a number (NaN)");
    return d;
}

/* Pushes the value e.value, which lies in buf: moved to the start of buf,
 * then decoded as every read is (cache_lua_push_read). */
static void push_value(lua_State *L, cache_handle *h, cache_buf *buf, cache_str v)
{
    memmove(buf->data, v.ptr, v.len);
    buf->len = v.len;
    cache_lua_push_read(L, h);
}

/* fetch_read(obj, key, beta [, peek])
 *   a fresh entry:      value, level (counted as served at that level unless
 *                       peek is true)
 *   anything else:      nil, nil, state, value, level
 *                       (state "miss", "stale" or "early"; value and level
 *                       only for the last two)
 *   a backend failure:  nil, nil, "error", message */
static int l_fetch_read(lua_State *L)
{
    cache_handle *h = cache_lua_handle(L, 1);
    cache_str key = arg_key(L, 2);
    double beta = lua_isnoneornil(L, 3) ? 0 : arg_seconds(L, 3);
    int peek = lua_toboolean(L, 4);
    cache_buf *buf = cache_lua_ready_read(L, h);
    cache_backend *b = cache_lua_live(L, h);
    cache_err err = {0, ""};
    cache_fetch_entry e;
    int rc = cache_fetch_read(b, key, beta, buf, &e, &err);
    if (rc == CACHE_OK && peek && e.state == CACHE_FETCH_FRESH)
        b->stats.levels[e.level - 1]--; /* looked at, not served */
    /* from here on Lua allocates: b and the bytes are not looked at again
     * but through push_value, which runs first */
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushliteral(L, "error");
        lua_pushstring(L, err.msg[0] ? err.msg : "backend failure");
        return 4;
    }
    if (e.state == CACHE_FETCH_FRESH) {
        push_value(L, h, buf, e.value);
        lua_pushinteger(L, e.level);
        return 2;
    }
    if (e.state == CACHE_FETCH_MISS) {
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushliteral(L, "miss");
        return 3;
    }
    push_value(L, h, buf, e.value);
    int v = lua_gettop(L);
    lua_pushnil(L);
    lua_pushnil(L);
    if (e.state == CACHE_FETCH_STALE)
        lua_pushliteral(L, "stale");
    else
        lua_pushliteral(L, "early");
    lua_pushvalue(L, v);
    lua_remove(L, v);
    lua_pushinteger(L, e.level);
    return 5;
}

/* Raises "fetch: <what>" at the line that called c:fetch: level 2 is the
 * caller of the Lua function (fetch.lua's) that called this one. */
static int misuse(lua_State *L, const char *fmt, const char *got)
{
    luaL_where(L, 2);
    lua_pushfstring(L, fmt, got);
    lua_concat(L, 2);
    return lua_error(L);
}

/* fetch_call(obj, key, beta, callback) is fetch_read after the checks of
 * c:fetch's own arguments, the key and the callback. */
static int l_fetch_call(lua_State *L)
{
    int t = lua_type(L, 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        return misuse(L, "fetch: key: string expected, got %s", luaL_typename(L, 2));
    if (lua_type(L, 4) != LUA_TFUNCTION) {
        int ok = 0;
        if (lua_getmetatable(L, 4)) {
            lua_getfield(L, -1, "__call");
            ok = !lua_isnil(L, -1);
            lua_pop(L, 2);
        }
        if (!ok)
            return misuse(L, "fetch: callback: function expected, got %s", luaL_typename(L, 4));
    }
    lua_settop(L, 3);
    return l_fetch_read(L);
}

/* fetch_store(obj, key, value, timeout, stale_timeout, delta) -> true, or
 * false and why. Raises on a value that cannot be stored. */
static int l_fetch_store(lua_State *L)
{
    cache_handle *h = cache_lua_handle(L, 1);
    cache_str key = arg_key(L, 2);
    double timeout = arg_seconds(L, 4);
    double stale = lua_isnoneornil(L, 5) ? 0 : arg_seconds(L, 5);
    double delta = lua_isnoneornil(L, 6) ? 0 : arg_seconds(L, 6);
    if (isinf(timeout))
        timeout = timeout > 0 ? 0 : -1;
    if (isinf(stale))
        stale = 1e15;
    /* The value is encoded first (that may raise, and runs Lua's allocator)
     * into a buffer a userdata owns; the backend is taken after it. */
    cache_buf *vb = lua_newuserdata(L, sizeof *vb);
    cache_buf_init(vb);
    lua_pushvalue(L, lua_upvalueindex(1)); /* its metatable: __gc frees it */
    lua_setmetatable(L, -2);
    cache_writer w;
    cache_writer_init(&w, vb);
    cache_lua_encode(L, 3, &w, "value", CACHE_ENC_STORE);
    if (w.failed)
        return luaL_error(L, "out of memory");
    cache_buf *scratch = cache_lua_scratch(h);
    cache_backend *b = cache_lua_live(L, h);
    cache_err err = {0, ""};
    int rc = cache_fetch_store(b, key, (cache_str){vb->data, vb->len}, timeout,
                               stale, delta, scratch, &err);
    cache_buf_free(vb);
    if (rc < 0) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, err.msg[0] ? err.msg : "backend failure");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int buf_gc(lua_State *L)
{
    cache_buf *b = lua_touserdata(L, 1);
    if (b)
        cache_buf_free(b);
    return 0;
}

/* fetch_lock(obj, key, ttl) -> token; false when another owner holds it;
 * nil, message on a backend failure. */
static int l_fetch_lock(lua_State *L)
{
    cache_handle *h = cache_lua_handle(L, 1);
    cache_str key = arg_key(L, 2);
    double ttl = arg_seconds(L, 3);
    cache_backend *b = cache_lua_live(L, h);
    char token[CACHE_FETCH_TOKEN_LEN + 1];
    cache_err err = {0, ""};
    int rc = cache_fetch_lock(b, key, ttl, token, &err);
    if (rc == CACHE_OK) {
        lua_pushlstring(L, token, CACHE_FETCH_TOKEN_LEN);
        return 1;
    }
    if (rc == CACHE_EXISTS) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err.msg[0] ? err.msg : "backend failure");
    return 2;
}

/* fetch_unlock(obj, key, token) -> true released, false not ours (or
 * false, message on a failure). */
static int l_fetch_unlock(lua_State *L)
{
    cache_handle *h = cache_lua_handle(L, 1);
    cache_str key = arg_key(L, 2);
    const char *token = luaL_checkstring(L, 3);
    cache_backend *b = cache_lua_live(L, h);
    cache_err err = {0, ""};
    int rc = cache_fetch_unlock(b, key, token, &err);
    lua_pushboolean(L, rc == CACHE_OK);
    if (rc >= 0)
        return 1;
    lua_pushstring(L, err.msg[0] ? err.msg : "backend failure");
    return 2;
}

/* fetch_note(obj, kind): kind a cache_fetch_note_kind. */
static int l_fetch_note(lua_State *L)
{
    cache_handle *h = cache_lua_handle(L, 1);
    lua_Integer k = luaL_checkinteger(L, 2);
    cache_backend *b = cache_lua_live(L, h);
    if (k < CACHE_NOTE_LEVEL1 || k > CACHE_NOTE_LOCK_TIMEOUT)
        return luaL_argerror(L, 2, "unknown note");
    cache_fetch_note(b, (cache_fetch_note_kind)k);
    return 0;
}

/* is_backend(v): whether v is an open backend object of this module. */
static int l_is_backend(lua_State *L)
{
    lua_pushboolean(L, cache_lua_backend(L, 1) != NULL);
    return 1;
}

/* sleep(seconds): blocks the process (plain Lua has no scheduler to yield
 * to; fetch.lua uses ngx.sleep where it can). */
static int l_sleep(lua_State *L)
{
    double s = arg_seconds(L, 1);
    if (s <= 0)
        return 0;
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 0;
}

static int l_wall(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)cache_wall_now());
    return 1;
}

/* tiered_open(l1, l2, ipc_or_nil, l1_timeout, ipc_interval) -> object.
 * lua/cache/tiered.lua checks the options and names them in errors. */
static int l_tiered_open(lua_State *L)
{
    cache_handle *h1 = cache_lua_handle(L, 1);
    cache_handle *h2 = cache_lua_handle(L, 2);
    cache_handle *hi = lua_isnoneornil(L, 3) ? NULL : cache_lua_handle(L, 3);
    double l1_timeout = arg_seconds(L, 4);
    double interval = arg_seconds(L, 5);
    cache_err err = {0, ""};
    cache_backend **slot = cache_lua_new_handle(L);
    /* the tiers, taken after the last allocation */
    cache_backend *l1 = cache_lua_live(L, h1), *l2 = cache_lua_live(L, h2);
    cache_backend *ipc = hi ? cache_lua_live(L, hi) : NULL;
    *slot = cache_tiered_open(l1, l2, ipc, l1_timeout, interval, &err);
    if (!*slot)
        return luaL_error(L, "TieredCache: %s", err.msg);
    cache_lua_wrap_handle(L);
    return 1;
}

static const luaL_Reg fetch_functions[] = {
    {"fetch_read", l_fetch_read},
    {"fetch_call", l_fetch_call},
    {"fetch_lock", l_fetch_lock},
    {"fetch_unlock", l_fetch_unlock},
    {"fetch_note", l_fetch_note},
    {"is_backend", l_is_backend},
    {"sleep", l_sleep},
    {"wall", l_wall},
    {"tiered_open", l_tiered_open},
    {NULL, NULL},
};

void cache_bind_fetch(lua_State *L)
{
    luaL_setfuncs(L, fetch_functions, 0);
    lua_newtable(L); /* the metatable of fetch_store's value buffers */
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcclosure(L, l_fetch_store, 1);
    lua_setfield(L, -2, "fetch_store");
    lua_pushinteger(L, CACHE_FETCH_TOKEN_LEN);
    lua_setfield(L, -2, "fetch_token_len");
}
