/*
 * core.c - the cache.core module: backend objects and their methods.
 *
 * A backend object is a Lua table holding the engine handle (a userdata
 * under a private light-userdata key). Its own metatable has __index = a
 * table of its fields ({ default_timeout = n }), whose metatable has
 * __index = the methods: `c.default_timeout` reads like a plain field, as in
 * cachelib, and method lookup stays plain table hits. default_timeout is
 * never a raw field of the object, so every assignment reaches __newindex
 * and gets the constructor's check; other fields are set on the object as
 * they are.
 *
 * Every method checks its arguments first and raises on misuse (the
 * message names the argument); failures of the backend itself come back as
 * nil/false plus a message, never as an error.
 *
 * Lua code can run inside any method: every allocation of a Lua object may
 * run a __gc metamethod, and a finalizer may call methods of the very object
 * whose method is under way, or close it. So a method takes the backend
 * pointer (live()) only once nothing that allocates is left between it and
 * the engine call, and value bytes are decoded only from a buffer that no
 * other call can reach (see push_read, and the per-call bufsets).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "cache.h"
#include "codec.h"
#include "digest.h"
#include "hostport.h"

#define HANDLE_MT "cache.core.handle"
#define BUFSET_MT "cache.core.bufset"

static char handle_key; /* its address keys the handle in an object */

static int m_get(lua_State *L);
static int m_get_many(lua_State *L);

struct cache_handle {
    cache_backend *b;
    /* What reads go into and set / add encode into. Used only over
     * stretches that run no Lua code (encoding a value and handing it to
     * the engine; reading one and moving it out, push_read), so a call that
     * a finalizer makes may reuse it whenever Lua code does run. */
    cache_buf scratch;
    /* The spare buffer, inside a holder (a bufset of one) that the registry
     * anchors under ref; NULL while a read decodes from it (push_read). */
    cache_buf *spare;
    int ref;
    unsigned installs; /* holders made so far: tells a read whether its
                          holder is still the one under ref */
};
typedef struct cache_handle handle;

/* ---- handles and objects ------------------------------------------------- */

static int handle_gc(lua_State *L)
{
    handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    cache_close(h->b);
    h->b = NULL;
    cache_buf_free(&h->scratch);
    luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
    h->ref = LUA_NOREF;
    h->spare = NULL;
    return 0;
}

/* The open backend of a handle, taken right before an engine call: a
 * finalizer run by an allocation since the method began may have closed
 * the object. */
static cache_backend *live(lua_State *L, const handle *h)
{
    if (!h->b)
        luaL_error(L, "cache is closed");
    return h->b;
}

/* The handle of the object at index 1 (self), which must be open. */
static handle *check_self(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TTABLE)
        luaL_error(L, "bad self: call cache methods with ':' (c:get(key))");
    lua_pushlightuserdata(L, &handle_key);
    lua_rawget(L, 1);
    handle *h = lua_touserdata(L, -1);
    lua_pop(L, 1); /* the object anchors the handle */
    if (!h)
        luaL_error(L, "bad self: not a cache object");
    live(L, h);
    return h;
}

/* The open backend of the cache object at idx, or NULL (bindings/co.c).
 * Never raises. */
cache_backend *cache_lua_backend(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return NULL;
    idx = lua_absindex(L, idx);
    lua_pushlightuserdata(L, &handle_key);
    lua_rawget(L, idx);
    handle *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h ? h->b : NULL;
}

/* ---- arguments ------------------------------------------------------------- */

static int arg_error(lua_State *L, int arg, const char *name, const char *want)
{
    const char *msg = lua_pushfstring(L, "%s: %s expected, got %s", name, want,
                                      luaL_typename(L, arg));
    return luaL_argerror(L, arg, msg);
}

/* Keys are strings; numbers are converted as tostring() would. */
static cache_str check_key(lua_State *L, int arg)
{
    cache_str k;
    int t = lua_type(L, arg);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        arg_error(L, arg, "key", "string");
    k.ptr = lua_tolstring(L, arg, &k.len);
    return k;
}

static double object_default_timeout(lua_State *L)
{
    lua_getfield(L, 1, "default_timeout");
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "default_timeout: number expected, got %s",
                   luaL_typename(L, -1));
    double t = (double)lua_tonumber(L, -1);
    lua_pop(L, 1);
    return t;
}

/* The ttl handed to the engine: nil means the object's default_timeout;
 * infinities are "never" and "already expired". */
static double check_timeout(lua_State *L, int arg)
{
    double t;
    if (lua_isnoneornil(L, arg))
        t = object_default_timeout(L);
    else if (lua_type(L, arg) == LUA_TNUMBER)
        t = (double)lua_tonumber(L, arg);
    else
        return arg_error(L, arg, "timeout", "number or nil");
    if (isnan(t))
        return luaL_argerror(L, arg, "timeout: not a number (NaN)");
    if (isinf(t))
        return t > 0 ? 0 : -1;
    return t;
}

static int64_t check_delta(lua_State *L, int arg)
{
    int64_t d = 0;
    if (lua_isnoneornil(L, arg))
        return 1;
    if (lua_type(L, arg) != LUA_TNUMBER || !cache_lua_isint(L, arg, &d))
        arg_error(L, arg, "delta", "integer");
    return d;
}

/* Encodes the value at idx into buf; raises on values that cannot be
 * stored. */
static cache_str encode_arg(lua_State *L, int idx, cache_buf *buf,
                            const char *root)
{
    cache_writer w;
    size_t start = buf->len;
    cache_writer_init(&w, buf);
    cache_lua_encode(L, idx, &w, root, CACHE_ENC_STORE);
    return (cache_str){buf->data + start, buf->len - start};
}

/* ---- results ---------------------------------------------------------------- */

/* The message of a failure (a backend that set none still gets one). */
static const char *failure_text(const cache_err *err)
{
    return err->msg[0] ? err->msg : "backend failure";
}

static int push_failure(lua_State *L, int falsy_nil, const cache_err *err)
{
    if (falsy_nil)
        lua_pushnil(L);
    else
        lua_pushboolean(L, 0);
    lua_pushstring(L, failure_text(err));
    return 2;
}

/* true / false for OK / MISS-or-EXISTS, false + message for failures. */
static int push_status(lua_State *L, int rc, const cache_err *err)
{
    if (rc < 0)
        return push_failure(L, 0, err);
    lua_pushboolean(L, rc == CACHE_OK);
    return 1;
}

/* A set of buffers owned by a userdata, so that a Lua error while results
 * are pushed cannot leak what the backend filled in. */
typedef struct bufset {
    size_t n;
    cache_buf bufs[];
} bufset;

static int bufset_gc(lua_State *L)
{
    bufset *s = luaL_checkudata(L, 1, BUFSET_MT);
    for (size_t i = 0; i < s->n; i++)
        cache_buf_free(&s->bufs[i]);
    s->n = 0;
    return 0;
}

static bufset *new_bufset(lua_State *L, size_t n)
{
    bufset *s = lua_newuserdata(L, sizeof *s + n * sizeof(cache_buf));
    s->n = 0;
    luaL_getmetatable(L, BUFSET_MT);
    lua_setmetatable(L, -2);
    for (size_t i = 0; i < n; i++)
        cache_buf_init(&s->bufs[i]);
    s->n = n;
    return s;
}

/* ---- reads ------------------------------------------------------------------
 *
 * The decoder walks the value's bytes while it creates Lua objects, so
 * finalizers run in the middle of it and may call methods of the same
 * object - which reuse h->scratch. So a read first moves the bytes out of
 * h->scratch: a small value onto the C stack, a larger one into the
 * object's spare buffer (a swap of two buffers, no byte copied), which is
 * then the read's own until the value is decoded - a read nested in it
 * finds no spare and makes one. */

#define SMALL_READ 256 /* bytes: a copy costs less than taking the spare */

/* Before a read: makes sure the object has a spare buffer, allocating one
 * only when it has none (its first read, a read nested in another, or after
 * a read cut short by an error, whose buffer the collector takes). Lua code
 * may run here; from its return to push_read none may. */
static void ready_spare(lua_State *L, handle *h)
{
    if (h->spare)
        return;
    bufset *s = new_bufset(L, 1);
    if (h->spare) { /* a finalizer's read made one meanwhile */
        lua_pop(L, 1);
        return;
    }
    /* the old holder, if a read still decodes from it, is on its stack */
    luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
    h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    h->spare = &s->bufs[0];
    h->installs++;
}

/* Pushes the value whose bytes an engine call just left in h->scratch. */
static void push_read(lua_State *L, handle *h)
{
    if (h->scratch.len <= SMALL_READ) {
        char copy[SMALL_READ];
        memcpy(copy, h->scratch.data, h->scratch.len);
        cache_lua_decode(L, copy, h->scratch.len);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref); /* anchors the spare */
    cache_buf *own = h->spare;
    unsigned gen = h->installs;
    h->spare = NULL;
    cache_buf bytes = h->scratch;
    h->scratch = *own;
    *own = bytes;
    cache_lua_decode(L, own->data, own->len);
    if (!h->spare && h->installs == gen)
        h->spare = own; /* still the holder under ref: give it back */
    lua_remove(L, -2);
}

/* For the fused paths of bindings/keys.c (memoize): the open backend of the
 * cache object at idx, ready for reads (cache_lua_push_read) into *buf,
 * when its get and get_many are still this module's (a method replaced
 * from Lua must see every call, so such an object takes the plain path);
 * NULL otherwise. get_name and get_many_name are stack indices of the
 * strings "get" and "get_many" (upvalues of the caller: no string is made
 * per call). Lua code may run here (metamethods, finalizers); it raises
 * only what that code raises, or when out of memory. */
cache_backend *cache_lua_object(lua_State *L, int idx, int get_name,
                                int get_many_name, handle **hp, cache_buf **buf)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return NULL;
    idx = lua_absindex(L, idx);
    lua_pushlightuserdata(L, &handle_key);
    lua_rawget(L, idx);
    handle *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!h || !h->b)
        return NULL;
    lua_pushvalue(L, get_many_name);
    lua_gettable(L, idx);
    int own = lua_tocfunction(L, -1) == m_get_many;
    lua_pushvalue(L, get_name);
    lua_gettable(L, idx);
    own = own && lua_tocfunction(L, -1) == m_get;
    lua_pop(L, 2);
    if (!own)
        return NULL;
    ready_spare(L, h);
    h->scratch.len = 0;
    *hp = h;
    *buf = &h->scratch;
    return h->b; /* NULL if a finalizer run by ready_spare closed it */
}

void cache_lua_push_read(lua_State *L, handle *h)
{
    push_read(L, h);
}

/* ---- single-key methods ------------------------------------------------------ */

static int m_get(lua_State *L)
{
    handle *h = check_self(L);
    cache_str key = check_key(L, 2);
    ready_spare(L, h);
    h->scratch.len = 0;
    cache_err err = {0, ""};
    int rc = cache_get(live(L, h), key, &h->scratch, &err);
    if (rc == CACHE_OK) {
        push_read(L, h);
        return 1;
    }
    if (rc < 0)
        return push_failure(L, 1, &err);
    lua_pushnil(L);
    return 1;
}

static int store(lua_State *L, int only_if_absent)
{
    handle *h = check_self(L);
    cache_str key = check_key(L, 2);
    double ttl = check_timeout(L, 4);
    h->scratch.len = 0;
    cache_str value = encode_arg(L, 3, &h->scratch, "value");
    cache_backend *b = live(L, h);
    cache_err err = {0, ""};
    int rc = only_if_absent ? cache_add(b, key, value, ttl, &err)
                            : cache_set(b, key, value, ttl, &err);
    return push_status(L, rc, &err);
}

static int m_set(lua_State *L) { return store(L, 0); }
static int m_add(lua_State *L) { return store(L, 1); }

static int m_delete(lua_State *L)
{
    handle *h = check_self(L);
    cache_str key = check_key(L, 2);
    cache_err err = {0, ""};
    return push_status(L, cache_del(live(L, h), key, &err), &err);
}

static int m_has(lua_State *L)
{
    handle *h = check_self(L);
    cache_str key = check_key(L, 2);
    cache_err err = {0, ""};
    return push_status(L, cache_has(live(L, h), key, &err), &err);
}

static int m_clear(lua_State *L)
{
    handle *h = check_self(L);
    cache_err err = {0, ""};
    return push_status(L, cache_clear(live(L, h), &err), &err);
}

static int increment(lua_State *L, int sign)
{
    handle *h = check_self(L);
    cache_str key = check_key(L, 2);
    int64_t delta = check_delta(L, 3);
    if (sign < 0) {
        if (delta == INT64_MIN)
            return luaL_argerror(L, 3, "delta: out of range");
        delta = -delta;
    }
    double ttl = object_default_timeout(L);
    cache_err err = {0, ""};
    int64_t result;
    int rc = cache_incr(live(L, h), key, delta, ttl, &result, &err);
    if (rc != CACHE_OK)
        return push_failure(L, 1, &err);
    cache_lua_pushint(L, result);
    return 1;
}

static int m_inc(lua_State *L) { return increment(L, 1); }
static int m_dec(lua_State *L) { return increment(L, -1); }

/* ---- many-key methods --------------------------------------------------------- */

/* The keys given as arguments first..top, checked. */
static cache_str *collect_keys(lua_State *L, int first, size_t *n)
{
    int top = lua_gettop(L);
    *n = top >= first ? (size_t)(top - first + 1) : 0;
    cache_str *keys = lua_newuserdata(L, (*n ? *n : 1) * sizeof *keys);
    for (size_t i = 0; i < *n; i++)
        keys[i] = check_key(L, first + (int)i);
    return keys;
}

static int m_get_many(lua_State *L)
{
    handle *h = check_self(L);
    size_t n;
    cache_str *keys = collect_keys(L, 2, &n);
    int *status = lua_newuserdata(L, (n ? n : 1) * sizeof *status);
    bufset *s = new_bufset(L, n); /* this call's own: decoded from safely */
    cache_err err = {0, ""};
    int rc = cache_get_many(live(L, h), n, keys, s->bufs, status, &err);
    luaL_checkstack(L, (int)n + 2, "too many keys");
    int failed = rc < 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == CACHE_OK && status[i] == CACHE_OK) {
            cache_lua_decode(L, s->bufs[i].data, s->bufs[i].len);
        } else {
            lua_pushnil(L);
            failed |= status[i] < 0;
        }
    }
    if (failed) {
        /* one value or nil per key, then why: the whole batch failed, or
         * some keys did (a server of a pool down) while the others read */
        lua_pushstring(L, failure_text(&err));
        return (int)n + 1;
    }
    return (int)n;
}

static int m_get_dict(lua_State *L)
{
    handle *h = check_self(L);
    size_t n;
    cache_str *keys = collect_keys(L, 2, &n);
    int *status = lua_newuserdata(L, (n ? n : 1) * sizeof *status);
    bufset *s = new_bufset(L, n); /* this call's own: decoded from safely */
    cache_err err = {0, ""};
    int rc = cache_get_many(live(L, h), n, keys, s->bufs, status, &err);
    if (rc < 0)
        return push_failure(L, 1, &err);
    int failed = 0;
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        if (status[i] != CACHE_OK) {
            failed |= status[i] < 0;
            continue;
        }
        lua_pushlstring(L, keys[i].ptr, keys[i].len);
        cache_lua_decode(L, s->bufs[i].data, s->bufs[i].len);
        lua_rawset(L, -3);
    }
    if (failed) {
        /* the keys read, then why the others are missing */
        lua_pushstring(L, failure_text(&err));
        return 2;
    }
    return 1;
}

/* The results of set_many / delete_many: whether every key succeeded, the
 * list of the keys that did, and the message when the batch failed. */
static int push_batch_outcome(lua_State *L, int rc, size_t n,
                              const cache_str *keys, const int *status,
                              const cache_err *err)
{
    int all = rc == CACHE_OK;
    int k = 0;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        if (status[i] != CACHE_OK) {
            all = 0;
            continue;
        }
        lua_pushlstring(L, keys[i].ptr, keys[i].len);
        lua_rawseti(L, -2, ++k);
    }
    lua_pushboolean(L, all);
    lua_insert(L, -2);
    if (rc >= 0)
        return 2;
    lua_pushstring(L, err->msg);
    return 3;
}

/* The key of the pair lua_next left on the stack, in a mapping. */
static void check_mapping_key(lua_State *L)
{
    int t = lua_type(L, -2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "mapping: keys must be strings, got a %s",
                   luaL_typename(L, -2));
}

/* set_many(mapping [, timeout]): every value is encoded before anything is
 * written, so a value that cannot be stored leaves the cache untouched.
 * The pairs are counted, then read: a finalizer run by an allocation in
 * between may change the mapping, so the second pass checks again and
 * keeps within the count. */
static int m_set_many(lua_State *L)
{
    handle *h = check_self(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    double ttl = check_timeout(L, 3);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        check_mapping_key(L);
        n++;
        lua_pop(L, 1);
    }
    cache_str *keys = lua_newuserdata(L, (n ? n : 1) * sizeof *keys);
    cache_str *vals = lua_newuserdata(L, (n ? n : 1) * sizeof *vals);
    int *status = lua_newuserdata(L, (n ? n : 1) * sizeof *status);
    bufset *s = new_bufset(L, n);
    lua_newtable(L); /* anchors the key strings */
    int anchor = lua_gettop(L);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        check_mapping_key(L);
        if (i == n)
            luaL_error(L, "mapping: changed while it was read");
        lua_pushvalue(L, -2);
        lua_tolstring(L, -1, NULL); /* converts the copy, not the loop's key */
        lua_rawseti(L, anchor, (int)i + 1);
        lua_rawgeti(L, anchor, (int)i + 1);
        keys[i].ptr = lua_tolstring(L, -1, &keys[i].len);
        lua_pop(L, 1);
        vals[i] = encode_arg(L, lua_gettop(L), &s->bufs[i], "value");
        i++;
        lua_pop(L, 1);
    }
    n = i; /* fewer when pairs were removed: that is allowed */
    cache_err err = {0, ""};
    int rc = cache_set_many(live(L, h), n, keys, vals, ttl, status, &err);
    return push_batch_outcome(L, rc, n, keys, status, &err);
}

static int m_delete_many(lua_State *L)
{
    handle *h = check_self(L);
    size_t n;
    cache_str *keys = collect_keys(L, 2, &n);
    int *status = lua_newuserdata(L, (n ? n : 1) * sizeof *status);
    cache_err err = {0, ""};
    int rc = cache_del_many(live(L, h), n, keys, status, &err);
    return push_batch_outcome(L, rc, n, keys, status, &err);
}

static int m_close(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "bad self: call cache methods with ':'");
    lua_pushlightuserdata(L, &handle_key);
    lua_rawget(L, 1);
    handle *h = lua_touserdata(L, -1);
    if (h && h->b) {
        cache_close(h->b);
        h->b = NULL;
    }
    return 0;
}

static int m_tostring(lua_State *L)
{
    lua_pushlightuserdata(L, &handle_key);
    lua_rawget(L, 1);
    handle *h = lua_touserdata(L, -1);
    lua_pushfstring(L, "%s: %p", h && h->b ? h->b->vt->name : "closed cache",
                    lua_topointer(L, 1));
    return 1;
}

static const luaL_Reg methods[] = {
    {"get", m_get},           {"set", m_set},
    {"add", m_add},           {"delete", m_delete},
    {"has", m_has},           {"clear", m_clear},
    {"inc", m_inc},           {"dec", m_dec},
    {"get_many", m_get_many}, {"get_dict", m_get_dict},
    {"set_many", m_set_many}, {"delete_many", m_delete_many},
    {"close", m_close},       {NULL, NULL},
};

/* ---- opening backends ---------------------------------------------------------- */

/* Anchors the value on top of the stack (popped) in the table at anchor,
 * so the strings the options point into live until the backend is open -
 * whatever Lua code (a finalizer) does to the options table meanwhile. */
static void keep(lua_State *L, int anchor)
{
    lua_rawseti(L, anchor, (int)lua_rawlen(L, anchor) + 1);
}

/* One option value to the engine's typed form. Lists may hold strings,
 * numbers and {host, port} pairs (written "host:port", "[v6]:port"). Errors name the
 * class cls, as the engine's do. */
static void convert_list(lua_State *L, const char *cls, int idx, cache_opt *o,
                         int anchor)
{
    size_t n = lua_rawlen(L, idx);
    const char **items = lua_newuserdata(L, (n ? n : 1) * sizeof *items);
    size_t *lens = lua_newuserdata(L, (n ? n : 1) * sizeof *lens);
    keep(L, anchor);
    keep(L, anchor);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (int)i + 1);
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            if (!lua_isstring(L, -2) || !lua_isstring(L, -1))
                luaL_error(L, "%s: option '%s': item %d must be a string or {host, port}",
                           cls, o->name, (int)i + 1);
            lua_pushfstring(L,
                            cache_host_needs_brackets(lua_tostring(L, -2))
                                ? "[%s]:%s"
                                : "%s:%s",
                            lua_tostring(L, -2), lua_tostring(L, -1));
            lua_replace(L, -4);
            lua_pop(L, 2);
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_pushstring(L, lua_tostring(L, -1)); /* a copy, converted */
            lua_replace(L, -2);
        } else if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "%s: option '%s': item %d must be a string, got %s", cls,
                       o->name, (int)i + 1, luaL_typename(L, -1));
        }
        items[i] = lua_tolstring(L, -1, &lens[i]);
        keep(L, anchor);
    }
    o->type = CACHE_OPT_LIST;
    o->list = items;
    o->list_lens = lens;
    o->count = n;
}

static void convert_option(lua_State *L, const char *cls, cache_opt *o,
                           int anchor)
{
    int v = lua_gettop(L);
    int64_t i;
    switch (lua_type(L, v)) {
    case LUA_TBOOLEAN:
        o->type = CACHE_OPT_BOOL;
        o->b = lua_toboolean(L, v);
        break;
    case LUA_TNUMBER:
        o->n = (double)lua_tonumber(L, v);
        if (cache_lua_isint(L, v, &i)) {
            o->type = CACHE_OPT_INT;
            o->i = i;
        } else {
            o->type = CACHE_OPT_NUM;
        }
        break;
    case LUA_TSTRING:
        o->type = CACHE_OPT_STR;
        o->s = lua_tolstring(L, v, &o->slen);
        lua_pushvalue(L, v);
        keep(L, anchor);
        break;
    case LUA_TTABLE:
        convert_list(L, cls, v, o, anchor);
        break;
    default:
        luaL_error(L, "%s: option '%s': unsupported type %s", cls, o->name,
                   luaL_typename(L, v));
    }
}

/* The name of the pair lua_next left on the stack, in an options table. */
static void check_option_name(lua_State *L, const char *cls)
{
    if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "%s: option names must be strings, got %s", cls,
                   luaL_typename(L, -2));
}

/* Builds the engine's option list from the table at idx. Strings stay
 * anchored in the table at `anchor` until the backend is open. As in
 * set_many, the pairs are counted and then read, and a finalizer may
 * change the table in between. Errors name the class cls. */
static cache_opts convert_options(lua_State *L, const char *cls, int idx,
                                  int anchor)
{
    cache_opts opts = {NULL, 0};
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        check_option_name(L, cls);
        n++;
        lua_pop(L, 1);
    }
    opts.items = lua_newuserdata(L, (n ? n : 1) * sizeof *opts.items);
    keep(L, anchor);
    memset(opts.items, 0, (n ? n : 1) * sizeof *opts.items);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        check_option_name(L, cls);
        if (opts.count == n)
            luaL_error(L, "%s: options: changed while they were read", cls);
        cache_opt *o = &opts.items[opts.count++];
        o->name = lua_tostring(L, -2);
        lua_pushvalue(L, -2);
        keep(L, anchor);
        convert_option(L, cls, o, anchor);
        lua_pop(L, 1);
    }
    return opts;
}

/* obj.k = v for a key obj does not hold: default_timeout is checked as the
 * constructor checks it and kept in the object's field table; anything else
 * becomes a raw field of the object. */
static int object_newindex(lua_State *L)
{
    static const char field[] = "default_timeout";
    lua_settop(L, 3);
    size_t klen = 0;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &klen) : NULL;
    if (!k || klen != sizeof field - 1 || memcmp(k, field, klen) != 0) {
        lua_rawset(L, 1);
        return 0;
    }
    lua_pushlightuserdata(L, &handle_key);
    lua_rawget(L, 1);
    handle *h = lua_touserdata(L, -1);
    const char *cls = h && h->b ? h->b->vt->name : "closed cache";
    lua_newtable(L); /* anchor for convert_option */
    int anchor = lua_gettop(L);
    lua_pushvalue(L, 3);
    cache_opt o = {.name = k};
    convert_option(L, cls, &o, anchor);
    cache_opts one = {&o, 1};
    double t;
    cache_err err = {0, ""};
    if (cache_opt_default_timeout(&one, &t, &err) < 0)
        return luaL_error(L, "%s: %s", cls, err.msg);
    if (!lua_getmetatable(L, 1))
        return luaL_error(L, "bad self: not a cache object");
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "default_timeout");
    return 0;
}

/* Upvalue 1: the backend class name; upvalue 2: the metatable of field
 * tables. Called as cache.SimpleCache{...} or cache.SimpleCache(). */
static int open_backend(lua_State *L)
{
    const char *type = lua_tostring(L, lua_upvalueindex(1));
    lua_settop(L, 1);
    if (lua_isnil(L, 1)) {
        lua_newtable(L);
        lua_replace(L, 1);
    }
    if (lua_type(L, 1) != LUA_TTABLE)
        return arg_error(L, 1, "options", "table");
    lua_newtable(L); /* anchor for converted strings */
    cache_opts opts = convert_options(L, type, 1, 2);
    cache_err err = {0, ""};

    handle *h = lua_newuserdata(L, sizeof *h);
    h->b = NULL;
    cache_buf_init(&h->scratch);
    h->spare = NULL;
    h->ref = LUA_NOREF;
    h->installs = 0;
    luaL_getmetatable(L, HANDLE_MT);
    lua_setmetatable(L, -2);
    int hidx = lua_gettop(L);

    h->b = cache_open(type, &opts, &err);
    if (!h->b) {
        /* name the backend once, whether or not its message already does */
        size_t tl = strlen(type);
        if (strncmp(err.msg, type, tl) == 0 && err.msg[tl] == ':')
            return luaL_error(L, "%s", err.msg);
        return luaL_error(L, "%s: %s", type, err.msg);
    }

    lua_createtable(L, 0, 1); /* the object */
    int obj = lua_gettop(L);
    lua_pushlightuserdata(L, &handle_key);
    lua_pushvalue(L, hidx);
    lua_rawset(L, obj);
    lua_createtable(L, 0, 3); /* its metatable */
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, object_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_createtable(L, 0, 1); /* its fields, then the methods */
    double dt = h->b->default_timeout;
    if (dt == floor(dt) && fabs(dt) < 9e15)
        cache_lua_pushint(L, (int64_t)dt);
    else
        lua_pushnumber(L, (lua_Number)dt);
    lua_setfield(L, -2, "default_timeout");
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, obj);
    return 1;
}

/* ---- codec access (tests, tools, the OpenResty transports) ----------------------- */

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    bufset *s = new_bufset(L, 1);
    cache_str v = encode_arg(L, 1, &s->bufs[0], "value");
    lua_pushlstring(L, v.ptr, v.len);
    return 1;
}

static int l_decode(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    cache_err err = {0, ""};
    if (cache_validate(p, n, &err) != CACHE_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    cache_lua_decode(L, p, n);
    lua_pushboolean(L, 1);
    return 2;
}

static int l_backend_types(lua_State *L)
{
    lua_newtable(L);
    for (const cache_backend_type *t = cache_backend_types(); t->name; t++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, t->name);
    }
    return 1;
}

/* Seconds on the monotonic clock, for timing (benchmarks, specs). */
static int l_monotonic(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)cache_monotonic_now());
    return 1;
}

static const luaL_Reg functions[] = {
    {"monotonic", l_monotonic},
    {"encode", l_encode},
    {"decode", l_decode},
    {"backend_types", l_backend_types},
    {NULL, NULL},
};

int luaopen_cache_core(lua_State *L)
{
    luaL_newmetatable(L, HANDLE_MT);
    lua_pushcfunction(L, handle_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, BUFSET_MT);
    lua_pushcfunction(L, bufset_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newlib(L, functions);
    int module = lua_gettop(L);

    /* the metatable of the field tables of objects: methods by __index */
    lua_newtable(L);
    int fields_mt = lua_gettop(L);
    luaL_newlib(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, module, "methods"); /* Lua code may add methods here */
    lua_setfield(L, fields_mt, "__index");

    /* one constructor per registered backend type */
    for (const cache_backend_type *t = cache_backend_types(); t->name; t++) {
        lua_pushstring(L, t->name);
        lua_pushvalue(L, fields_mt);
        lua_pushcclosure(L, open_backend, 2);
        lua_setfield(L, module, t->name);
    }
    lua_settop(L, module);

    /* the digest names hash_method takes, as a set: the Lua side reads
     * them here instead of keeping its own list */
    lua_createtable(L, 0, (int)cache_digest_count());
    for (size_t i = 0; i < cache_digest_count(); i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, cache_digest_name((cache_digest_kind)i));
    }
    lua_setfield(L, module, "hash_methods");

    cache_bind_keys(L);
    cache_bind_co(L);
    return 1;
}
