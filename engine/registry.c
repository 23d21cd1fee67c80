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

static cache_backend_type types[] = {
    {"NullCache", NULL},
    {"SimpleCache", NULL},
    {"FileSystemCache", NULL},
    {"RedisCache", NULL},
    {"RedisSentinelCache", NULL},
    {"RedisClusterCache", NULL},
    {"MemcachedCache", NULL},
    {"SASLMemcachedCache", NULL},
    {"SpreadSASLMemcachedCache", NULL},
    {"UWSGICache", NULL},
};

#define NTYPES (sizeof types / sizeof types[0])

static const cache_backend_type *type_list[NTYPES + 1];

static void fill(void)
{
    /* Assigned at run time: a weak symbol's address is not a constant. */
    cache_backend_ctor ctors[NTYPES] = {
        cache_null_create,          cache_simple_create,
        cache_filesystem_create,    cache_redis_create,
        cache_redis_sentinel_create, cache_redis_cluster_create,
        cache_memcached_create,     cache_sasl_memcached_create,
        cache_spread_sasl_memcached_create, cache_uwsgi_create,
    };
    for (size_t i = 0; i < NTYPES; i++) {
        types[i].create = ctors[i];
        type_list[i] = &types[i];
    }
    type_list[NTYPES] = NULL;
}

const cache_backend_type *const *cache_backend_types(void)
{
    fill();
    return type_list;
}

const cache_backend_type *cache_backend_find(const char *name)
{
    fill();
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(types[i].name, name) == 0)
            return &types[i];
    return NULL;
}
