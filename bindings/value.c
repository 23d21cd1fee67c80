/*
 * value.c - Lua values to codec bytes and back.
 *
 * Encoding walks the value recursively (depth is bounded by CACHE_MAX_DEPTH,
 * so the C stack is too) and raises a Lua error that names where in the
 * table the offending value sits. Decoding trusts its input only because
 * the engine validated it first.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"

/* One level of the walk: the table being encoded and the stack slot of the
 * key under which it was found, so an error can spell out the whole path. */
typedef struct frame {
    const struct frame *parent;
    int key;            /* stack index of this value's key; 0 for the root */
    const void *table;  /* identity of the table at this level, or NULL */
} frame;

typedef struct walk {
    lua_State *L;
    cache_writer *w;
    const char *root;
    cache_enc_mode mode;
} walk;

static void encode(walk *k, int idx, const frame *f, int depth);

/* ---- error paths ---------------------------------------------------------- */

static int is_identifier(const char *s, size_t n)
{
    if (n == 0 || n > 40 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

static void append_key(lua_State *L, luaL_Buffer *b, int key)
{
    char tmp[64];
    switch (lua_type(L, key)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, key, &n);
        if (is_identifier(s, n)) {
            luaL_addchar(b, '.');
            luaL_addlstring(b, s, n);
        } else {
            luaL_addstring(b, "[\"");
            for (size_t i = 0; i < n && i < 40; i++)
                luaL_addchar(b, isprint((unsigned char)s[i]) && s[i] != '"' ? s[i] : '?');
            luaL_addstring(b, n > 40 ? "...\"]" : "\"]");
        }
        return;
    }
    case LUA_TNUMBER: {
        int64_t i;
        if (cache_lua_isint(L, key, &i))
            snprintf(tmp, sizeof tmp, "[%lld]", (long long)i);
        else
            snprintf(tmp, sizeof tmp, "[%.17g]", (double)lua_tonumber(L, key));
        luaL_addstring(b, tmp);
        return;
    }
    case LUA_TBOOLEAN:
        luaL_addstring(b, lua_toboolean(L, key) ? "[true]" : "[false]");
        return;
    default:
        luaL_addstring(b, "[?]");
    }
}

static void add_path(lua_State *L, luaL_Buffer *b, const frame *f, int *levels)
{
    if (!f)
        return;
    add_path(L, b, f->parent, levels);
    /* Deep paths are cut: the first levels locate the problem well enough. */
    if (f->key && ++*levels <= 12)
        append_key(L, b, f->key);
    else if (f->key && *levels == 13)
        luaL_addstring(b, "...");
}

/* Raises "<root><path>: <what>". */
static void fail_at(walk *k, const frame *f, const char *what)
{
    lua_State *L = k->L;
    luaL_Buffer b;
    int levels = 0;
    luaL_checkstack(L, 4, NULL);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, k->root);
    add_path(L, &b, f, &levels);
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, what);
    luaL_pushresult(&b);
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
    lua_error(L);
}

static void check_writer(walk *k)
{
    if (k->w->failed)
        luaL_error(k->L, "%s: out of memory while encoding", k->root);
}

/* ---- scalars -------------------------------------------------------------- */

static void encode_number(walk *k, int idx)
{
    int64_t i;
    if (cache_lua_isint(k->L, idx, &i))
        cache_write_int(k->w, i);
    else
        cache_write_float(k->w, (double)lua_tonumber(k->L, idx));
}

static void encode_string(walk *k, int idx)
{
    size_t n;
    const char *s = lua_tolstring(k->L, idx, &n);
    cache_write_str(k->w, s, n);
}

/* Key mode: a value that names itself through a metamethod enters as that
 * string. Returns 1 when it did. */
static int encode_by_metamethod(walk *k, int idx, const frame *f)
{
    lua_State *L = k->L;
    static const char *const names[] = {"__cache_key", "__tostring"};
    if (!lua_getmetatable(L, idx))
        return 0;
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, -1, names[i]);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (lua_isfunction(L, -1)) {
            lua_pushvalue(L, idx);
            lua_call(L, 1, 1);
        }
        if (lua_type(L, -1) != LUA_TSTRING)
            fail_at(k, f, i == 0 ? "__cache_key must give a string"
                                 : "__tostring must give a string");
        encode_string(k, lua_gettop(L));
        lua_pop(L, 2);
        return 1;
    }
    lua_pop(L, 1);
    return 0;
}

/* ---- tables --------------------------------------------------------------- */

static int key_allowed(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    return t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN;
}

/* Counts the pairs, checks the key types and tells whether the keys are
 * exactly 1..n (then the table is written as an array). */
static size_t survey(walk *k, int idx, const frame *f, int *is_array)
{
    lua_State *L = k->L;
    size_t n = 0;
    int64_t maxkey = 0;
    int only_ints = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int key = lua_gettop(L) - 1;
        int64_t i;
        if (!key_allowed(L, key)) {
            char what[64];
            snprintf(what, sizeof what, "cannot use a %s as a table key",
                     luaL_typename(L, key));
            fail_at(k, f, what);
        }
        if (only_ints && lua_type(L, key) == LUA_TNUMBER && cache_lua_isint(L, key, &i) && i >= 1) {
            if (i > maxkey)
                maxkey = i;
        } else {
            only_ints = 0;
        }
        n++;
        lua_pop(L, 1);
    }
    *is_array = n > 0 && only_ints && (size_t)maxkey == n;
    return n;
}

static void encode_array(walk *k, int idx, const frame *f, size_t n, int depth)
{
    lua_State *L = k->L;
    cache_write_array(k->w, n);
    for (size_t i = 1; i <= n; i++) {
        lua_pushinteger(L, (lua_Integer)i);
        lua_rawgeti(L, idx, (int)i);
        frame child = {f, lua_gettop(L) - 1, NULL};
        encode(k, lua_gettop(L), &child, depth + 1);
        lua_pop(L, 2);
    }
}

static void encode_map(walk *k, int idx, const frame *f, size_t n, int depth)
{
    lua_State *L = k->L;
    cache_write_map(k->w, n);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int key = lua_gettop(L) - 1;
        frame child = {f, key, NULL};
        encode(k, key, &child, depth + 1);
        encode(k, key + 1, &child, depth + 1);
        lua_pop(L, 1);
    }
}

/* Sort order of keys in key mode: booleans, then numbers, then strings. */
typedef struct sorted_key {
    int type;
    int is_int;
    int64_t i;
    double d;
    const char *s;
    size_t len;
    int slot; /* stack index of the key */
} sorted_key;

static int type_rank(int t)
{
    return t == LUA_TBOOLEAN ? 0 : t == LUA_TNUMBER ? 1 : 2;
}

static int compare_keys(const void *pa, const void *pb)
{
    const sorted_key *a = pa, *b = pb;
    if (a->type != b->type)
        return type_rank(a->type) - type_rank(b->type);
    if (a->type == LUA_TSTRING) {
        size_t n = a->len < b->len ? a->len : b->len;
        int c = memcmp(a->s, b->s, n);
        return c ? c : (a->len > b->len) - (a->len < b->len);
    }
    if (a->type == LUA_TNUMBER) {
        if (a->is_int && b->is_int)
            return (a->i > b->i) - (a->i < b->i);
        return (a->d > b->d) - (a->d < b->d);
    }
    return (int)a->i - (int)b->i;
}

/* Key mode: the pairs in sorted key order, so that equal tables encode to
 * equal bytes whatever their insertion history. The keys are copied to a
 * scratch table on the stack so their slots stay valid while sorting.
 * survey counted them before the array was allocated, and a finalizer that
 * allocation ran may have added some since: such a table is refused. */
static void encode_sorted_map(walk *k, int idx, const frame *f, size_t n,
                              int depth)
{
    lua_State *L = k->L;
    sorted_key *keys = lua_newuserdata(L, n * sizeof *keys);
    int base = lua_gettop(L);
    size_t m = 0;
    luaL_checkstack(L, (int)(n > 1000000 ? 1000000 : n) + 8, "table too large for a key");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (m == n)
            fail_at(k, f, "table changed while it was read");
        lua_pop(L, 1);
        lua_pushvalue(L, -1); /* keep a copy of the key in place */
        int slot = lua_gettop(L) - 1;
        sorted_key *sk = &keys[m++];
        sk->type = lua_type(L, slot);
        sk->slot = slot;
        sk->is_int = sk->type == LUA_TNUMBER && cache_lua_isint(L, slot, &sk->i);
        sk->d = sk->type == LUA_TNUMBER ? (double)lua_tonumber(L, slot) : 0;
        if (sk->type == LUA_TBOOLEAN)
            sk->i = lua_toboolean(L, slot);
        sk->s = sk->type == LUA_TSTRING ? lua_tolstring(L, slot, &sk->len) : NULL;
    }
    qsort(keys, m, sizeof *keys, compare_keys);
    cache_write_map(k->w, m);
    for (size_t i = 0; i < m; i++) {
        frame child = {f, keys[i].slot, NULL};
        encode(k, keys[i].slot, &child, depth + 1);
        lua_pushvalue(L, keys[i].slot);
        lua_rawget(L, idx);
        encode(k, lua_gettop(L), &child, depth + 1);
        lua_pop(L, 1);
    }
    lua_settop(L, base - 1);
}

static void encode_table(walk *k, int idx, const frame *f, int depth)
{
    lua_State *L = k->L;
    const void *self = lua_topointer(L, idx);
    if (k->mode == CACHE_ENC_KEY && encode_by_metamethod(k, idx, f))
        return;
    if (depth > CACHE_MAX_DEPTH) {
        char what[64];
        snprintf(what, sizeof what, "tables nested deeper than %d levels",
                 CACHE_MAX_DEPTH);
        fail_at(k, f, what);
    }
    for (const frame *a = f ? f->parent : NULL; a; a = a->parent)
        if (a->table == self)
            fail_at(k, f, "cannot store a cyclic table");
    luaL_checkstack(L, 8, "value nested too deeply");
    frame here = {f ? f->parent : NULL, f ? f->key : 0, self};
    int is_array;
    size_t n = survey(k, idx, &here, &is_array);
    if (is_array)
        encode_array(k, idx, &here, n, depth);
    else if (k->mode == CACHE_ENC_KEY)
        encode_sorted_map(k, idx, &here, n, depth);
    else
        encode_map(k, idx, &here, n, depth);
}

static void encode_other(walk *k, int idx, const frame *f)
{
    lua_State *L = k->L;
    if (k->mode == CACHE_ENC_KEY) {
        if (encode_by_metamethod(k, idx, f))
            return;
        /* identity in this process, as Python's repr() of such objects */
        lua_pushfstring(L, "%s: %p", luaL_typename(L, idx), lua_topointer(L, idx));
        encode_string(k, lua_gettop(L));
        lua_pop(L, 1);
        return;
    }
    char what[64];
    snprintf(what, sizeof what, "cannot store a %s", luaL_typename(L, idx));
    fail_at(k, f, what);
}

static void encode(walk *k, int idx, const frame *f, int depth)
{
    lua_State *L = k->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: cache_write_nil(k->w); break;
    case LUA_TBOOLEAN: cache_write_bool(k->w, lua_toboolean(L, idx)); break;
    case LUA_TNUMBER: encode_number(k, idx); break;
    case LUA_TSTRING: encode_string(k, idx); break;
    case LUA_TTABLE: encode_table(k, idx, f, depth); break;
    default: encode_other(k, idx, f); break;
    }
    check_writer(k);
}

void cache_lua_encode(lua_State *L, int idx, cache_writer *w, const char *root,
                      cache_enc_mode mode)
{
    walk k = {L, w, root, mode};
    encode(&k, lua_absindex(L, idx), NULL, 1);
}

/* ---- decoding --------------------------------------------------------------- */

static void push_item(lua_State *L, cache_reader *r)
{
    cache_item it;
    cache_reader_next(r, &it); /* cannot fail: the bytes were validated */
    switch (it.type) {
    case CACHE_V_NIL: lua_pushnil(L); break;
    case CACHE_V_BOOL: lua_pushboolean(L, it.b); break;
    case CACHE_V_INT: cache_lua_pushint(L, it.i); break;
    case CACHE_V_FLOAT: lua_pushnumber(L, (lua_Number)it.f); break;
    case CACHE_V_STR: lua_pushlstring(L, it.s, it.len); break;
    case CACHE_V_ARRAY:
        luaL_checkstack(L, 4, "value nested too deeply");
        lua_createtable(L, it.len > 1 << 26 ? 1 << 26 : (int)it.len, 0);
        for (size_t i = 1; i <= it.len; i++) {
            push_item(L, r);
            lua_rawseti(L, -2, (int)i);
        }
        break;
    case CACHE_V_MAP:
        luaL_checkstack(L, 4, "value nested too deeply");
        lua_createtable(L, 0, it.len > 1 << 26 ? 1 << 26 : (int)it.len);
        for (size_t i = 0; i < it.len; i++) {
            push_item(L, r);
            push_item(L, r);
            lua_rawset(L, -3);
        }
        break;
    }
}

void cache_lua_decode(lua_State *L, const char *bytes, size_t len)
{
    cache_reader r;
    cache_reader_init(&r, bytes, len);
    push_item(L, &r);
}
