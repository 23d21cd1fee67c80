/*
 * registry.c - the backend types by class name.
 *
 * The one list of backends: a backend is its file(s), one CACHE_BACKENDS line
 * here, its spec descriptor (spec/backends/) and its README row. The Lua
 * constructors (bindings/core.c), cache.backend_types() and the registry
 * spec all read this table, so a backend cannot be half registered.
 */
#include <stddef.h>
#include <string.h>

#include "cache.h"

/* X(class name, constructor) */
#define CACHE_BACKENDS(X)                                        \
    X("NullCache", cache_null_create)                            \
    X("SimpleCache", cache_simple_create)                        \
    X("FileSystemCache", cache_filesystem_create)                \
    X("RedisCache", cache_redis_create)                          \
    X("RedisSentinelCache", cache_redis_sentinel_create)         \
    X("RedisClusterCache", cache_redis_cluster_create)           \
    X("MemcachedCache", cache_memcached_create)                  \
    X("SASLMemcachedCache", cache_sasl_memcached_create)         \
    X("SpreadSASLMemcachedCache", cache_spread_sasl_memcached_create) \
    X("UWSGICache", cache_uwsgi_create)                          \
    X("SharedDictCache", cache_shdict_create)

#define DECLARE(name, fn) cache_backend *fn(cache_opts *, cache_err *);
CACHE_BACKENDS(DECLARE)
#undef DECLARE

#define ROW(name, fn) {name, fn},
static const cache_backend_type types[] = {CACHE_BACKENDS(ROW){NULL, NULL}};
#undef ROW

const cache_backend_type *cache_backend_types(void)
{
    return types;
}

const cache_backend_type *cache_backend_find(const char *name)
{
    for (const cache_backend_type *t = types; t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}
