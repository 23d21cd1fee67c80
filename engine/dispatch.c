/*
 * dispatch.c - what bindings call: opening backends, and the cache contract
 * on top of a vtable, with the engine's generic fallbacks for what a backend
 * leaves out and the check that bytes read back are a value.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "codec.h"

int cache_opt_default_timeout(cache_opts *opts, double *out, cache_err *err)
{
    return cache_opt_num(opts, "default_timeout", -1e15, 1e15, out, err);
}

cache_backend *cache_open(const char *type, cache_opts *opts, cache_err *err)
{
    const cache_backend_type *t = cache_backend_find(type);
    if (!t) {
        cache_fail(err, CACHE_EINVAL, "unknown cache type '%s'", type);
        return NULL;
    }
    double default_timeout = 300;
    int ignore_errors = 0;
    if (cache_opt_default_timeout(opts, &default_timeout, err) < 0 ||
        cache_opt_bool(opts, "ignore_errors", &ignore_errors, err) < 0)
        return NULL;
    cache_backend *b = t->create(opts, err);
    if (!b)
        return NULL;
    b->default_timeout = default_timeout;
    b->ignore_errors = ignore_errors;
    if (cache_opts_check_unused(opts, type, err) != CACHE_OK) {
        cache_close(b);
        return NULL;
    }
    return b;
}

void cache_close(cache_backend *b)
{
    if (b)
        b->vt->destroy(b);
}

/* A hit whose bytes are not a value is reported as a miss, with the reason
 * left in err for whoever wants it (err->code stays CACHE_FAIL). */
static int checked_hit(cache_buf *out, size_t start, cache_err *err)
{
    if (cache_validate(out->data + start, out->len - start, err) == CACHE_OK)
        return CACHE_OK;
    out->len = start;
    return CACHE_MISS;
}

int cache_get(cache_backend *b, cache_str key, cache_buf *out, cache_err *err)
{
    size_t start = out->len;
    int rc = b->vt->get(b, key, out, err);
    if (rc != CACHE_OK || b->vt->values_checked)
        return rc;
    return checked_hit(out, start, err);
}

int cache_set(cache_backend *b, cache_str key, cache_str value, double ttl,
              cache_err *err)
{
    return b->vt->set(b, key, value, ttl, 0, err);
}

int cache_add(cache_backend *b, cache_str key, cache_str value, double ttl,
              cache_err *err)
{
    return b->vt->set(b, key, value, ttl, 1, err);
}

int cache_del(cache_backend *b, cache_str key, cache_err *err)
{
    return b->vt->del(b, key, err);
}

int cache_has(cache_backend *b, cache_str key, cache_err *err)
{
    return b->vt->has(b, key, err);
}

int cache_clear(cache_backend *b, cache_err *err)
{
    return b->vt->clear(b, err);
}

/* The generic increment: read, decode, add, write back. Not atomic across
 * processes; backends that can do better provide vt->incr. The vtable cannot
 * tell an entry's expiry, so the sum is written with new_ttl: a backend whose
 * entries expire provides vt->incr, or an existing entry would not keep its
 * expiry as the contract says. */
static int generic_incr(cache_backend *b, cache_str key, int64_t delta,
                        double new_ttl, int64_t *result, cache_err *err)
{
    cache_buf cur, next;
    cache_buf_init(&cur);
    cache_buf_init(&next);
    int64_t sum = 0;
    int rc = cache_get(b, key, &cur, err);
    if (rc == CACHE_OK || rc == CACHE_MISS) {
        cache_str old = {cur.data, cur.len};
        rc = cache_value_add(rc == CACHE_OK ? &old : NULL, delta, &next, &sum,
                             err);
    }
    if (rc == CACHE_OK)
        rc = b->vt->set(b, key, (cache_str){next.data, next.len}, new_ttl, 0,
                        err);
    if (rc == CACHE_OK)
        *result = sum;
    cache_buf_free(&cur);
    cache_buf_free(&next);
    return rc;
}

int cache_incr(cache_backend *b, cache_str key, int64_t delta, double new_ttl,
               int64_t *result, cache_err *err)
{
    if (b->vt->incr)
        return b->vt->incr(b, key, delta, new_ttl, result, err);
    return generic_incr(b, key, delta, new_ttl, result, err);
}

/* Every status starts as a miss, so that a batch cut short by a failure
 * leaves the keys it never reached defined. */
static void statuses_miss(size_t n, int *status)
{
    for (size_t i = 0; i < n; i++)
        status[i] = CACHE_MISS;
}

int cache_get_many(cache_backend *b, size_t n, const cache_str *keys,
                   cache_buf *out, int *status, cache_err *err)
{
    statuses_miss(n, status);
    if (b->vt->get_many && b->vt->values_checked)
        return b->vt->get_many(b, n, keys, out, status, err);
    if (b->vt->get_many) {
        /* where each output starts: on the stack for the usual few keys
         * (memoize reads one or two version keys per call) */
        size_t small[32];
        size_t *start = n <= 32 ? small : malloc(n * sizeof *start);
        if (!start)
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            start[i] = out[i].len;
        int rc = b->vt->get_many(b, n, keys, out, status, err);
        if (rc == CACHE_OK)
            for (size_t i = 0; i < n; i++)
                if (status[i] == CACHE_OK)
                    status[i] = checked_hit(&out[i], start[i], NULL);
        if (start != small)
            free(start);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        status[i] = cache_get(b, keys[i], &out[i], err);
        if (status[i] < 0)
            return status[i];
    }
    return CACHE_OK;
}

int cache_set_many(cache_backend *b, size_t n, const cache_str *keys,
                   const cache_str *values, double ttl, int *status,
                   cache_err *err)
{
    if (b->vt->set_many)
        return b->vt->set_many(b, n, keys, values, ttl, status, err);
    int rc = CACHE_OK;
    for (size_t i = 0; i < n; i++) {
        status[i] = b->vt->set(b, keys[i], values[i], ttl, 0, err);
        if (status[i] < 0)
            rc = status[i];
    }
    return rc;
}

int cache_del_many(cache_backend *b, size_t n, const cache_str *keys,
                   int *status, cache_err *err)
{
    statuses_miss(n, status);
    if (b->vt->del_many)
        return b->vt->del_many(b, n, keys, status, err);
    for (size_t i = 0; i < n; i++) {
        status[i] = b->vt->del(b, keys[i], err);
        /* As cachelib: stop at the first failure unless told to go on. */
        if (status[i] < 0 && !b->ignore_errors)
            return status[i];
    }
    return CACHE_OK;
}
