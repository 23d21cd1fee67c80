/*
 * registry.c - the backend types by class name.
 *
 * Constructors are weak references: a backend whose file is not linked into
 * this build reads as NULL here and is reported as not built, so adding a
 * backend means adding its file (and its line below), nothing else.
 */
#include <stddef.h>
#include <string.h>

#include "cache.h"

#define BACKEND(fn) extern cache_backend *fn(cache_opts *, cache_err *) __attribute__((weak));
BACKEND(cache_null_create)
BACKEND(cache_simple_create)
BACKEND(cache_filesystem_create)
BACKEND(cache_redis_create)
BACKEND(cache_redis_sentinel_create)
BACKEND(cache_redis_cluster_create)
BACKEND(cache_memcached_create)
BACKEND(cache_sasl_memcached_create)
BACKEND(cache_spread_sasl_memcached_create)
BACKEND(cache_uwsgi_create)
#undef BACKEND

static const cache_backend_type types[] = {
    {"NullCache", cache_null_create},
    {"SimpleCache", cache_simple_create},
    {"FileSystemCache", cache_filesystem_create},
    {"RedisCache", cache_redis_create},
    {"RedisSentinelCache", cache_redis_sentinel_create},
    {"RedisClusterCache", cache_redis_cluster_create},
    {"MemcachedCache", cache_memcached_create},
    {"SASLMemcachedCache", cache_sasl_memcached_create},
    {"SpreadSASLMemcachedCache", cache_spread_sasl_memcached_create},
    {"UWSGICache", cache_uwsgi_create},
};

#define NTYPES (sizeof types / sizeof types[0])

static const cache_backend_type *const type_list[NTYPES + 1] = {
    &types[0], &types[1], &types[2], &types[3], &types[4],
    &types[5], &types[6], &types[7], &types[8], &types[9], NULL,
};

const cache_backend_type *const *cache_backend_types(void)
{
    return type_list;
}

const cache_backend_type *cache_backend_find(const char *name)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(types[i].name, name) == 0)
            return &types[i];
    return NULL;
}
