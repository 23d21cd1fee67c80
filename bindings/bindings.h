/*
 * bindings.h - what the files of bindings/ share: the value walker between
 * Lua and the engine codec, and the registration hooks of optional parts.
 */
#ifndef CACHE_BINDINGS_H
#define CACHE_BINDINGS_H

#include "compat.h"
#include "codec.h"

/* How cache_lua_encode renders a value. */
typedef enum {
    /* Stored values: exact round-trip; functions, userdata, threads and
     * cycles raise "<root><path>: cannot store a function". */
    CACHE_ENC_STORE,
    /* Key material (memoize arguments): maps are written with their keys
     * sorted so equal tables give equal bytes; a table or userdata with a
     * __cache_key metamethod (a string, or a function returning one) or a
     * __tostring metamethod enters as that string; functions, threads and
     * other userdata enter as tostring() (an identity valid in this
     * process only). Cycles and excess depth still raise. */
    CACHE_ENC_KEY
} cache_enc_mode;

/* Encodes the value at idx into w, or raises a Lua error whose message names
 * root (e.g. "value") and the path inside the table. */
void cache_lua_encode(lua_State *L, int idx, cache_writer *w, const char *root,
                      cache_enc_mode mode);

/* Pushes the value held by validated codec bytes. */
void cache_lua_decode(lua_State *L, const char *bytes, size_t len);

/* A cache object's handle (bindings/core.c). */
typedef struct cache_handle cache_handle;

/* The engine backend of the cache object at idx (bindings/core.c), when
 * the object is open and its get / get_many are the module's own; NULL
 * otherwise. Reads go into *buf (empty), then cache_lua_push_read pushes
 * the value; no Lua code may run in between (the backend stays open and
 * the bytes stay put only so). get_name / get_many_name: stack indices of
 * the strings "get" and "get_many". Raises only what Lua code run meanwhile
 * (metamethods, finalizers) raises, or when out of memory. */
cache_backend *cache_lua_object(lua_State *L, int idx, int get_name,
                                int get_many_name, cache_handle **h,
                                cache_buf **buf);
/* Pushes the value whose validated bytes were just read into the buffer
 * of cache_lua_object, decoded from memory that the calls a finalizer
 * makes meanwhile cannot reach. */
void cache_lua_push_read(lua_State *L, cache_handle *h);

/* The open backend of the cache object at idx, or NULL. Never raises. */
cache_backend *cache_lua_backend(lua_State *L, int idx);

/* Adds the cosocket functions (bindings/co.c) to the module table on top
 * of the stack. */
int cache_bind_co(lua_State *L);

/* Adds the key functions (bindings/memo.c) to the module table on top of
 * the stack. */
int cache_bind_keys(lua_State *L);

#endif
