#define _GNU_SOURCE
/*
 * test_simple.c - SimpleCache from C: return codes, timeouts on the
 * monotonic clock, threshold eviction (expired first, then least recently
 * used), incr, the batch calls, threads sharing one cache, and figures for
 * speed and memory per entry (printed, not asserted).
 */
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "codec.h"
#include "ctest.h"

/* ---- helpers -------------------------------------------------------------- */
static cache_str K(const char *s) { return (cache_str){s, strlen(s)}; }
static cache_str S(const cache_buf *b) { return (cache_str){b->data, b->len}; }

static void nap(double seconds)
{
    struct timespec ts = {(time_t)seconds,
                          (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Opens a SimpleCache; threshold < 0: leave the option out. */
static cache_backend *open_simple(int64_t threshold)
{
    cache_opt o = {.name = "threshold", .type = CACHE_OPT_INT,
                   .i = threshold, .n = (double)threshold};
    cache_opts opts = {&o, threshold < 0 ? 0 : 1};
    cache_err err = {0};
    cache_backend *b = cache_open("SimpleCache", &opts, &err);
    if (!b)
        printf("  cache_open: %s\n", err.msg);
    return b;
}

/* Codec bytes of a string / an integer, in a static-per-call buffer pair. */
static void enc_str(cache_buf *b, const char *s)
{
    cache_writer w;
    b->len = 0;
    cache_writer_init(&w, b);
    cache_write_str(&w, s, strlen(s));
}

static void enc_int(cache_buf *b, int64_t i)
{
    cache_writer w;
    b->len = 0;
    cache_writer_init(&w, b);
    cache_write_int(&w, i);
}

static int set_str(cache_backend *c, const char *k, const char *v, double ttl)
{
    cache_buf b;
    cache_buf_init(&b);
    enc_str(&b, v);
    cache_err err = {0};
    int rc = cache_set(c, K(k), S(&b), ttl, &err);
    cache_buf_free(&b);
    return rc;
}

static int add_str(cache_backend *c, const char *k, const char *v, double ttl)
{
    cache_buf b;
    cache_buf_init(&b);
    enc_str(&b, v);
    cache_err err = {0};
    int rc = cache_add(c, K(k), S(&b), ttl, &err);
    cache_buf_free(&b);
    return rc;
}

/* 1 when key reads back as string v. */
static int get_is(cache_backend *c, const char *k, const char *v)
{
    cache_buf got, want;
    cache_buf_init(&got);
    cache_buf_init(&want);
    enc_str(&want, v);
    cache_err err = {0};
    int ok = cache_get(c, K(k), &got, &err) == CACHE_OK && got.len == want.len &&
             memcmp(got.data, want.data, got.len) == 0;
    cache_buf_free(&got);
    cache_buf_free(&want);
    return ok;
}

static int get_rc(cache_backend *c, const char *k)
{
    cache_buf got;
    cache_buf_init(&got);
    cache_err err = {0};
    int rc = cache_get(c, K(k), &got, &err);
    cache_buf_free(&got);
    return rc;
}

static int has_rc(cache_backend *c, const char *k) { return cache_has(c, K(k), NULL); }
static int del_rc(cache_backend *c, const char *k) { return cache_del(c, K(k), NULL); }

static int64_t get_int(cache_backend *c, const char *k)
{
    cache_buf got;
    cache_buf_init(&got);
    int64_t v = INT64_MIN;
    if (cache_get(c, K(k), &got, NULL) == CACHE_OK &&
        !cache_value_as_int(S(&got), &v))
        v = INT64_MIN + 1;
    cache_buf_free(&got);
    return v;
}

/* Entries present (expired ones included), found by deleting keys
 * "<prefix><0..n-1>": empties them as it counts. */
static size_t count_present(cache_backend *c, const char *prefix, int n)
{
    size_t found = 0;
    char k[64];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%s%d", prefix, i);
        found += del_rc(c, k) == CACHE_OK;
    }
    return found;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- options ---------------------------------------------------------------- */
static void options(void)
{
    cache_err err = {0};
    cache_opt o = {.name = "threshold", .type = CACHE_OPT_INT, .i = -1, .n = -1};
    cache_opts opts = {&o, 1};
    CHECK(cache_open("SimpleCache", &opts, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL);
    CHECK(strstr(err.msg, "threshold") != NULL);

    cache_opt s = {.name = "threshold", .type = CACHE_OPT_STR, .s = "10", .slen = 2};
    opts = (cache_opts){&s, 1};
    memset(&err, 0, sizeof err);
    CHECK(cache_open("SimpleCache", &opts, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL && strstr(err.msg, "threshold") != NULL);

    cache_opt u = {.name = "bogus", .type = CACHE_OPT_INT, .i = 1, .n = 1};
    opts = (cache_opts){&u, 1};
    memset(&err, 0, sizeof err);
    CHECK(cache_open("SimpleCache", &opts, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL && strstr(err.msg, "bogus") != NULL);

    /* default_timeout is the engine's */
    cache_opt d = {.name = "default_timeout", .type = CACHE_OPT_INT, .i = 7, .n = 7};
    opts = (cache_opts){&d, 1};
    cache_backend *c = cache_open("SimpleCache", &opts, &err);
    CHECK(c != NULL && c->default_timeout == 7);
    CHECK(c && strcmp(c->vt->name, "SimpleCache") == 0);
    cache_close(c);
}

/* threshold 0 and no threshold both mean 500, as cachelib. */
static void threshold_zero_means_500(void)
{
    for (int variant = 0; variant < 2; variant++) {
        cache_backend *c = open_simple(variant ? 0 : -1);
        CHECK(c != NULL);
        if (!c)
            return;
        char k[32];
        for (int i = 0; i < 600; i++) {
            snprintf(k, sizeof k, "k%d", i);
            CHECK(set_str(c, k, "v", 0) == CACHE_OK);
        }
        CHECK(count_present(c, "k", 600) == 500);
        cache_close(c);
    }
}

/* ---- every call's return codes ------------------------------------------- */
static void return_codes(void)
{
    cache_backend *c = open_simple(10);
    if (!c) { CHECK(0); return; }
    CHECK(get_rc(c, "a") == CACHE_MISS);
    CHECK(has_rc(c, "a") == CACHE_MISS);
    CHECK(del_rc(c, "a") == CACHE_MISS);
    CHECK(set_str(c, "a", "one", 0) == CACHE_OK);
    CHECK(get_is(c, "a", "one"));
    CHECK(has_rc(c, "a") == CACHE_OK);
    CHECK(set_str(c, "a", "two", 0) == CACHE_OK);
    CHECK(get_is(c, "a", "two"));
    CHECK(add_str(c, "a", "three", 0) == CACHE_EXISTS);
    CHECK(get_is(c, "a", "two"));
    CHECK(add_str(c, "b", "bee", 0) == CACHE_OK);
    CHECK(get_is(c, "b", "bee"));
    CHECK(del_rc(c, "a") == CACHE_OK);
    CHECK(del_rc(c, "a") == CACHE_MISS);
    CHECK(get_rc(c, "a") == CACHE_MISS);
    CHECK(cache_clear(c, NULL) == CACHE_OK);
    CHECK(get_rc(c, "b") == CACHE_MISS);
    CHECK(cache_clear(c, NULL) == CACHE_OK);

    /* binary keys: embedded NULs, the empty key, a long key */
    cache_buf v;
    cache_buf_init(&v);
    enc_str(&v, "bin");
    cache_str k1 = {"x\0y", 3}, k2 = {"x\0z", 3}, empty = {"", 0};
    CHECK(cache_set(c, k1, S(&v), 0, NULL) == CACHE_OK);
    CHECK(cache_has(c, k2, NULL) == CACHE_MISS);
    CHECK(cache_has(c, k1, NULL) == CACHE_OK);
    CHECK(cache_set(c, empty, S(&v), 0, NULL) == CACHE_OK);
    CHECK(cache_has(c, empty, NULL) == CACHE_OK);
    char big[5000];
    memset(big, 'k', sizeof big);
    CHECK(cache_set(c, (cache_str){big, sizeof big}, S(&v), 0, NULL) == CACHE_OK);
    CHECK(cache_has(c, (cache_str){big, sizeof big}, NULL) == CACHE_OK);
    CHECK(cache_has(c, (cache_str){big, sizeof big - 1}, NULL) == CACHE_MISS);

    /* a NaN timeout is refused */
    cache_err err = {0};
    CHECK(cache_set(c, K("n"), S(&v), 0.0 / 0.0, &err) == CACHE_EINVAL);
    cache_buf_free(&v);

    /* get appends to what out holds */
    cache_buf out;
    cache_buf_init(&out);
    cache_buf_append(&out, "xy", 2);
    CHECK(set_str(c, "s", "val", 0) == CACHE_OK);
    CHECK(c->vt->get(c, K("s"), &out, NULL) == CACHE_OK);
    CHECK(out.len > 2 && memcmp(out.data, "xy", 2) == 0);
    cache_buf_free(&out);
    cache_close(c);
}

/* ---- timeouts ------------------------------------------------------------- */
static void timeouts(void)
{
    cache_backend *c = open_simple(100);
    if (!c) { CHECK(0); return; }
    CHECK(set_str(c, "forever", "v", 0) == CACHE_OK);
    CHECK(set_str(c, "long", "v", 1000) == CACHE_OK);
    CHECK(set_str(c, "short", "v", 0.05) == CACHE_OK);
    CHECK(set_str(c, "past", "v", -1) == CACHE_OK);
    CHECK(set_str(c, "frac", "v", -0.001) == CACHE_OK);
    CHECK(get_rc(c, "past") == CACHE_MISS);
    CHECK(has_rc(c, "past") == CACHE_MISS);
    CHECK(has_rc(c, "frac") == CACHE_MISS);
    CHECK(get_is(c, "short", "v"));
    nap(0.1);
    CHECK(get_rc(c, "short") == CACHE_MISS);
    CHECK(has_rc(c, "short") == CACHE_MISS);
    CHECK(get_is(c, "forever", "v"));
    CHECK(get_is(c, "long", "v"));
    /* add replaces an expired entry */
    CHECK(add_str(c, "short", "again", 0) == CACHE_OK);
    CHECK(get_is(c, "short", "again"));
    CHECK(add_str(c, "past", "again", 0.05) == CACHE_OK);
    CHECK(get_is(c, "past", "again"));
    /* delete of an expired entry: it was present (as cachelib) */
    CHECK(del_rc(c, "frac") == CACHE_OK);
    CHECK(del_rc(c, "frac") == CACHE_MISS);
    /* set over a live entry with a negative ttl expires it */
    CHECK(set_str(c, "long", "v2", -5) == CACHE_OK);
    CHECK(get_rc(c, "long") == CACHE_MISS);
    /* a set gives the entry its new timeout, not the old one */
    CHECK(set_str(c, "t", "v", 0.05) == CACHE_OK);
    CHECK(set_str(c, "t", "v", 0) == CACHE_OK);
    nap(0.1);
    CHECK(get_is(c, "t", "v"));
    cache_close(c);
}

/* ---- eviction order --------------------------------------------------------- */
static void evicts_expired_first(void)
{
    cache_backend *c = open_simple(3);
    if (!c) { CHECK(0); return; }
    CHECK(set_str(c, "a", "v", 0) == CACHE_OK);    /* least recent */
    CHECK(set_str(c, "b", "v", 0.05) == CACHE_OK);
    CHECK(set_str(c, "c", "v", 0) == CACHE_OK);
    nap(0.1);
    CHECK(set_str(c, "d", "v", 0) == CACHE_OK);    /* b (expired) goes, not a */
    CHECK(del_rc(c, "b") == CACHE_MISS);
    CHECK(del_rc(c, "a") == CACHE_OK);
    CHECK(del_rc(c, "c") == CACHE_OK);
    CHECK(del_rc(c, "d") == CACHE_OK);

    /* an expired entry goes even when it is the most recent one */
    CHECK(set_str(c, "a", "v", 0) == CACHE_OK);
    CHECK(set_str(c, "b", "v", 0) == CACHE_OK);
    CHECK(set_str(c, "c", "v", -1) == CACHE_OK);
    CHECK(set_str(c, "d", "v", 0) == CACHE_OK);
    CHECK(del_rc(c, "c") == CACHE_MISS);
    CHECK(del_rc(c, "a") == CACHE_OK);
    CHECK(cache_clear(c, NULL) == CACHE_OK);

    /* several timeouts: the expired ones go, soonest first, before LRU */
    cache_backend *d = open_simple(4);
    if (!d) { CHECK(0); cache_close(c); return; }
    CHECK(set_str(d, "p", "v", 100) == CACHE_OK);  /* least recent, live */
    CHECK(set_str(d, "q", "v", 0.05) == CACHE_OK);
    CHECK(set_str(d, "r", "v", 0.3) == CACHE_OK);
    CHECK(set_str(d, "s", "v", 0) == CACHE_OK);
    nap(0.1);
    CHECK(set_str(d, "t", "v", 0) == CACHE_OK);    /* q goes */
    CHECK(del_rc(d, "q") == CACHE_MISS);
    CHECK(set_str(d, "u", "v", 0) == CACHE_OK);    /* nothing expired: p (LRU) */
    CHECK(del_rc(d, "p") == CACHE_MISS);
    nap(0.3);
    CHECK(set_str(d, "w", "v", 0) == CACHE_OK);    /* r expired: goes, not s */
    CHECK(del_rc(d, "r") == CACHE_MISS);
    CHECK(del_rc(d, "s") == CACHE_OK);
    CHECK(del_rc(d, "t") == CACHE_OK);
    CHECK(del_rc(d, "u") == CACHE_OK);
    CHECK(del_rc(d, "w") == CACHE_OK);
    cache_close(d);
    cache_close(c);
}

static void evicts_least_recently_used(void)
{
    cache_backend *c = open_simple(3);
    if (!c) { CHECK(0); return; }
    /* get refreshes */
    CHECK(set_str(c, "a", "v", 0) == CACHE_OK);
    CHECK(set_str(c, "b", "v", 0) == CACHE_OK);
    CHECK(set_str(c, "c", "v", 0) == CACHE_OK);
    CHECK(get_is(c, "a", "v"));                     /* order now b, c, a */
    CHECK(set_str(c, "d", "v", 0) == CACHE_OK);     /* b goes */
    CHECK(del_rc(c, "b") == CACHE_MISS);
    /* has refreshes: order c, a, d -> has(c) -> a, d, c */
    CHECK(has_rc(c, "c") == CACHE_OK);
    CHECK(set_str(c, "e", "v", 0) == CACHE_OK);     /* a goes */
    CHECK(del_rc(c, "a") == CACHE_MISS);
    /* set of an existing key refreshes and evicts nothing: d, c, e -> c, e, d */
    CHECK(set_str(c, "d", "v2", 0) == CACHE_OK);
    CHECK(set_str(c, "f", "v", 0) == CACHE_OK);     /* c goes */
    CHECK(del_rc(c, "c") == CACHE_MISS);
    /* a refused add does not refresh: e, d, f -> add(e) refused -> g evicts e */
    CHECK(add_str(c, "e", "x", 0) == CACHE_EXISTS);
    CHECK(set_str(c, "g", "v", 0) == CACHE_OK);
    CHECK(del_rc(c, "e") == CACHE_MISS);
    /* incr refreshes: d, f, g -> incr(d)... d holds a string: ENOTINT; use f */
    CHECK(del_rc(c, "f") == CACHE_OK);              /* d, g */
    int64_t r = 0;
    CHECK(cache_incr(c, K("n"), 1, 0, &r, NULL) == CACHE_OK); /* d, g, n */
    CHECK(cache_incr(c, K("d"), 1, 0, &r, NULL) == CACHE_ENOTINT);
    CHECK(cache_incr(c, K("n"), 1, 0, &r, NULL) == CACHE_OK);
    CHECK(get_is(c, "d", "v2"));                    /* g, n, d */
    CHECK(cache_incr(c, K("g"), 1, 0, &r, NULL) == CACHE_ENOTINT);
    CHECK(cache_incr(c, K("n"), 1, 0, &r, NULL) == CACHE_OK); /* g, d, n */
    CHECK(set_str(c, "h", "v", 0) == CACHE_OK);     /* g goes */
    CHECK(del_rc(c, "g") == CACHE_MISS);
    CHECK(get_int(c, "n") == 3);
    CHECK(del_rc(c, "d") == CACHE_OK && del_rc(c, "h") == CACHE_OK);
    cache_close(c);
}

/* Random operations over 1000 keys never leave more than threshold entries. */
static void count_never_exceeds_threshold(void)
{
    const int threshold = 37, keys = 1000;
    cache_backend *c = open_simple(threshold);
    if (!c) { CHECK(0); return; }
    static const double ttls[] = {0, 0.002, 100, -1, 0.5};
    srand(7);
    char k[32];
    cache_buf v;
    cache_buf_init(&v);
    for (int round = 0; round < 30; round++) {
        for (int i = 0; i < 3000; i++) {
            snprintf(k, sizeof k, "k%d", rand() % keys);
            double ttl = ttls[rand() % 5];
            int64_t r;
            switch (rand() % 6) {
            case 0: case 1:
                enc_int(&v, i);
                CHECK(cache_set(c, K(k), S(&v), ttl, NULL) == CACHE_OK);
                break;
            case 2:
                enc_int(&v, i);
                CHECK(cache_add(c, K(k), S(&v), ttl, NULL) >= 0);
                break;
            case 3: CHECK(get_rc(c, k) >= 0); break;
            case 4: CHECK(del_rc(c, k) >= 0); break;
            case 5: CHECK(cache_incr(c, K(k), 1, ttl, &r, NULL) == CACHE_OK); break;
            }
        }
        size_t n = count_present(c, "k", keys);
        CHECK(n <= (size_t)threshold);
        if (n > (size_t)threshold)
            printf("  round %d: %zu entries\n", round, n);
    }
    cache_buf_free(&v);
    cache_close(c);
}

/* ---- incr ----------------------------------------------------------------- */
static void incr_semantics(void)
{
    cache_backend *c = open_simple(100);
    if (!c) { CHECK(0); return; }
    int64_t r = 0;
    cache_err err = {0};
    CHECK(cache_incr(c, K("n"), 5, 0, &r, &err) == CACHE_OK && r == 5);
    CHECK(cache_incr(c, K("n"), -7, 0, &r, &err) == CACHE_OK && r == -2);
    CHECK(get_int(c, "n") == -2);
    /* every integer width, both ways (the encoded length changes) */
    int64_t steps[] = {100, 200, 70000, 5000000000LL, -5000070300LL, -200,
                       INT64_MAX - 3, 1};
    int64_t cur = -2;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        int64_t delta = steps[i] - cur;
        if (__builtin_sub_overflow(steps[i], cur, &delta))
            continue;
        CHECK(cache_incr(c, K("n"), delta, 0, &r, &err) == CACHE_OK);
        CHECK(r == steps[i]);
        CHECK(get_int(c, "n") == steps[i]);
        cur = steps[i];
    }
    /* overflow both ways */
    CHECK(cache_incr(c, K("big"), INT64_MAX, 0, &r, &err) == CACHE_OK);
    memset(&err, 0, sizeof err);
    CHECK(cache_incr(c, K("big"), 1, 0, &r, &err) == CACHE_ENOTINT);
    CHECK(strcmp(err.msg, "integer overflow") == 0);
    CHECK(get_int(c, "big") == INT64_MAX);
    CHECK(cache_incr(c, K("small"), INT64_MIN, 0, &r, &err) == CACHE_OK);
    CHECK(cache_incr(c, K("small"), -1, 0, &r, &err) == CACHE_ENOTINT);
    /* not an integer: a string, a float */
    CHECK(set_str(c, "s", "12", 0) == CACHE_OK);
    memset(&err, 0, sizeof err);
    CHECK(cache_incr(c, K("s"), 1, 0, &r, &err) == CACHE_ENOTINT);
    CHECK(strcmp(err.msg, "value is not an integer") == 0);
    CHECK(get_is(c, "s", "12"));
    cache_buf f;
    cache_buf_init(&f);
    cache_writer w;
    cache_writer_init(&w, &f);
    cache_write_float(&w, 1.0);
    CHECK(cache_set(c, K("f"), S(&f), 0, NULL) == CACHE_OK);
    CHECK(cache_incr(c, K("f"), 1, 0, &r, &err) == CACHE_ENOTINT);
    cache_buf_free(&f);
    /* a missing key gets new_ttl */
    CHECK(cache_incr(c, K("t"), 1, 0.05, &r, &err) == CACHE_OK && r == 1);
    nap(0.1);
    CHECK(get_rc(c, "t") == CACHE_MISS);
    /* an expired key starts again at 0 */
    CHECK(cache_incr(c, K("t"), 4, 0, &r, &err) == CACHE_OK && r == 4);
    /* an existing key keeps its expiry, whatever new_ttl says */
    cache_buf v;
    cache_buf_init(&v);
    enc_int(&v, 10);
    CHECK(cache_set(c, K("e"), S(&v), 0.15, NULL) == CACHE_OK);
    CHECK(cache_incr(c, K("e"), 1, 0, &r, &err) == CACHE_OK && r == 11);
    CHECK(cache_incr(c, K("e"), 100000, 0, &r, &err) == CACHE_OK && r == 100011);
    CHECK(get_int(c, "e") == 100011);
    nap(0.2);
    CHECK(get_rc(c, "e") == CACHE_MISS);
    /* and one that never expires keeps never expiring */
    CHECK(cache_set(c, K("p"), S(&v), 0, NULL) == CACHE_OK);
    CHECK(cache_incr(c, K("p"), 1, 0.01, &r, &err) == CACHE_OK);
    nap(0.03);
    CHECK(get_int(c, "p") == 11);
    cache_buf_free(&v);
    cache_close(c);
}

/* incr of an entry whose size changes keeps its place in the expiry order:
 * it still expires (and is evicted) when it should. */
static void incr_keeps_expiry_order(void)
{
    cache_backend *c = open_simple(3);
    if (!c) { CHECK(0); return; }
    cache_buf v;
    cache_buf_init(&v);
    enc_int(&v, 1);
    int64_t r;
    CHECK(cache_set(c, K("x"), S(&v), 0.05, NULL) == CACHE_OK);
    CHECK(cache_set(c, K("y"), S(&v), 0.05, NULL) == CACHE_OK);
    CHECK(cache_incr(c, K("x"), 1000000, 0, &r, NULL) == CACHE_OK); /* grows */
    CHECK(cache_set(c, K("z"), S(&v), 0, NULL) == CACHE_OK);
    nap(0.1);
    CHECK(cache_set(c, K("w"), S(&v), 0, NULL) == CACHE_OK); /* x goes (head) */
    CHECK(del_rc(c, "x") == CACHE_MISS);
    CHECK(cache_set(c, K("u"), S(&v), 0, NULL) == CACHE_OK); /* y goes */
    CHECK(del_rc(c, "y") == CACHE_MISS);
    CHECK(del_rc(c, "z") == CACHE_OK);
    cache_buf_free(&v);
    cache_close(c);
}

/* Many distinct timeouts whose entries are gone: the emptied groups are
 * swept, and eviction still takes the expired entry first afterwards. */
static void many_timeouts_come_and_go(void)
{
    cache_backend *c = open_simple(4);
    if (!c) { CHECK(0); return; }
    char k[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "k%d", i % 3);
        CHECK(set_str(c, k, "v", 1000 + i * 0.5) == CACHE_OK);
        if (i % 2)
            CHECK(del_rc(c, k) == CACHE_OK);
    }
    cache_close(c);
    c = open_simple(8);
    if (!c) { CHECK(0); return; }
    CHECK(set_str(c, "a", "v", 0) == CACHE_OK);
    CHECK(set_str(c, "x1", "v", 100) == CACHE_OK);
    CHECK(set_str(c, "x2", "v", 200) == CACHE_OK);
    CHECK(set_str(c, "x3", "v", 300) == CACHE_OK);
    for (int i = 0; i < 200; i++) { /* groups emptied, swept beside live ones */
        CHECK(set_str(c, "tmp", "v", 50 + i) == CACHE_OK);
        CHECK(del_rc(c, "tmp") == CACHE_OK);
    }
    CHECK(get_is(c, "a", "v") && get_is(c, "x1", "v"));
    CHECK(get_is(c, "x2", "v") && get_is(c, "x3", "v"));
    CHECK(set_str(c, "b", "v", 0.05) == CACHE_OK);
    CHECK(set_str(c, "c", "v", 7) == CACHE_OK);
    CHECK(set_str(c, "d", "v", 0.01) == CACHE_OK);
    CHECK(set_str(c, "e", "v", 0) == CACHE_OK);   /* full now */
    nap(0.1);
    CHECK(set_str(c, "f", "v", 0) == CACHE_OK);   /* d or b: both expired */
    CHECK(set_str(c, "g", "v", 0) == CACHE_OK);   /* the other one */
    CHECK(set_str(c, "h", "v", 0) == CACHE_OK);   /* then a, the LRU */
    CHECK(del_rc(c, "b") == CACHE_MISS);
    CHECK(del_rc(c, "d") == CACHE_MISS);
    CHECK(del_rc(c, "a") == CACHE_MISS);
    CHECK(del_rc(c, "c") == CACHE_OK);
    cache_close(c);
}

/* ---- batch calls ------------------------------------------------------------ */
static void batches(void)
{
    cache_backend *c = open_simple(100);
    if (!c) { CHECK(0); return; }
    cache_buf a, b;
    cache_buf_init(&a);
    cache_buf_init(&b);
    enc_str(&a, "A");
    enc_int(&b, 2);
    cache_str keys[3] = {K("a"), K("b"), K("c")};
    cache_str vals[2] = {S(&a), S(&b)};
    int st[3] = {9, 9, 9};
    CHECK(cache_set_many(c, 2, keys, vals, 0, st, NULL) == CACHE_OK);
    CHECK(st[0] == CACHE_OK && st[1] == CACHE_OK);
    cache_buf out[3];
    for (int i = 0; i < 3; i++)
        cache_buf_init(&out[i]);
    CHECK(cache_get_many(c, 3, keys, out, st, NULL) == CACHE_OK);
    CHECK(st[0] == CACHE_OK && st[1] == CACHE_OK && st[2] == CACHE_MISS);
    CHECK(out[0].len == a.len && memcmp(out[0].data, a.data, a.len) == 0);
    CHECK(out[1].len == b.len && memcmp(out[1].data, b.data, b.len) == 0);
    CHECK(out[2].len == 0);
    CHECK(cache_del_many(c, 3, keys, st, NULL) == CACHE_OK);
    CHECK(st[0] == CACHE_OK && st[1] == CACHE_OK && st[2] == CACHE_MISS);
    CHECK(get_rc(c, "a") == CACHE_MISS);
    /* set_many with a negative ttl: stored, already expired */
    CHECK(cache_set_many(c, 2, keys, vals, -1, st, NULL) == CACHE_OK);
    CHECK(has_rc(c, "a") == CACHE_MISS && del_rc(c, "a") == CACHE_OK);
    for (int i = 0; i < 3; i++)
        cache_buf_free(&out[i]);
    cache_buf_free(&a);
    cache_buf_free(&b);
    cache_close(c);
}

/* ---- scale ---------------------------------------------------------------- */
static double phase(cache_backend *c, const char *what, int from, int n,
                    double ttl_spread)
{
    char k[32];
    cache_buf v;
    cache_buf_init(&v);
    enc_str(&v, "some value of modest size");
    double t0 = now_s();
    for (int i = from; i < from + n; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        double ttl = ttl_spread > 0 ? 100 + (i % (int)ttl_spread) : 0;
        if (cache_set(c, K(k), S(&v), ttl, NULL) != CACHE_OK) {
            CHECK(0);
            break;
        }
    }
    double per = (now_s() - t0) / n * 1e9;
    printf("  %-44s %7.0f ns/op\n", what, per);
    cache_buf_free(&v);
    return per;
}

/* CPU seconds of this process: steadier than the wall clock on a shared
 * machine. */
static double cpu_s(void)
{
    return (double)clock() / CLOCKS_PER_SEC;
}

/* Mean CPU ns of a set that evicts, in a cache kept full at threshold. */
static double evicting_set_ns(int threshold, double ttl_spread)
{
    cache_backend *c = open_simple(threshold);
    if (!c)
        return -1;
    char k[32];
    cache_buf v;
    cache_buf_init(&v);
    enc_str(&v, "v");
    int n = 100000;
    double t0 = 0;
    for (int i = 0; i < threshold + n; i++) {
        if (i == threshold)
            t0 = cpu_s(); /* full from here: each new key evicts */
        snprintf(k, sizeof k, "key:%d", i);
        double ttl = ttl_spread > 0 ? 100 + (i % (int)ttl_spread) : 0;
        cache_set(c, K(k), S(&v), ttl, NULL);
    }
    double per = (cpu_s() - t0) / n * 1e9;
    cache_buf_free(&v);
    cache_close(c);
    return per;
}

/* The promise of O(1) amortised eviction: a set that evicts costs about the
 * same in a cache 100 times larger (a sort or scan per set, as cachelib does,
 * would cost ~100 times more; 8 leaves room for cache misses and load). */
static void eviction_cost_does_not_grow_with_size(void)
{
    for (int spread = 0; spread <= 100; spread += 100) {
        double small = evicting_set_ns(1000, spread);
        double large = evicting_set_ns(100000, spread);
        printf("  evicting set, %s: %.0f ns at 1k, %.0f ns at 100k entries\n",
               spread ? "100 ttls" : "no ttl", small, large);
        CHECK(small > 0 && large > 0);
        CHECK(large < 8 * small);
    }
}

static void hundred_thousand_entries(void)
{
    cache_backend *c = open_simple(100000);
    if (!c) { CHECK(0); return; }
    phase(c, "100k new keys into threshold 100000", 0, 100000, 0);
    phase(c, "100k more new keys, each evicting (LRU)", 100000, 100000, 0);
    double t0 = now_s();
    int hits = 0;
    char k[32];
    for (int i = 100000; i < 200000; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        hits += has_rc(c, k) == CACHE_OK;
    }
    printf("  %-44s %7.0f ns/op\n", "100k has", (now_s() - t0) / 1e5 * 1e9);
    CHECK(hits == 100000);
    CHECK(count_present(c, "key:", 100000) == 0); /* the first 100k are gone */
    cache_close(c);

    c = open_simple(100000);
    if (!c) { CHECK(0); return; }
    phase(c, "100k keys, 3 ttls, threshold 100000", 0, 100000, 3);
    phase(c, "100k more, 3 ttls, evicting", 100000, 100000, 3);
    cache_close(c);
    c = open_simple(100000);
    if (!c) { CHECK(0); return; }
    phase(c, "100k keys, 1000 distinct ttls", 0, 100000, 1000);
    phase(c, "100k more, 1000 ttls, evicting", 100000, 100000, 1000);
    cache_close(c);

    /* all expired: every eviction takes an expired entry */
    c = open_simple(100000);
    if (!c) { CHECK(0); return; }
    cache_buf v;
    cache_buf_init(&v);
    enc_str(&v, "x");
    for (int i = 0; i < 100000; i++) {
        snprintf(k, sizeof k, "old:%d", i);
        CHECK(cache_set(c, K(k), S(&v), -1, NULL) == CACHE_OK);
    }
    phase(c, "100k new keys over 100k expired", 0, 100000, 0);
    CHECK(count_present(c, "old:", 100000) == 0);
    CHECK(count_present(c, "key:", 100000) == 100000);
    cache_buf_free(&v);
    cache_close(c);
}

/* Heap bytes per entry (glibc mallinfo2, so table and malloc overhead are
 * in), beside the target 1.5 * (key + value) + 64. */
static void memory_per_entry(void)
{
    static const size_t sizes[][2] = {{8, 8}, {16, 48}, {32, 100}, {40, 1000}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t klen = sizes[s][0], vlen = sizes[s][1];
        const int n = 100000;
        char *val = malloc(vlen);
        memset(val, 'v', vlen);
        struct mallinfo2 before = mallinfo2();
        cache_backend *c = open_simple(n);
        if (!c) { CHECK(0); free(val); return; }
        char k[64];
        for (int i = 0; i < n; i++) {
            snprintf(k, sizeof k, "%0*d", (int)klen, i);
            CHECK(cache_set(c, (cache_str){k, klen}, (cache_str){val, vlen},
                            300, NULL) == CACHE_OK);
        }
        struct mallinfo2 after = mallinfo2();
        double per = (double)(after.uordblks - before.uordblks) / n;
        printf("  key %3zu + value %4zu: %6.1f bytes/entry (target %.0f)\n",
               klen, vlen, per, 1.5 * (double)(klen + vlen) + 64);
        cache_close(c);
        free(val);
    }
}

/* ---- threads ------------------------------------------------------------- */
#define NTHREADS 4
#define OPS 50000
#define UNIVERSE 200

typedef struct worker {
    cache_backend *c;
    unsigned seed;
    int incrs;      /* incr calls on the shared counter */
    int bad;        /* a hit that did not decode, an unexpected code */
} worker;

static void *work(void *arg)
{
    worker *wk = arg;
    char k[32];
    cache_buf v, out;
    cache_buf_init(&v);
    cache_buf_init(&out);
    for (int i = 0; i < OPS; i++) {
        unsigned r = (unsigned)rand_r(&wk->seed);
        snprintf(k, sizeof k, "k%u", r % UNIVERSE);
        int64_t res;
        int rc;
        switch ((r >> 10) % 8) {
        case 0:
            enc_int(&v, i);
            rc = cache_set(wk->c, K(k), S(&v), (r >> 14) % 3 ? 0 : 0.001, NULL);
            wk->bad += rc != CACHE_OK;
            break;
        case 1:
            enc_str(&v, "text");
            rc = cache_add(wk->c, K(k), S(&v), 0, NULL);
            wk->bad += rc != CACHE_OK && rc != CACHE_EXISTS;
            break;
        case 2:
            out.len = 0;
            rc = cache_get(wk->c, K(k), &out, NULL);
            wk->bad += rc != CACHE_OK && rc != CACHE_MISS;
            if (rc == CACHE_OK)
                wk->bad += cache_validate(out.data, out.len, NULL) != CACHE_OK;
            break;
        case 3:
            rc = cache_del(wk->c, K(k), NULL);
            wk->bad += rc != CACHE_OK && rc != CACHE_MISS;
            break;
        case 4:
            rc = cache_has(wk->c, K(k), NULL);
            wk->bad += rc != CACHE_OK && rc != CACHE_MISS;
            break;
        case 5:
            rc = cache_incr(wk->c, K(k), 1, 0, &res, NULL);
            wk->bad += rc != CACHE_OK && rc != CACHE_ENOTINT;
            break;
        default:
            rc = cache_incr(wk->c, K("counter"), 1, 0, &res, NULL);
            wk->bad += rc != CACHE_OK;
            wk->incrs += rc == CACHE_OK;
            break;
        }
    }
    cache_buf_free(&v);
    cache_buf_free(&out);
    return NULL;
}

static void run_workers(cache_backend *c, worker *wk)
{
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        wk[i] = (worker){c, (unsigned)(i * 7919 + 1), 0, 0};
        CHECK(pthread_create(&t[i], NULL, work, &wk[i]) == 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
}

static void threads_share_one_cache(void)
{
    /* room for everything: the shared counter must count every incr */
    cache_backend *c = open_simple(1000);
    if (!c) { CHECK(0); return; }
    worker wk[NTHREADS];
    double t0 = now_s();
    run_workers(c, wk);
    printf("  %d threads x %d mixed ops: %.3f s\n", NTHREADS, OPS, now_s() - t0);
    int total = 0, bad = 0;
    for (int i = 0; i < NTHREADS; i++) {
        total += wk[i].incrs;
        bad += wk[i].bad;
    }
    CHECK(bad == 0);
    CHECK(get_int(c, "counter") == total);
    CHECK(total > NTHREADS * OPS / 8);
    /* every live entry still reads back as a value */
    char k[32];
    cache_buf out;
    cache_buf_init(&out);
    for (int i = 0; i < UNIVERSE; i++) {
        snprintf(k, sizeof k, "k%d", i);
        out.len = 0;
        int rc = cache_get(c, K(k), &out, NULL);
        CHECK(rc == CACHE_OK || rc == CACHE_MISS);
    }
    cache_buf_free(&out);
    CHECK(count_present(c, "k", UNIVERSE) <= UNIVERSE);
    CHECK(del_rc(c, "counter") == CACHE_OK);
    CHECK(count_present(c, "k", UNIVERSE) == 0);
    cache_close(c);

    /* a small threshold: evictions race with everything else */
    c = open_simple(50);
    if (!c) { CHECK(0); return; }
    run_workers(c, wk);
    bad = 0;
    for (int i = 0; i < NTHREADS; i++)
        bad += wk[i].bad;
    CHECK(bad == 0);
    size_t n = count_present(c, "k", UNIVERSE) + (del_rc(c, "counter") == CACHE_OK);
    CHECK(n <= 50);
    cache_close(c);
}

int main(void)
{
    RUN(options);
    RUN(threshold_zero_means_500);
    RUN(return_codes);
    RUN(timeouts);
    RUN(evicts_expired_first);
    RUN(evicts_least_recently_used);
    RUN(count_never_exceeds_threshold);
    RUN(incr_semantics);
    RUN(incr_keeps_expiry_order);
    RUN(many_timeouts_come_and_go);
    RUN(batches);
    RUN(hundred_thousand_entries);
    RUN(eviction_cost_does_not_grow_with_size);
    RUN(memory_per_entry);
    RUN(threads_share_one_cache);
    CTEST_END();
}
