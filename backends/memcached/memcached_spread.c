/*
 * memcached_spread.c - SpreadSASLMemcachedCache: values larger than one
 * memcached item, split over several keys, after Flask-Caching's scheme.
 *
 * Every value lives under "<key>.0", "<key>.1", ... (key_prefix in front,
 * then the key mapping of memcached.h), as in Flask-Caching. A value whose
 * stored form fits in chunksize bytes is the one item "<key>.0" in
 * MemcachedCache's form (so inc/dec are memcached's incr on "<key>.0").
 * A larger one is cut into count = ceil(len / chunksize) <= maxchunk pieces:
 *   "<key>.0"  flags MC_FLAG_SPREAD_HEAD: header + piece 0, where
 *              header = "SPR1", an 8-byte tag, count (4 bytes), total
 *              length (8 bytes), the value's own flags (4 bytes); big-endian
 *   "<key>.i"  flags MC_FLAG_SPREAD_PART: the same tag + piece i
 * The tag is random per write, so pieces of two writes racing each other
 * never join: a get that finds a piece missing, from another write, or of
 * the wrong size reads a miss, never a wrong value. Unlike Flask-Caching,
 * which reads all maxchunk keys, get reads "<key>.0" and then only the
 * pieces its header names.
 */
#define _DEFAULT_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "codec.h"
#include "memcached.h"

#define HEAD_MAGIC "SPR1"
#define TAG_LEN 8
#define HEAD_LEN (4 + TAG_LEN + 4 + 8 + 4)
#define MAXCHUNK_LIMIT 4096

typedef struct spread {
    mc_backend mc;
    size_t chunksize;
    size_t maxchunk;
} spread;

static void chunk_key(spread *s, cache_str key, size_t i, mc_key *out)
{
    char suffix[24];
    int n = snprintf(suffix, sizeof suffix, ".%zu", i);
    mc_key_make(&s->mc, key, suffix, (size_t)n, out);
}

static void put_be(char *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (char)(v & 0xff);
}

static uint64_t get_be(const char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

/* ---- writing: the items of one value ---------------------------------------------- */

typedef struct plan {
    size_t count;
    mc_key *keys; /* keys[0] is the head */
    cache_str *vals;
    uint32_t *flags;
    char *mem;
    char text[24];
} plan;

static void plan_free(plan *p)
{
    free(p->keys), free(p->vals), free(p->flags), free(p->mem);
    memset(p, 0, sizeof *p);
}

static int plan_make(spread *s, cache_str key, cache_str value, plan *p,
                     cache_err *err)
{
    memset(p, 0, sizeof *p);
    cache_str payload;
    uint32_t flags;
    mc_encode(value, p->text, &payload, &flags);
    size_t count = payload.len <= s->chunksize
                       ? 1
                       : (payload.len - 1) / s->chunksize + 1;
    if (count > s->maxchunk)
        return cache_fail(err, CACHE_FAIL,
                          "value of %zu bytes needs %zu chunks of %zu bytes, "
                          "more than maxchunk (%zu)",
                          payload.len, count, s->chunksize, s->maxchunk);
    p->count = count;
    p->keys = malloc(count * sizeof *p->keys);
    p->vals = malloc(count * sizeof *p->vals);
    p->flags = malloc(count * sizeof *p->flags);
    if (count > 1)
        p->mem = malloc(HEAD_LEN + (count - 1) * TAG_LEN + payload.len);
    if (!p->keys || !p->vals || !p->flags || (count > 1 && !p->mem)) {
        plan_free(p);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++)
        chunk_key(s, key, i, &p->keys[i]);
    if (count == 1) {
        p->vals[0] = payload;
        p->flags[0] = flags;
        return CACHE_OK;
    }
    char tag[TAG_LEN];
    cache_random_bytes(tag, TAG_LEN);
    char *w = p->mem;
    for (size_t i = 0; i < count; i++) {
        size_t off = i * s->chunksize;
        size_t len = payload.len - off < s->chunksize ? payload.len - off
                                                      : s->chunksize;
        char *start = w;
        if (i == 0) {
            memcpy(w, HEAD_MAGIC, 4);
            memcpy(w + 4, tag, TAG_LEN);
            put_be(w + 4 + TAG_LEN, count, 4);
            put_be(w + 8 + TAG_LEN, payload.len, 8);
            put_be(w + 16 + TAG_LEN, flags, 4);
            w += HEAD_LEN;
        } else {
            memcpy(w, tag, TAG_LEN);
            w += TAG_LEN;
        }
        memcpy(w, payload.ptr + off, len);
        w += len;
        p->vals[i] = (cache_str){start, (size_t)(w - start)};
        p->flags[i] = i == 0 ? MC_FLAG_SPREAD_HEAD : MC_FLAG_SPREAD_PART;
    }
    return CACHE_OK;
}

/* ---- reading --------------------------------------------------------------------------- */

/* What a head ("<key>.0" under MC_FLAG_SPREAD_HEAD) says. */
typedef struct head_info {
    char tag[TAG_LEN];
    size_t count, piece; /* pieces, and the size of all but the last */
    uint64_t total;
    uint32_t flags; /* of the whole stored value */
} head_info;

/* 1 and *h when v is a head this object could have written, else 0. The
 * count bounds what a read allocates, so a foreign or corrupt head may not
 * claim more pieces than maxchunk; every piece but the last is as long as
 * piece 0. */
static int parse_head(const char *v, size_t len, size_t maxchunk, head_info *h)
{
    if (len <= HEAD_LEN || memcmp(v, HEAD_MAGIC, 4) != 0)
        return 0;
    memcpy(h->tag, v + 4, TAG_LEN);
    h->count = (size_t)get_be(v + 4 + TAG_LEN, 4);
    h->total = get_be(v + 8 + TAG_LEN, 8);
    h->flags = (uint32_t)get_be(v + 16 + TAG_LEN, 4);
    h->piece = len - HEAD_LEN;
    return h->count >= 2 && h->count <= maxchunk &&
           h->total > (uint64_t)(h->count - 1) * h->piece &&
           h->total <= (uint64_t)h->count * h->piece;
}

/* One requested key while reading. */
typedef struct slot {
    cache_buf *out;
    int state; /* CACHE_OK, CACHE_MISS, CACHE_FAIL, or PENDING */
    head_info h;
    size_t first; /* index of its piece 1 among the requested parts */
    size_t got;   /* pieces in place */
    char *raw;
} slot;

#define PENDING 100

typedef struct read_ctx {
    slot *slots;
    size_t *owner; /* requested part -> slot */
    cache_err *err;
    size_t maxchunk; /* this object's: a head claiming more is not ours */
} read_ctx;

static int head_hit(void *ctx, size_t i, const char *v, size_t len,
                    uint32_t flags)
{
    read_ctx *r = ctx;
    slot *sl = &r->slots[i];
    if (flags != MC_FLAG_SPREAD_HEAD) {
        int rc = mc_decode(v, len, flags, sl->out, r->err);
        if (rc == CACHE_ENOMEM)
            return rc;
        return sl->state = rc;
    }
    sl->state = CACHE_MISS;
    if (!parse_head(v, len, r->maxchunk, &sl->h))
        return CACHE_MISS;
    sl->raw = malloc((size_t)sl->h.total);
    if (!sl->raw)
        return CACHE_ENOMEM;
    memcpy(sl->raw, v + HEAD_LEN, sl->h.piece);
    sl->got = 1;
    sl->state = PENDING;
    return CACHE_OK;
}

static int part_hit(void *ctx, size_t i, const char *v, size_t len,
                    uint32_t flags)
{
    read_ctx *r = ctx;
    slot *sl = &r->slots[r->owner[i]];
    if (sl->state != PENDING)
        return CACHE_MISS;
    size_t j = i - sl->first + 1; /* piece number */
    size_t off = j * sl->h.piece;
    size_t want = j + 1 < sl->h.count ? sl->h.piece : (size_t)sl->h.total - off;
    if (flags != MC_FLAG_SPREAD_PART || len != TAG_LEN + want ||
        memcmp(v, sl->h.tag, TAG_LEN) != 0) {
        sl->state = CACHE_MISS; /* another write's piece: torn */
        return CACHE_MISS;
    }
    memcpy(sl->raw + off, v + TAG_LEN, want);
    sl->got++;
    return CACHE_OK;
}

/* Reads n values: one multi-get of the heads, then one of all the pieces
 * they name. status[i] per key; outs[i] (or outs[0] for all when !per_key,
 * n == 1) receives the codec bytes. */
static int read_values(spread *s, size_t n, const cache_str *keys,
                       cache_buf *outs, int *status, cache_err *err)
{
    if (n == 0)
        return CACHE_OK;
    mc_key *heads = calloc(n ? n : 1, sizeof *heads);
    slot *slots = calloc(n ? n : 1, sizeof *slots);
    mc_key *parts = NULL;
    size_t *owner = NULL;
    int *pst = NULL;
    unsigned char *down = NULL;
    int rc;
    if (!heads || !slots) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        chunk_key(s, keys[i], 0, &heads[i]);
        slots[i].out = &outs[i];
        slots[i].state = CACHE_MISS;
    }
    read_ctx r = {slots, NULL, err, s->maxchunk};
    down = mc_down_new(&s->mc); /* the pieces skip a server the heads found down */
    if (!down) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto out;
    }
    if (n == 1) {
        status[0] = mc_get_one(&s->mc, &heads[0], head_hit, &r, err);
        rc = status[0] == CACHE_ENOMEM ? CACHE_ENOMEM : CACHE_OK;
        if (status[0] < 0)
            rc = status[0];
    } else {
        rc = mc_mget(&s->mc, n, heads, head_hit, &r, status, down, err);
    }
    if (rc < 0)
        goto out;
    size_t np = 0;
    for (size_t i = 0; i < n; i++)
        if (slots[i].state == PENDING)
            np += slots[i].h.count - 1;
    if (np > 0) {
        parts = malloc(np * sizeof *parts);
        owner = malloc(np * sizeof *owner);
        pst = malloc(np * sizeof *pst);
        if (!parts || !owner || !pst) {
            rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
            goto out;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (slots[i].state != PENDING)
                continue;
            slots[i].first = k;
            for (size_t j = 1; j < slots[i].h.count; j++, k++) {
                chunk_key(s, keys[i], j, &parts[k]);
                owner[k] = i;
            }
        }
        r.owner = owner;
        rc = mc_mget(&s->mc, np, parts, part_hit, &r, pst, down, err);
        if (rc < 0 && rc != CACHE_FAIL)
            goto out;
        for (size_t k2 = 0; k2 < np; k2++)
            if (pst[k2] == CACHE_FAIL && slots[owner[k2]].state == PENDING)
                slots[owner[k2]].state = CACHE_FAIL;
    }
    rc = CACHE_OK;
    for (size_t i = 0; i < n; i++) {
        slot *sl = &slots[i];
        if (sl->state == PENDING) {
            if (sl->got == sl->h.count) {
                int d = mc_decode(sl->raw, (size_t)sl->h.total, sl->h.flags, sl->out, err);
                if (d == CACHE_ENOMEM)
                    rc = d;
                sl->state = d == CACHE_OK ? CACHE_OK : CACHE_MISS;
            } else {
                sl->state = CACHE_MISS; /* a piece is missing: a miss */
            }
        }
        if (status[i] != CACHE_FAIL)
            status[i] = sl->state;
    }
out:
    if (slots)
        for (size_t i = 0; i < n; i++)
            free(slots[i].raw);
    free(heads), free(slots), free(parts), free(owner), free(pst), free(down);
    return rc;
}

/* ---- the vtable ------------------------------------------------------------------------- */

static int sp_get(cache_backend *base, cache_str key, cache_buf *out,
                  cache_err *err)
{
    int st;
    int rc = read_values((spread *)base, 1, &key, out, &st, err);
    return rc < 0 ? rc : st;
}

static int sp_get_many(cache_backend *base, size_t n, const cache_str *keys,
                       cache_buf *out, int *status, cache_err *err)
{
    return read_values((spread *)base, n, keys, out, status, err);
}

/* How many items a value's head names (1 for a value in one item). */
typedef struct count_ctx {
    size_t *count;
    size_t maxchunk;
} count_ctx;

static int count_hit(void *ctx, size_t i, const char *v, size_t len,
                     uint32_t flags)
{
    count_ctx *c = ctx;
    head_info h;
    c->count[i] = flags == MC_FLAG_SPREAD_HEAD && parse_head(v, len, c->maxchunk, &h)
                      ? h.count
                      : 1;
    return CACHE_OK;
}

/* Deletes n values: a multi-get of the heads (which values exist, and the
 * pieces each names), then one batch of deletes of those heads and pieces.
 * A value is deleted when its head is: no piece is read without it. A
 * piece on a server that failed in the first step is not asked for (the
 * batch waits for a server at most once); it is left to expire, as the
 * pieces beyond a smaller value's count are. status[i]: CACHE_OK deleted,
 * CACHE_MISS absent, CACHE_FAIL. */
static int delete_values(spread *s, size_t n, const cache_str *keys,
                         int *status, cache_err *err)
{
    mc_key *heads = calloc(n ? n : 1, sizeof *heads);
    size_t *count = calloc(n ? n : 1, sizeof *count);
    unsigned char *down = mc_down_new(&s->mc);
    mc_key *ks = NULL;
    size_t *head_at = NULL;
    int *gone = NULL;
    int rc;
    if (!heads || !count || !down) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        chunk_key(s, keys[i], 0, &heads[i]);
    count_ctx cc = {count, s->maxchunk};
    rc = mc_mget(&s->mc, n, heads, count_hit, &cc, status, down, err);
    if (rc < 0 || (rc = mc_first_only(n, heads, status, err)) < 0)
        goto out;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (status[i] == CACHE_OK)
            total += count[i];
    ks = malloc((total ? total : 1) * sizeof *ks);
    head_at = malloc((n ? n : 1) * sizeof *head_at);
    gone = malloc((total ? total : 1) * sizeof *gone);
    if (!ks || !head_at || !gone) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto out;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (status[i] != CACHE_OK)
            continue;
        head_at[i] = m;
        ks[m++] = heads[i];
        for (size_t j = 1; j < count[i]; j++) {
            chunk_key(s, keys[i], j, &ks[m]);
            if (!down[mc_server_of(&s->mc, &ks[m])])
                m++;
        }
    }
    rc = mc_delete_many_blind(&s->mc, m, ks, gone, down, err);
    if (rc < 0 && rc != CACHE_FAIL)
        goto out;
    rc = CACHE_OK;
    for (size_t i = 0; i < n; i++)
        if (status[i] == CACHE_OK)
            status[i] = gone[head_at[i]];
out:
    free(heads), free(count), free(down), free(ks), free(head_at), free(gone);
    return rc;
}

static int sp_del(cache_backend *base, cache_str key, cache_err *err)
{
    int st;
    int rc = delete_values((spread *)base, 1, &key, &st, err);
    return rc < 0 ? rc : st;
}

static int sp_del_many(cache_backend *base, size_t n, const cache_str *keys,
                       int *status, cache_err *err)
{
    int rc = delete_values((spread *)base, n, keys, status, err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (status[i] < 0)
            return status[i];
    return CACHE_OK;
}

static int sp_set(cache_backend *base, cache_str key, cache_str value,
                  double ttl, int only_if_absent, cache_err *err)
{
    spread *s = (spread *)base;
    time_t exp;
    if (mc_expiry(ttl, &exp)) {
        /* Born expired: as MemcachedCache, on the head; set also drops the
         * pieces of what was there. */
        mc_key head;
        chunk_key(s, key, 0, &head);
        if (only_if_absent) {
            int rc = mc_exists(&s->mc, &head, err);
            return rc == CACHE_OK ? CACHE_EXISTS : rc == CACHE_MISS ? CACHE_OK : rc;
        }
        int rc = sp_del(base, key, err);
        return rc == CACHE_MISS ? CACHE_OK : rc;
    }
    plan p;
    int rc = plan_make(s, key, value, &p, err);
    if (rc != CACHE_OK)
        return rc;
    if (p.count == 1) {
        rc = mc_store(&s->mc, &p.keys[0], p.vals[0].ptr, p.vals[0].len,
                      p.flags[0], ttl, only_if_absent, err);
    } else if (only_if_absent) {
        /* The head decides who wins; the pieces follow. */
        rc = mc_store(&s->mc, &p.keys[0], p.vals[0].ptr, p.vals[0].len,
                      p.flags[0], ttl, 1, err);
        if (rc == CACHE_OK) {
            int *st = malloc(p.count * sizeof *st);
            rc = st ? mc_store_many(&s->mc, p.count - 1, p.keys + 1, p.vals + 1,
                                    p.flags + 1, ttl, st, err)
                    : cache_fail(err, CACHE_ENOMEM, "out of memory");
            for (size_t i = 0; st && rc == CACHE_OK && i + 1 < p.count; i++)
                if (st[i] != CACHE_OK)
                    rc = st[i];
            free(st);
            if (rc != CACHE_OK)
                mc_delete(&s->mc, &p.keys[0], NULL);
        }
    } else {
        /* Pieces first, the head last (in one pipeline). */
        mc_key *ks = malloc(p.count * sizeof *ks);
        cache_str *vs = malloc(p.count * sizeof *vs);
        uint32_t *fs = malloc(p.count * sizeof *fs);
        int *st = malloc(p.count * sizeof *st);
        if (!ks || !vs || !fs || !st) {
            rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        } else {
            for (size_t i = 0; i < p.count; i++) {
                size_t from = (i + 1) % p.count;
                ks[i] = p.keys[from];
                vs[i] = p.vals[from];
                fs[i] = p.flags[from];
            }
            rc = mc_store_many(&s->mc, p.count, ks, vs, fs, ttl, st, err);
            for (size_t i = 0; rc == CACHE_OK && i < p.count; i++)
                if (st[i] != CACHE_OK)
                    rc = st[i];
        }
        free(ks), free(vs), free(fs), free(st);
    }
    plan_free(&p);
    return rc;
}

static int sp_set_many(cache_backend *base, size_t n, const cache_str *keys,
                       const cache_str *values, double ttl, int *status,
                       cache_err *err)
{
    spread *s = (spread *)base;
    time_t exp;
    if (n == 0)
        return CACHE_OK;
    if (mc_expiry(ttl, &exp)) {
        int rc = CACHE_OK;
        for (size_t i = 0; i < n; i++)
            if ((status[i] = sp_set(base, keys[i], values[i], ttl, 0, err)) < 0)
                rc = status[i];
        return rc;
    }
    plan *plans = calloc(n, sizeof *plans);
    if (!plans)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    size_t total = 0;
    int rc = CACHE_OK;
    for (size_t i = 0; i < n; i++) {
        status[i] = plan_make(s, keys[i], values[i], &plans[i], err);
        if (status[i] == CACHE_ENOMEM) {
            rc = CACHE_ENOMEM;
            goto out;
        }
        if (status[i] == CACHE_OK)
            total += plans[i].count;
    }
    mc_key *ks = malloc((total ? total : 1) * sizeof *ks);
    cache_str *vs = malloc((total ? total : 1) * sizeof *vs);
    uint32_t *fs = malloc((total ? total : 1) * sizeof *fs);
    size_t *who = malloc((total ? total : 1) * sizeof *who);
    int *st = malloc((total ? total : 1) * sizeof *st);
    if (!ks || !vs || !fs || !who || !st) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
    } else {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; status[i] == CACHE_OK && j < plans[i].count; j++, k++) {
                size_t from = (j + 1) % plans[i].count; /* head last */
                ks[k] = plans[i].keys[from];
                vs[k] = plans[i].vals[from];
                fs[k] = plans[i].flags[from];
                who[k] = i;
            }
        int src = mc_store_many(&s->mc, total, ks, vs, fs, ttl, st, err);
        if (src < 0 && src != CACHE_FAIL)
            rc = src;
        for (k = 0; k < total; k++)
            if (st[k] != CACHE_OK)
                status[who[k]] = st[k];
        for (size_t i = 0; i < n; i++)
            if (status[i] < 0 && rc == CACHE_OK)
                rc = status[i];
    }
    free(ks), free(vs), free(fs), free(who), free(st);
out:
    for (size_t i = 0; i < n; i++)
        plan_free(&plans[i]);
    free(plans);
    return rc;
}

static int sp_has(cache_backend *base, cache_str key, cache_err *err)
{
    spread *s = (spread *)base;
    mc_key head;
    chunk_key(s, key, 0, &head);
    return mc_exists(&s->mc, &head, err);
}

static int sp_clear(cache_backend *base, cache_err *err)
{
    return mc_flush(&((spread *)base)->mc, err);
}

static int sp_incr(cache_backend *base, cache_str key, int64_t delta,
                   double new_ttl, int64_t *result, cache_err *err)
{
    spread *s = (spread *)base;
    mc_key head;
    chunk_key(s, key, 0, &head);
    return mc_incr(&s->mc, &head, delta, new_ttl, result, err);
}

static void sp_destroy(cache_backend *base)
{
    spread *s = (spread *)base;
    mc_close(&s->mc);
    free(s);
}

static const cache_vtable spread_vt = {
    .name = "SpreadSASLMemcachedCache",
    .values_checked = 1, /* whole or reassembled, through mc_decode */
    .get = sp_get,
    .set = sp_set,
    .del = sp_del,
    .has = sp_has,
    .clear = sp_clear,
    .incr = sp_incr,
    .get_many = sp_get_many,
    .set_many = sp_set_many,
    .del_many = sp_del_many,
    .destroy = sp_destroy,
};

cache_backend *cache_spread_sasl_memcached_create(cache_opts *opts,
                                                  cache_err *err)
{
    spread *s = calloc(1, sizeof *s);
    if (!s) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    s->mc.base.vt = &spread_vt;
    int64_t chunksize = 1048576, maxchunk = 32;
    if (cache_opt_int(opts, "chunksize", 1, (int64_t)1 << 30, &chunksize, err) < 0 ||
        cache_opt_int(opts, "maxchunk", 1, MAXCHUNK_LIMIT, &maxchunk, err) < 0 ||
        mc_open(&s->mc, opts, 1, err) != CACHE_OK) {
        mc_close(&s->mc);
        free(s);
        return NULL;
    }
    s->chunksize = (size_t)chunksize;
    s->maxchunk = (size_t)maxchunk;
    return &s->mc.base;
}
