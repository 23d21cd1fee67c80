/*
 * tiered.c - TieredCache (see tiered.h): l1 in front of l2, with l1 copies
 * invalidated across processes by a generation counter.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "envelope.h"
#include "tiered.h"

typedef struct tiered {
    cache_backend base;
    cache_backend *l1, *l2, *ipc;
    double l1_timeout;
    double ipc_interval;
    double next_check;   /* monotonic time of the next generation check */
    int64_t generation;  /* the last one seen */
    int have_generation; /* whether generation was read or set yet */
    cache_buf scratch;
} tiered;

static const cache_vtable tiered_vt;

static const cache_str generation_key = {TIERED_GENERATION_KEY,
                                         sizeof TIERED_GENERATION_KEY - 1};

int cache_is_tiered(const cache_backend *b)
{
    return b->vt == &tiered_vt;
}

/* l1 holds nothing this process cannot trust any more. */
static void forget_l1(tiered *t)
{
    cache_err ignored = {0, ""};
    cache_clear(t->l1, &ignored);
}

/* The generation check: another process wrote since the last one, so
 * every l1 copy may be outdated. A failed read of the counter leaves l1
 * as it is (l1_timeout still bounds it) and is tried again next time. */
static void sync_generation(tiered *t)
{
    if (!t->ipc)
        return;
    double now = cache_monotonic_now();
    if (t->ipc_interval > 0 && now < t->next_check)
        return;
    cache_err err = {0, ""};
    t->scratch.len = 0;
    int rc = cache_get(t->ipc, generation_key, &t->scratch, &err);
    int64_t g = 0;
    if (rc < 0)
        return;
    if (rc == CACHE_OK && !cache_value_as_int((cache_str){t->scratch.data, t->scratch.len}, &g))
        g = 0;
    if (t->have_generation && g != t->generation)
        forget_l1(t);
    t->generation = g;
    t->have_generation = 1;
    t->next_check = now + t->ipc_interval;
}

/* After a write to l2: tells the other processes. Their writes since our
 * last look (the counter moved by more than our own step) outdate our l1
 * too. */
static void bump_generation(tiered *t)
{
    if (!t->ipc)
        return;
    cache_err err = {0, ""};
    int64_t g;
    if (cache_incr(t->ipc, generation_key, 1, 0, &g, &err) != CACHE_OK)
        return;
    if (!t->have_generation || g != t->generation + 1)
        forget_l1(t);
    t->generation = g;
    t->have_generation = 1;
    t->next_check = cache_monotonic_now() + t->ipc_interval;
}

/* The l1 lifetime of an entry stored in l2 for ttl seconds. */
static double l1_ttl(const tiered *t, double ttl)
{
    if (ttl < 0)
        return ttl;
    if (ttl == 0 || ttl > t->l1_timeout)
        return t->l1_timeout;
    return ttl;
}

void cache_tiered_promote(cache_backend *b, cache_str key, cache_str bytes)
{
    tiered *t = (tiered *)b;
    double ttl = t->l1_timeout;
    cache_envelope env;
    if (cache_envelope_open(bytes.ptr, bytes.len, &env) && env.expires > 0) {
        double left = env.expires - cache_wall_now();
        if (left <= 0)
            return;
        if (left < ttl)
            ttl = left;
    }
    cache_err ignored = {0, ""};
    cache_set(t->l1, key, bytes, ttl, &ignored);
}

void cache_tiered_tiers(cache_backend *b, cache_backend **l1,
                        cache_backend **l2)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    *l1 = t->l1;
    *l2 = t->l2;
}

/* ---- the contract ----------------------------------------------------------- */

static int t_get(cache_backend *b, cache_str key, cache_buf *out, cache_err *err)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    size_t start = out->len;
    cache_err ignored = {0, ""};
    if (cache_get(t->l1, key, out, &ignored) == CACHE_OK)
        return CACHE_OK;
    out->len = start;
    int rc = cache_get(t->l2, key, out, err);
    if (rc == CACHE_OK)
        cache_tiered_promote(b, key, (cache_str){out->data + start, out->len - start});
    return rc;
}

static int t_has(cache_backend *b, cache_str key, cache_err *err)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    cache_err ignored = {0, ""};
    if (cache_has(t->l1, key, &ignored) == CACHE_OK)
        return CACHE_OK;
    return cache_has(t->l2, key, err);
}

static int t_set(cache_backend *b, cache_str key, cache_str value, double ttl,
                 int only_if_absent, cache_err *err)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    cache_err ignored = {0, ""};
    int rc = only_if_absent ? cache_add(t->l2, key, value, ttl, err)
                            : cache_set(t->l2, key, value, ttl, err);
    if (rc != CACHE_OK) {
        /* l2 refused or failed: l1 must not keep serving another value */
        if (rc < 0)
            cache_del(t->l1, key, &ignored);
        return rc;
    }
    bump_generation(t);
    cache_set(t->l1, key, value, l1_ttl(t, ttl), &ignored);
    return CACHE_OK;
}

static int t_del(cache_backend *b, cache_str key, cache_err *err)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    cache_err ignored = {0, ""};
    int in_l1 = cache_del(t->l1, key, &ignored) == CACHE_OK;
    int rc = cache_del(t->l2, key, err);
    if (rc < 0)
        return rc;
    bump_generation(t);
    return rc == CACHE_OK || in_l1 ? CACHE_OK : CACHE_MISS;
}

static int t_clear(cache_backend *b, cache_err *err)
{
    tiered *t = (tiered *)b;
    forget_l1(t);
    int rc = cache_clear(t->l2, err);
    bump_generation(t);
    return rc;
}

static int t_incr(cache_backend *b, cache_str key, int64_t delta, double new_ttl,
                  int64_t *result, cache_err *err)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    cache_err ignored = {0, ""};
    cache_del(t->l1, key, &ignored);
    int rc = cache_incr(t->l2, key, delta, new_ttl, result, err);
    if (rc == CACHE_OK)
        bump_generation(t);
    return rc;
}

static int t_get_many(cache_backend *b, size_t n, const cache_str *keys,
                      cache_buf *out, int *status, cache_err *err)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    cache_err ignored = {0, ""};
    int *st1 = malloc((n ? n : 1) * sizeof *st1);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    cache_str *missing = malloc((n ? n : 1) * sizeof *missing);
    cache_buf *bufs = malloc((n ? n : 1) * sizeof *bufs);
    int rc = CACHE_OK;
    if (!st1 || !idx || !missing || !bufs) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        cache_buf_init(&bufs[i]);
    if (cache_get_many(t->l1, n, keys, out, st1, &ignored) != CACHE_OK)
        for (size_t i = 0; i < n; i++)
            st1[i] = CACHE_MISS;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        status[i] = st1[i] == CACHE_OK ? CACHE_OK : CACHE_MISS;
        if (st1[i] != CACHE_OK) {
            idx[m] = i;
            missing[m++] = keys[i];
        }
    }
    if (m == 0)
        goto done;
    rc = cache_get_many(t->l2, m, missing, bufs, st1, err);
    if (rc != CACHE_OK)
        goto done;
    for (size_t j = 0; j < m; j++) {
        if (st1[j] != CACHE_OK)
            continue;
        size_t i = idx[j];
        cache_str v = {bufs[j].data, bufs[j].len};
        if (cache_buf_append(&out[i], v.ptr, v.len)) {
            rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
            goto done;
        }
        status[i] = CACHE_OK;
        cache_tiered_promote(b, keys[i], v);
    }
done:
    if (bufs)
        for (size_t i = 0; i < n; i++)
            cache_buf_free(&bufs[i]);
    free(bufs);
    free(missing);
    free(idx);
    free(st1);
    return rc;
}

static int t_set_many(cache_backend *b, size_t n, const cache_str *keys,
                      const cache_str *values, double ttl, int *status,
                      cache_err *err)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    cache_err ignored = {0, ""};
    int rc = cache_set_many(t->l2, n, keys, values, ttl, status, err);
    bump_generation(t);
    for (size_t i = 0; i < n; i++) {
        if (status[i] == CACHE_OK)
            cache_set(t->l1, keys[i], values[i], l1_ttl(t, ttl), &ignored);
        else
            cache_del(t->l1, keys[i], &ignored);
    }
    return rc;
}

static int t_del_many(cache_backend *b, size_t n, const cache_str *keys,
                      int *status, cache_err *err)
{
    tiered *t = (tiered *)b;
    sync_generation(t);
    cache_err ignored = {0, ""};
    int *st1 = malloc((n ? n : 1) * sizeof *st1);
    if (!st1)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    if (cache_del_many(t->l1, n, keys, st1, &ignored) != CACHE_OK)
        for (size_t i = 0; i < n; i++)
            st1[i] = CACHE_MISS;
    int rc = cache_del_many(t->l2, n, keys, status, err);
    if (rc == CACHE_OK)
        for (size_t i = 0; i < n; i++)
            if (st1[i] == CACHE_OK)
                status[i] = CACHE_OK;
    free(st1);
    bump_generation(t);
    return rc;
}

static int t_del_if(cache_backend *b, cache_str key, cache_str value,
                    cache_err *err)
{
    tiered *t = (tiered *)b;
    cache_err ignored = {0, ""};
    cache_del(t->l1, key, &ignored);
    return cache_del_if(t->l2, key, value, err);
}

static void t_destroy(cache_backend *b)
{
    tiered *t = (tiered *)b;
    cache_close(t->l1);
    cache_close(t->l2);
    cache_close(t->ipc);
    cache_buf_free(&t->scratch);
    free(t);
}

static const cache_vtable tiered_vt = {
    .name = "TieredCache",
    .values_checked = 1, /* both tiers are read through cache_get */
    .get = t_get,
    .set = t_set,
    .del = t_del,
    .has = t_has,
    .clear = t_clear,
    .incr = t_incr,
    .get_many = t_get_many,
    .set_many = t_set_many,
    .del_many = t_del_many,
    .del_if = t_del_if,
    .destroy = t_destroy,
};

cache_backend *cache_tiered_open(cache_backend *l1, cache_backend *l2,
                                 cache_backend *ipc, double l1_timeout,
                                 double ipc_interval, cache_err *err)
{
    if (!(l1_timeout > 0) || isinf(l1_timeout)) {
        cache_fail(err, CACHE_EINVAL, "option 'l1_timeout': a positive number of seconds expected");
        return NULL;
    }
    if (!(ipc_interval >= 0) || isinf(ipc_interval)) {
        cache_fail(err, CACHE_EINVAL, "option 'ipc_interval': a number of seconds >= 0 expected");
        return NULL;
    }
    if (l1 == l2) {
        cache_fail(err, CACHE_EINVAL, "l1 and l2 must be two backends");
        return NULL;
    }
    tiered *t = calloc(1, sizeof *t);
    if (!t) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    t->base.vt = &tiered_vt;
    t->base.default_timeout = l2->default_timeout;
    t->base.refs = 1;
    t->l1 = l1;
    t->l2 = l2;
    t->ipc = ipc;
    cache_retain(l1);
    cache_retain(l2);
    if (ipc)
        cache_retain(ipc);
    t->l1_timeout = l1_timeout;
    t->ipc_interval = ipc_interval;
    cache_buf_init(&t->scratch);
    return &t->base;
}
