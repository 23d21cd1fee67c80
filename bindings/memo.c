/*
 * memo.c - the key machinery of the decorators for Lua (cache.core.memo_key
 * and friends). lua/cache/decorators.lua composes them; engine/memo_keys.c does
 * the digests and formats.
 *
 * The memoize text hashed for a call is the codec bytes of the function name
 * (a string item, so a name can never run into the arguments) followed by
 * the arguments as one array in the codec's key mode (tables by value with
 * sorted keys, objects by __cache_key / __tostring), then the source text
 * when source checking. Trailing nil arguments are dropped: f(1) and
 * f(1, nil) are the same call, as a missing parameter is nil in Lua.
 */
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "cache.h"
#include "memo_keys.h"

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
    if (cache_digest_lookup(name, &kind) < 0) {
        char names[64];
        cache_digest_list(names, sizeof names);
        luaL_error(L, "hash_method: unknown digest '%s' (%s)", name, names);
    }
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

/* ---- the fused hit path of memoize -------------------------------------------- */

/* What memo_fetch needs of one decorated function, made once when it is
 * decorated: the digest, the version key, and the text that starts every
 * call's memo text (the codec bytes of the name), with the source text that
 * ends it. `text` is reused by every call (arguments are only scalars on
 * this path, so nothing can call back into Lua while it is being written,
 * and nothing can raise with it unfinished but an out-of-memory error, which
 * leaves it owned here). */
#define MEMOCTX_MT "cache.core.memoctx"
#define MEMO_MAX_VERSION 64

/* The heads of recent argument texts. A memoized function is called with
 * the same arguments again and again (that is why it is memoized), and the
 * digest of those few bytes, inherently serial, was a quarter of a hit: a
 * small set-associative table per function keeps the head of each text
 * (name, source and digest are fixed per function, so the arguments' bytes
 * decide the head alone). Texts are compared whole; a collision costs only
 * a digest. 128 entries of 48 bytes, allocated at the first call. */
#define HEAD_SETS 64
#define HEAD_WAYS 2
#define HEAD_TEXT_MAX 27

typedef struct head_slot {
    uint32_t hash;
    unsigned char len; /* 0: empty (an argument text has at least 1 byte) */
    char head[CACHE_MEMO_HEAD_LEN];
    unsigned char text[HEAD_TEXT_MAX];
} head_slot;

static uint32_t text_hash(const unsigned char *p, size_t n)
{
    uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15u, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, p + i, n - i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
    h ^= h >> 29;
    return (uint32_t)h;
}

typedef struct memo_ctx {
    cache_digest_kind kind;
    cache_buf name;   /* codec bytes of the function name */
    cache_buf source; /* source text (source_check), or empty */
    int has_source;
    int want_key;     /* return the key with a hit too (is_stale needs it) */
    cache_buf vkey;   /* the version key */
    cache_buf text;   /* scratch: one call's memo text */
    head_slot *heads; /* HEAD_SETS * HEAD_WAYS, or NULL */
} memo_ctx;

static int memoctx_gc(lua_State *L)
{
    memo_ctx *c = luaL_checkudata(L, 1, MEMOCTX_MT);
    cache_buf_free(&c->name);
    cache_buf_free(&c->source);
    cache_buf_free(&c->vkey);
    cache_buf_free(&c->text);
    free(c->heads);
    c->heads = NULL;
    return 0;
}

/* memo_ctx(hash, name, source|nil, version_key, want_key) -> ctx */
static int l_memo_ctx(lua_State *L)
{
    cache_digest_kind kind = check_hash(L, 1);
    size_t nlen, vlen;
    const char *name = luaL_checklstring(L, 2, &nlen);
    cache_str src = opt_bytes(L, 3);
    const char *vkey = luaL_checklstring(L, 4, &vlen);
    memo_ctx *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->want_key = lua_toboolean(L, 5);
    luaL_getmetatable(L, MEMOCTX_MT);
    lua_setmetatable(L, -2);
    cache_writer w;
    cache_writer_init(&w, &c->name);
    cache_write_str(&w, name, nlen);
    c->has_source = src.ptr != NULL;
    if (w.failed || (src.ptr && cache_buf_set(&c->source, src.ptr, src.len) < 0) ||
        cache_buf_set(&c->vkey, vkey, vlen) < 0)
        return luaL_error(L, "out of memory");
    return 1;
}

/* The arguments first..top as memo_fetch takes them: 1 when all are nil,
 * booleans, numbers or strings (with *last the last non-nil one), 0 when
 * one needs the general walker. */
static int scalar_args(lua_State *L, int first, int *last)
{
    int top = lua_gettop(L);
    while (top >= first && lua_isnil(L, top))
        top--;
    for (int i = first; i <= top; i++) {
        int t = lua_type(L, i);
        if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)
            return 0;
    }
    *last = top;
    return 1;
}

/* ---- the memo text of scalar arguments, written directly ----------------------- */

/* The few scalars of a memoize call are written with the codec's item
 * writers into one reservation (spec/c/test_memo_keys.c and
 * spec/keys_stability_spec.lua hold the keys to their bytes). */
/* Replaces t with name_bytes followed by the arguments first..last (all
 * scalars) as one codec array. -1 on no memory. */
static int scalar_text(lua_State *L, const cache_buf *name, int first, int last,
                       cache_buf *t)
{
    size_t need = name->len + 5;
    for (int i = first; i <= last; i++) {
        size_t n = CACHE_MP_ITEM_MAX;
        if (lua_type(L, i) == LUA_TSTRING)
            lua_tolstring(L, i, &n), n += 5;
        need += n;
    }
    t->len = 0;
    if (cache_buf_reserve(t, need) < 0)
        return -1;
    unsigned char *p = (unsigned char *)t->data;
    memcpy(p, name->data, name->len);
    p += name->len;
    p = cache_mp_array_head(p, last >= first ? (size_t)(last - first + 1) : 0);
    for (int i = first; i <= last; i++) {
        switch (lua_type(L, i)) {
        case LUA_TNIL:
            p = cache_mp_nil(p);
            break;
        case LUA_TBOOLEAN:
            p = cache_mp_bool(p, lua_toboolean(L, i));
            break;
        case LUA_TNUMBER: {
            int64_t v;
            if (cache_lua_isint(L, i, &v))
                p = cache_mp_int(p, v);
            else
                p = cache_mp_float(p, (double)lua_tonumber(L, i));
            break;
        }
        default: { /* a string: scalar_args let nothing else through */
            size_t n;
            const char *str = lua_tolstring(L, i, &n);
            p = cache_mp_str_head(p, n);
            memcpy(p, str, n);
            p += n;
            break;
        }
        }
    }
    t->len = (size_t)(p - (unsigned char *)t->data);
    return 0;
}

/* The version string held by the codec bytes of a version key, when they
 * are a non-empty string (what decorators.lua accepts as a version). */
static int version_of(const cache_buf *b, const char **v, size_t *n)
{
    cache_reader r;
    cache_item it;
    cache_reader_init(&r, b->data, b->len);
    if (cache_reader_next(&r, &it) < 0 || it.type != CACHE_V_STR || it.len == 0 ||
        it.len > MEMO_MAX_VERSION)
        return 0;
    *v = it.s;
    *n = it.len;
    return 1;
}

/* Writes the head of the memo text t (name, then arguments) to out and
 * returns its length (0 if the digest failed), from the table of recent
 * heads when the arguments were seen lately. */
static size_t memo_head(memo_ctx *c, const cache_buf *t, char *out)
{
    const unsigned char *args = (const unsigned char *)t->data + c->name.len;
    size_t alen = t->len - c->name.len;
    head_slot *set = NULL;
    uint32_t h = 0;
    if (alen <= HEAD_TEXT_MAX) {
        if (!c->heads)
            c->heads = calloc(HEAD_SETS * HEAD_WAYS, sizeof *c->heads);
        if (c->heads) {
            h = text_hash(args, alen);
            set = &c->heads[(h % HEAD_SETS) * HEAD_WAYS];
            for (int w = 0; w < HEAD_WAYS; w++)
                if (set[w].len == alen && set[w].hash == h &&
                    memcmp(set[w].text, args, alen) == 0) {
                    memcpy(out, set[w].head, CACHE_MEMO_HEAD_LEN);
                    return CACHE_MEMO_HEAD_LEN;
                }
        }
    }
    const void *parts[2] = {t->data, c->source.data};
    size_t lens[2] = {t->len, c->source.len};
    unsigned char md[CACHE_DIGEST_MAX];
    size_t mdlen = cache_digest(c->kind, c->has_source ? 2 : 1, parts, lens, md);
    if (mdlen == 0)
        return 0;
    char head[CACHE_MEMO_HEAD_LEN + 1];
    size_t hlen = cache_memo_head(md, mdlen, head);
    memcpy(out, head, hlen);
    if (set && hlen == CACHE_MEMO_HEAD_LEN) {
        /* the newest first; the older of the two makes room */
        memmove(&set[1], &set[0], (HEAD_WAYS - 1) * sizeof *set);
        set[0].hash = h;
        set[0].len = (unsigned char)alen;
        memcpy(set[0].head, head, CACHE_MEMO_HEAD_LEN);
        memcpy(set[0].text, args, alen);
    }
    return hlen;
}

/* memo_fetch(ctx, backend, ...): a memoized call on a backend of this
 * module, in one call from Lua, doing what decorators.lua does in steps:
 * get_many(version key), the key of the arguments, get(key). Returns
 *   nothing      when this path does not apply (not a backend of this
 *                module, version missing or not a string, an argument that
 *                is not a scalar): the caller takes the plain path;
 *   false, err   when reading the version failed;
 *   true, value  on a hit (a value that is not nil) when the ctx was made
 *                without want_key, followed by nil and n when the value is
 *                a table of n results (MULTI);
 *   key, value   after the get otherwise (value nil on a miss), with n
 *                as above;
 *   key, nil, err when the get failed. */
static int l_memo_fetch(lua_State *L)
{
    /* upvalues: the ctx metatable, "get", "get_many", "__cache_results" */
    memo_ctx *c = lua_touserdata(L, 1);
    if (!c || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
        return luaL_argerror(L, 1, "memo_ctx expected");
    lua_pop(L, 1);
    int last;
    if (!scalar_args(L, 3, &last))
        return 0;
    cache_handle *h;
    cache_buf *buf;
    cache_backend *b = cache_lua_object(L, 2, lua_upvalueindex(2),
                                        lua_upvalueindex(3), &h, &buf);
    if (!b)
        return 0;
    /* From here to cache_lua_push_read no Lua code runs: b stays open and
     * no other call touches buf. */

    cache_str vk = {c->vkey.data, c->vkey.len};
    int status = CACHE_MISS;
    cache_err err = {0, ""};
    int rc = cache_get_many(b, 1, &vk, buf, &status, &err);
    if (rc < 0) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, err.msg[0] ? err.msg : "backend failure");
        return 2;
    }
    const char *vp;
    size_t vlen;
    if (status != CACHE_OK || !version_of(buf, &vp, &vlen))
        return 0;
    char key[CACHE_MEMO_HEAD_LEN + MEMO_MAX_VERSION];
    memcpy(key + CACHE_MEMO_HEAD_LEN, vp, vlen); /* before buf is reused */

    /* the memo text: name, then the arguments as one array (memo_text) */
    cache_buf *t = &c->text;
    if (scalar_text(L, &c->name, 3, last, t) < 0)
        return luaL_error(L, "out of memory while computing a cache key");
    size_t hlen = memo_head(c, t, key);
    if (hlen == 0)
        return luaL_error(L, "cannot compute the digest of a cache key");
    if (hlen < CACHE_MEMO_HEAD_LEN)
        memmove(key + hlen, key + CACHE_MEMO_HEAD_LEN, vlen);
    size_t klen = hlen + vlen;

    buf->len = 0;
    rc = cache_get(b, (cache_str){key, klen}, buf, &err);
    if (rc == CACHE_OK) {
        cache_lua_push_read(L, h);
        /* a hit: the caller needs the value only, unless it is nil */
        if (!c->want_key && !lua_isnil(L, -1))
            lua_pushboolean(L, 1);
        else
            lua_pushlstring(L, key, klen);
        lua_insert(L, -2);
        if (lua_type(L, -1) != LUA_TTABLE)
            return 2;
        /* several results stored as one table (decorators.lua MULTI):
         * their count, so that Lua unpacks without inspecting the value */
        lua_pushnil(L);
        lua_pushvalue(L, lua_upvalueindex(4));
        lua_rawget(L, -3);
        if (lua_type(L, -1) == LUA_TNUMBER)
            return 4;
        lua_pop(L, 2);
        return 2;
    }
    lua_pushlstring(L, key, klen);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg[0] ? err.msg : "backend failure");
        return 3;
    }
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
    {"memo_ctx", l_memo_ctx},
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
    if (luaL_newmetatable(L, MEMOCTX_MT)) {
        lua_pushcfunction(L, memoctx_gc);
        lua_setfield(L, -2, "__gc");
    }
    luaL_getmetatable(L, MEMOCTX_MT);
    lua_pushliteral(L, "get");
    lua_pushliteral(L, "get_many");
    lua_pushliteral(L, "__cache_results"); /* decorators.lua's MULTI */
    lua_pushcclosure(L, l_memo_fetch, 4);
    lua_setfield(L, -3, "memo_fetch");
    lua_pop(L, 1);
    luaL_setfuncs(L, key_functions, 0);
    return 0;
}
