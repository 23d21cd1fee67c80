/*
 * keys.c - the key machinery of the decorators for Lua (cache.core.memo_key
 * and friends). lua/cache/decorators.lua composes them; engine/keys.c does
 * the digests and formats.
 *
 * The memoize text hashed for a call is the codec bytes of the function name
 * (a string item, so a name can never run into the arguments) followed by
 * the arguments as one array in the codec's key mode (tables by value with
 * sorted keys, objects by __cache_key / __tostring), then the source text
 * when source checking. Trailing nil arguments are dropped: f(1) and
 * f(1, nil) are the same call, as a missing parameter is nil in Lua.
 */
#include <string.h>

#include "bindings.h"
#include "cache.h"
#include "keys.h"

#define KEYBUF_MT "cache.core.keybuf"

/* ---- a buffer that a Lua error cannot leak -------------------------------- */

static int keybuf_gc(lua_State *L)
{
    cache_buf *b = luaL_checkudata(L, 1, KEYBUF_MT);
    cache_buf_free(b);
    return 0;
}

static cache_buf *new_keybuf(lua_State *L)
{
    cache_buf *b = lua_newuserdata(L, sizeof *b);
    cache_buf_init(b);
    luaL_getmetatable(L, KEYBUF_MT);
    lua_setmetatable(L, -2);
    return b;
}

/* ---- arguments ---------------------------------------------------------------- */

static cache_digest_kind check_hash(lua_State *L, int arg)
{
    cache_digest_kind kind;
    const char *name = luaL_checkstring(L, arg);
    if (cache_digest_lookup(name, &kind) < 0)
        luaL_error(L, "hash_method: unknown digest '%s' (md5, sha1, sha256, sha512)",
                   name);
    return kind;
}

static cache_str opt_bytes(lua_State *L, int arg)
{
    cache_str s = {NULL, 0};
    if (!lua_isnoneornil(L, arg))
        s.ptr = luaL_checklstring(L, arg, &s.len);
    return s;
}

/* Writes name and arguments first..top (trailing nils dropped) into buf. */
static void memo_text(lua_State *L, int name_arg, int first, cache_buf *buf)
{
    size_t nlen;
    const char *name = luaL_checklstring(L, name_arg, &nlen);
    int last = lua_gettop(L);
    while (last >= first && lua_isnil(L, last))
        last--;
    cache_writer w;
    cache_writer_init(&w, buf);
    cache_write_str(&w, name, nlen);
    cache_write_array(&w, last >= first ? (size_t)(last - first + 1) : 0);
    for (int i = first; i <= last; i++) {
        char root[32];
        snprintf(root, sizeof root, "argument #%d", i - first + 1);
        cache_lua_encode(L, i, &w, root, CACHE_ENC_KEY);
    }
    if (w.failed)
        luaL_error(L, "out of memory while computing a cache key");
}

/* ---- memoize ------------------------------------------------------------------- */

/* memo_key(hash, name, source|nil, version, ...) -> key */
static int l_memo_key(lua_State *L)
{
    cache_digest_kind kind = check_hash(L, 1);
    cache_str src = opt_bytes(L, 3);
    size_t vlen;
    const char *version = luaL_checklstring(L, 4, &vlen);
    cache_buf *buf = new_keybuf(L);
    lua_insert(L, 5); /* below the arguments, so they stay last */
    memo_text(L, 2, 6, buf);
    const void *parts[2] = {buf->data, src.ptr};
    size_t lens[2] = {buf->len, src.len};
    cache_buf key;
    cache_buf_init(&key);
    int rc = cache_memo_key(kind, src.ptr ? 2 : 1, parts, lens, version, vlen, &key);
    if (rc != CACHE_OK) {
        cache_buf_free(&key);
        return luaL_error(L, "cannot compute the digest of a cache key");
    }
    lua_pushlstring(L, key.data, key.len);
    cache_buf_free(&key);
    return 1;
}

/* memo_text(name, source|nil, ...) -> the bytes to hash, for a hash_method
 * given as a Lua function. */
static int l_memo_text(lua_State *L)
{
    cache_str src = opt_bytes(L, 2);
    cache_buf *buf = new_keybuf(L);
    lua_insert(L, 3);
    memo_text(L, 1, 4, buf);
    if (src.ptr && cache_buf_append(buf, src.ptr, src.len) < 0)
        return luaL_error(L, "out of memory while computing a cache key");
    lua_pushlstring(L, buf->data ? buf->data : "", buf->len);
    return 1;
}

/* memo_head(digest, version) -> key */
static int l_memo_head(lua_State *L)
{
    size_t n;
    const char *digest = luaL_checklstring(L, 1, &n);
    luaL_checkstring(L, 2);
    char head[CACHE_MEMO_HEAD_LEN + 1];
    size_t hlen = cache_memo_head((const unsigned char *)digest, n, head);
    lua_pushlstring(L, head, hlen);
    lua_pushvalue(L, 2);
    lua_concat(L, 2);
    return 1;
}

/* memo_version() -> 6 random characters */
static int l_memo_version(lua_State *L)
{
    char v[CACHE_VERSION_LEN + 1];
    if (cache_memo_version(v) < 0)
        return luaL_error(L, "no random source for a version hash");
    lua_pushlstring(L, v, CACHE_VERSION_LEN);
    return 1;
}

/* ---- query strings ------------------------------------------------------------- */

/* A query value as a string on top of the stack (anchored by the caller):
 * strings as they are, numbers as tostring, true (a name without "=value",
 * as OpenResty reports it) as "". Returns 0 for anything else. */
static int push_query_value(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        lua_pushvalue(L, idx);
        return 1;
    case LUA_TNUMBER:
        lua_pushvalue(L, idx);
        lua_tolstring(L, -1, NULL);
        return 1;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) {
            lua_pushliteral(L, "");
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

/* Collects the (name, value) pairs of the query table at idx into a
 * userdata array; strings are anchored in a table pushed below it. Leaves
 * [anchor, pairs] on the stack. */
static cache_query_pair *collect_pairs(lua_State *L, int idx, size_t *np)
{
    size_t n = 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        n += lua_type(L, -1) == LUA_TTABLE ? lua_rawlen(L, -1) : 1;
        lua_pop(L, 1);
    }
    lua_newtable(L);
    int anchor = lua_gettop(L);
    cache_query_pair *p = lua_newuserdata(L, (n ? n : 1) * sizeof *p);
    int slot = 0;
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int key = lua_gettop(L) - 1, val = key + 1;
        int t = lua_type(L, key);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "query args: names must be strings, got a %s",
                       luaL_typename(L, key));
        lua_pushvalue(L, key);
        lua_tolstring(L, -1, NULL);
        lua_rawseti(L, anchor, ++slot);
        lua_rawgeti(L, anchor, slot);
        cache_str name;
        name.ptr = lua_tolstring(L, -1, &name.len);
        lua_pop(L, 1);
        size_t count = lua_type(L, val) == LUA_TTABLE ? lua_rawlen(L, val) : 1;
        for (size_t i = 1; i <= count && k < n; i++) {
            int item = val;
            if (lua_type(L, val) == LUA_TTABLE) {
                lua_rawgeti(L, val, (int)i);
                item = lua_gettop(L);
            }
            if (!push_query_value(L, item))
                luaL_error(L, "query args: value of '%s' must be a string or a list of strings, got a %s",
                           name.ptr, luaL_typename(L, item));
            lua_rawseti(L, anchor, ++slot);
            lua_rawgeti(L, anchor, slot);
            p[k].name = name;
            p[k].value.ptr = lua_tolstring(L, -1, &p[k].value.len);
            k++;
            lua_pop(L, item == val ? 1 : 2);
        }
        lua_pop(L, 1);
    }
    *np = k;
    return p;
}

/* query_text(args) -> Python's text of the sorted pairs */
static int l_query_text(lua_State *L)
{
    size_t n;
    cache_query_pair *p = collect_pairs(L, 1, &n);
    cache_buf *buf = new_keybuf(L);
    if (cache_query_text(p, n, buf) < 0)
        return luaL_error(L, "out of memory while computing a cache key");
    lua_pushlstring(L, buf->data, buf->len);
    return 1;
}

/* query_digest(hash, args, source|nil) -> hex digest */
static int l_query_digest(lua_State *L)
{
    cache_digest_kind kind = check_hash(L, 1);
    cache_str src = opt_bytes(L, 3);
    size_t n;
    cache_query_pair *p = collect_pairs(L, 2, &n);
    char hex[CACHE_HEX_MAX];
    size_t len = cache_query_digest(kind, p, n, src.ptr, src.len, hex);
    if (len == 0)
        return luaL_error(L, "cannot compute the digest of a cache key");
    lua_pushlstring(L, hex, len);
    return 1;
}

/* ---- digests --------------------------------------------------------------------- */

/* hex_digest(hash, bytes) -> hex (the source digest of source_check) */
static int l_hex_digest(lua_State *L)
{
    cache_digest_kind kind = check_hash(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    char hex[CACHE_HEX_MAX];
    size_t len = cache_source_digest(kind, s, n, hex);
    if (len == 0)
        return luaL_error(L, "cannot compute a digest");
    lua_pushlstring(L, hex, len);
    return 1;
}

/* hex(bytes) -> lower-case hex, for digests made by a Lua hash_method */
static int l_hex(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    cache_buf *buf = new_keybuf(L);
    if (cache_buf_reserve(buf, 2 * n + 1) < 0)
        return luaL_error(L, "out of memory");
    cache_hex((const unsigned char *)s, n, buf->data);
    lua_pushlstring(L, buf->data, 2 * n);
    return 1;
}

static const luaL_Reg key_functions[] = {
    {"memo_key", l_memo_key},
    {"memo_text", l_memo_text},
    {"memo_head", l_memo_head},
    {"memo_version", l_memo_version},
    {"query_text", l_query_text},
    {"query_digest", l_query_digest},
    {"hex_digest", l_hex_digest},
    {"hex", l_hex},
    {NULL, NULL},
};

int cache_bind_keys(lua_State *L)
{
    if (luaL_newmetatable(L, KEYBUF_MT)) {
        lua_pushcfunction(L, keybuf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, key_functions, 0);
    return 0;
}
