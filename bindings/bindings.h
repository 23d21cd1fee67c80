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

/* The engine backend of the cache object at idx (bindings/core.c) with its
 * scratch buffer emptied, when the object is open and its get / get_many are
 * the module's own; NULL otherwise. get_name / get_many_name: stack indices
 * of the strings "get" and "get_many". Never raises. */
cache_backend *cache_lua_object(lua_State *L, int idx, int get_name,
                                int get_many_name, cache_buf **scratch);

/* Adds the key functions (bindings/memo.c) to the module table on top of
 * the stack. */
int cache_bind_keys(lua_State *L);

/* The open backend of the object at idx, or NULL (never raises). */
cache_backend *cache_lua_backend_of(lua_State *L, int idx);
/* The open backend of the object at idx, its scratch buffer emptied (and
 * given in *scratch when not NULL); raises on anything else. */
cache_backend *cache_lua_check_backend(lua_State *L, int idx,
                                       cache_buf **scratch);
/* Pushes a handle that owns no backend yet and returns where to put it: a
 * backend stored there is closed when the handle is collected. */
cache_backend **cache_lua_new_handle(lua_State *L);
/* Replaces the handle on top of the stack (its backend set) with a backend
 * object owning it, like those the constructors return. */
void cache_lua_wrap_handle(lua_State *L);

/* Adds fetch's steps and TieredCache's constructor (bindings/fetch.c), and
 * SharedDictCache's zone lookup (bindings/shdict.c), to the module table
 * on top of the stack. */
void cache_bind_fetch(lua_State *L);
void cache_bind_shdict(lua_State *L);
/* A userdata made by this module to stand for an object of the host (an
 * nginx shared dict zone): fills o as a CACHE_OPT_PTR and returns 1; 0 for
 * any other userdata. */
int cache_lua_host_option(lua_State *L, int idx, cache_opt *o);

#endif
