/*
 * fetch.c - fetch's backend steps (see fetch.h): reading and judging an
 * entry, storing an envelope, the lock.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "digest.h"
#include "envelope.h"
#include "fetch.h"
#include "tiered.h"

/* ---- randomness ---------------------------------------------------------- */

static uint64_t rng_state;
static pid_t rng_pid;

/* xorshift64*, seeded per process (again after a fork) from
 * cache_random_bytes: XFetch draws one number per read of a fresh entry,
 * which a system call each would make cost more than the read. */
static uint64_t rng_next(void)
{
    pid_t pid = getpid();
    if (rng_state == 0 || pid != rng_pid) {
        uint64_t seed = 0;
        cache_random_bytes(&seed, sizeof seed);
        rng_state = seed ? seed : 0x2545f4914f6cdd1dULL;
        rng_pid = pid;
    }
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

double cache_random01(void)
{
    return (double)((rng_next() >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* ---- reading ------------------------------------------------------------- */

/* The state of the entry held by bytes, at wall time now. */
static void judge(const char *bytes, size_t len, double beta, double now,
                  cache_fetch_entry *e)
{
    cache_envelope env;
    if (!cache_envelope_open(bytes, len, &env)) {
        e->state = CACHE_FETCH_FRESH; /* stored by set: fresh while stored */
        e->value = (cache_str){bytes, len};
        return;
    }
    e->value = env.value;
    if (env.expires > 0 && now >= env.expires) {
        /* kept past its end by a backend's coarser clock (memcached's
         * seconds): gone as far as fetch is concerned */
        e->state = CACHE_FETCH_MISS;
        return;
    }
    if (env.fresh_until != 0 && now >= env.fresh_until) {
        e->state = CACHE_FETCH_STALE;
        return;
    }
    e->state = CACHE_FETCH_FRESH;
    if (beta > 0 && env.delta > 0 && env.fresh_until != 0 &&
        now - env.delta * beta * log(cache_random01()) >= env.fresh_until)
        e->state = CACHE_FETCH_EARLY;
}

static int usable(const cache_fetch_entry *e)
{
    return e->state != CACHE_FETCH_MISS;
}

static int fresh(const cache_fetch_entry *e)
{
    return e->state == CACHE_FETCH_FRESH || e->state == CACHE_FETCH_EARLY;
}

static int read_tiered(cache_backend *b, cache_str key, double beta,
                       cache_buf *out, cache_fetch_entry *e, cache_err *err)
{
    cache_backend *l1, *l2;
    cache_tiered_tiers(b, &l1, &l2);
    double now = cache_wall_now();
    cache_err ignored = {0, ""};
    size_t start = out->len;
    cache_fetch_entry first = {CACHE_FETCH_MISS, 1, {NULL, 0}};
    if (cache_get(l1, key, out, &ignored) == CACHE_OK) {
        judge(out->data + start, out->len - start, beta, now, &first);
        if (fresh(&first)) {
            *e = first;
            e->level = 1;
            return CACHE_OK;
        }
    }
    /* l1 had nothing fresh: l2 may have a newer value another process
     * stored */
    size_t mid = out->len;
    int rc = cache_get(l2, key, out, err);
    if (rc < 0 && !usable(&first))
        return rc;
    cache_fetch_entry second = {CACHE_FETCH_MISS, 2, {NULL, 0}};
    if (rc == CACHE_OK)
        judge(out->data + mid, out->len - mid, beta, now, &second);
    if (fresh(&second))
        cache_tiered_promote(b, key, (cache_str){out->data + mid, out->len - mid});
    /* the value pointers stay valid: out only grew before they were set */
    if (usable(&second) || !usable(&first)) {
        *e = second;
    } else {
        *e = first;
        e->level = 1;
    }
    return CACHE_OK;
}

int cache_fetch_read(cache_backend *b, cache_str key, double beta,
                     cache_buf *out, cache_fetch_entry *e, cache_err *err)
{
    e->state = CACHE_FETCH_MISS;
    e->level = 2;
    e->value = (cache_str){NULL, 0};
    if (cache_is_tiered(b)) {
        /* the tiers count their own reads; the TieredCache counts fetch's */
        int rc = read_tiered(b, key, beta, out, e, err);
        if (rc < 0) {
            b->stats.errors++;
            return rc;
        }
        if (usable(e))
            b->stats.hits++;
        else
            b->stats.misses++;
    } else {
        size_t start = out->len;
        int rc = cache_get(b, key, out, err);
        if (rc < 0)
            return rc;
        if (rc == CACHE_OK)
            judge(out->data + start, out->len - start, beta, cache_wall_now(), e);
    }
    if (e->state == CACHE_FETCH_FRESH)
        b->stats.levels[e->level - 1]++;
    return CACHE_OK;
}

/* ---- storing ------------------------------------------------------------- */

int cache_fetch_store(cache_backend *b, cache_str key, cache_str value,
                      double timeout, double stale_timeout, double delta,
                      cache_buf *scratch, cache_err *err)
{
    if (timeout < 0)
        return CACHE_OK;
    double now = cache_wall_now();
    double ttl = timeout == 0 ? 0 : timeout + (stale_timeout > 0 ? stale_timeout : 0);
    double fresh_until = timeout == 0 ? 0 : now + timeout;
    double expires = ttl == 0 ? 0 : now + ttl;
    scratch->len = 0;
    if (cache_envelope_write(scratch, value, fresh_until, expires, delta > 0 ? delta : 0))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    return cache_set(b, key, (cache_str){scratch->data, scratch->len}, ttl, err);
}

/* ---- the lock ------------------------------------------------------------ */

#define LOCK_SUFFIX ".fetch-lock"

/* The backend every process shares: a TieredCache's l2. */
static cache_backend *shared_tier(cache_backend *b)
{
    if (cache_is_tiered(b)) {
        cache_backend *l1, *l2;
        cache_tiered_tiers(b, &l1, &l2);
        return l2;
    }
    return b;
}

/* The lock's key and its value (the token as a codec string) in buf. */
static int lock_parts(cache_str key, const char *token, cache_buf *buf,
                      cache_str *lkey, cache_str *lval, cache_err *err)
{
    buf->len = 0;
    cache_writer w;
    cache_writer_init(&w, buf);
    if (cache_buf_append(buf, key.ptr, key.len) ||
        cache_buf_append(buf, LOCK_SUFFIX, sizeof LOCK_SUFFIX - 1))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    size_t klen = buf->len;
    cache_write_str(&w, token, CACHE_FETCH_TOKEN_LEN);
    if (w.failed)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    *lkey = (cache_str){buf->data, klen};
    *lval = (cache_str){buf->data + klen, buf->len - klen};
    return CACHE_OK;
}

static void count_failure(cache_backend *b, int rc)
{
    if (rc == CACHE_FAIL || rc == CACHE_ENOMEM)
        b->stats.errors++;
}

int cache_fetch_lock(cache_backend *b, cache_str key, double ttl,
                     char token[CACHE_FETCH_TOKEN_LEN + 1], cache_err *err)
{
    unsigned char raw[CACHE_FETCH_TOKEN_LEN / 2];
    cache_random_bytes(raw, sizeof raw);
    cache_hex(raw, sizeof raw, token);
    token[CACHE_FETCH_TOKEN_LEN] = '\0';
    cache_backend *s = shared_tier(b);
    cache_buf buf;
    cache_buf_init(&buf);
    cache_str lkey, lval;
    int rc = lock_parts(key, token, &buf, &lkey, &lval, err);
    if (rc == CACHE_OK) /* bookkeeping, not an entry: not counted as a set */
        rc = s->vt->set(s, lkey, lval, ttl, 1, err);
    cache_buf_free(&buf);
    count_failure(b, rc);
    return rc;
}

int cache_fetch_unlock(cache_backend *b, cache_str key, const char *token,
                       cache_err *err)
{
    if (strlen(token) != CACHE_FETCH_TOKEN_LEN)
        return CACHE_MISS;
    cache_backend *s = shared_tier(b);
    cache_buf buf;
    cache_buf_init(&buf);
    cache_str lkey, lval;
    int rc = lock_parts(key, token, &buf, &lkey, &lval, err);
    if (rc == CACHE_OK)
        rc = cache_del_if(s, lkey, lval, err);
    cache_buf_free(&buf);
    if (s != b)
        count_failure(b, rc);
    return rc;
}

void cache_fetch_note(cache_backend *b, cache_fetch_note_kind what)
{
    cache_stats *s = &b->stats;
    switch (what) {
    case CACHE_NOTE_LEVEL1: s->levels[0]++; break;
    case CACHE_NOTE_LEVEL2: s->levels[1]++; break;
    case CACHE_NOTE_COMPUTED: s->levels[2]++; break;
    case CACHE_NOTE_STALE: s->levels[3]++; s->stale_served++; break;
    case CACHE_NOTE_RUN: s->callback_runs++; break;
    case CACHE_NOTE_RUN_FAILED: s->callback_errors++; break;
    case CACHE_NOTE_WAIT: s->lock_waits++; break;
    case CACHE_NOTE_LOCK_TIMEOUT: s->lock_timeouts++; break;
    }
}
