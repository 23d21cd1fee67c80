/*
 * null.c - NullCache: stores nothing. Every write succeeds and every read
 * misses, as cachelib's NullCache, so a program can switch caching off
 * without changing a line.
 */
#include <stdlib.h>

#include "cache.h"

static int null_get(cache_backend *b, cache_str k, cache_buf *out, cache_err *e)
{
    return CACHE_MISS;
}

static int null_set(cache_backend *b, cache_str k, cache_str v, double ttl,
                    int only_if_absent, cache_err *e)
{
    return CACHE_OK;
}

/* cachelib answers True for a delete on NullCache; the Lua contract says a
 * delete reports whether a key existed, and nothing ever exists here. */
static int null_del(cache_backend *b, cache_str k, cache_err *e)
{
    return CACHE_MISS;
}

static int null_has(cache_backend *b, cache_str k, cache_err *e)
{
    return CACHE_MISS;
}

static int null_clear(cache_backend *b, cache_err *e)
{
    return CACHE_OK;
}

/* inc returns delta (0 + delta, as cachelib) and stores nothing. */
static int null_incr(cache_backend *b, cache_str k, int64_t delta,
                     double new_ttl, int64_t *result, cache_err *e)
{
    *result = delta;
    return CACHE_OK;
}

static void null_destroy(cache_backend *b)
{
    free(b);
}

static const cache_vtable null_vt = {
    .name = "NullCache",
    .get = null_get,
    .set = null_set,
    .del = null_del,
    .has = null_has,
    .clear = null_clear,
    .incr = null_incr,
    .destroy = null_destroy,
};

cache_backend *cache_null_create(cache_opts *opts, cache_err *err)
{
    cache_backend *b = calloc(1, sizeof *b);
    if (!b) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    b->vt = &null_vt;
    return b;
}
