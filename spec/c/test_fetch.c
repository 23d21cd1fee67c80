/*
 * test_fetch.c - fetch's engine parts without Lua: the envelope (layout,
 * validation, corruption), cache_fetch_read's judgement (fresh, stale,
 * early, expired, plain values), the store, the lock and its release, the
 * counters, and TieredCache's promotion and invalidation, on SimpleCache.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "codec.h"
#include "ctest.h"
#include "envelope.h"
#include "fetch.h"
#include "tiered.h"

static cache_backend *simple(void)
{
    cache_opts none = {NULL, 0};
    cache_err err = {0, ""};
    return cache_open("SimpleCache", &none, &err);
}

static cache_str S(const char *s) { return (cache_str){s, strlen(s)}; }

/* The codec bytes of a string value. */
static cache_str text(cache_buf *b, const char *s)
{
    cache_writer w;
    b->len = 0;
    cache_writer_init(&w, b);
    cache_write_str(&w, s, strlen(s));
    return (cache_str){b->data, b->len};
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void test_envelope_layout(void)
{
    cache_buf v, e;
    cache_buf_init(&v);
    cache_buf_init(&e);
    cache_str value = text(&v, "hello");
    CHECK(cache_envelope_write(&e, value, 1000.5, 2000.25, 0.125) == 0);
    CHECK(e.len == CACHE_ENVELOPE_HEAD + value.len);
    CHECK((unsigned char)e.data[0] == 0xc9 && e.data[5] == CACHE_ENVELOPE_EXT);
    cache_envelope env;
    CHECK(cache_envelope_open(e.data, e.len, &env) == 1);
    CHECK(env.fresh_until == 1000.5 && env.expires == 2000.25 && env.delta == 0.125);
    CHECK(env.value.len == value.len && memcmp(env.value.ptr, value.ptr, value.len) == 0);
    cache_err err = {0, ""};
    CHECK(cache_validate(e.data, e.len, &err) == CACHE_OK);
    /* a plain value is no envelope */
    CHECK(cache_envelope_open(value.ptr, value.len, &env) == 0);
    /* truncated, lengths that disagree, a nested envelope, NaN times: corrupt */
    CHECK(cache_validate(e.data, e.len - 1, &err) == CACHE_FAIL);
    cache_buf n;
    cache_buf_init(&n);
    CHECK(cache_envelope_write(&n, (cache_str){e.data, e.len}, 1, 2, 3) == 0);
    CHECK(cache_validate(n.data, n.len, &err) == CACHE_FAIL);
    n.len = 0;
    CHECK(cache_envelope_write(&n, value, NAN, 2, 3) == 0);
    CHECK(cache_validate(n.data, n.len, &err) == CACHE_FAIL);
    /* not at the top: an ext inside a table stays corrupt */
    n.len = 0;
    cache_writer w;
    cache_writer_init(&w, &n);
    cache_write_array(&w, 1);
    cache_buf_append(&n, e.data, e.len);
    CHECK(cache_validate(n.data, n.len, &err) == CACHE_FAIL);
    cache_buf_free(&n);
    cache_buf_free(&v);
    cache_buf_free(&e);
}

static void test_read_states(void)
{
    cache_backend *b = simple();
    cache_buf v, scratch, out;
    cache_buf_init(&v);
    cache_buf_init(&scratch);
    cache_buf_init(&out);
    cache_err err = {0, ""};
    cache_fetch_entry e;

    CHECK(cache_fetch_read(b, S("k"), 0, &out, &e, &err) == CACHE_OK);
    CHECK(e.state == CACHE_FETCH_MISS);
    CHECK(b->stats.misses == 1 && b->stats.hits == 0);

    CHECK(cache_fetch_store(b, S("k"), text(&v, "x"), 0.2, 10, 0.01, &scratch, &err) == CACHE_OK);
    CHECK(b->stats.sets == 1);
    out.len = 0;
    CHECK(cache_fetch_read(b, S("k"), 0, &out, &e, &err) == CACHE_OK);
    CHECK(e.state == CACHE_FETCH_FRESH && e.level == 2);
    CHECK(e.value.len == v.len && memcmp(e.value.ptr, v.data, v.len) == 0);
    CHECK(b->stats.levels[1] == 1);

    /* a huge beta: every read of a fresh entry draws an early refresh */
    out.len = 0;
    CHECK(cache_fetch_read(b, S("k"), 1e9, &out, &e, &err) == CACHE_OK);
    CHECK(e.state == CACHE_FETCH_EARLY);

    sleep_s(0.25);
    out.len = 0;
    CHECK(cache_fetch_read(b, S("k"), 0, &out, &e, &err) == CACHE_OK);
    CHECK(e.state == CACHE_FETCH_STALE);

    /* a value set without fetch is fresh while stored */
    CHECK(cache_set(b, S("plain"), text(&v, "p"), 0, &err) == CACHE_OK);
    out.len = 0;
    CHECK(cache_fetch_read(b, S("plain"), 1e9, &out, &e, &err) == CACHE_OK);
    CHECK(e.state == CACHE_FETCH_FRESH);

    /* a negative timeout stores nothing */
    CHECK(cache_fetch_store(b, S("neg"), text(&v, "n"), -1, 0, 0, &scratch, &err) == CACHE_OK);
    CHECK(cache_has(b, S("neg"), &err) == CACHE_MISS);

    /* an envelope whose end has passed is a miss, even if still stored */
    scratch.len = 0;
    CHECK(cache_envelope_write(&scratch, text(&v, "old"), 1, 2, 0) == 0);
    CHECK(cache_set(b, S("ended"), (cache_str){scratch.data, scratch.len}, 0, &err) == CACHE_OK);
    out.len = 0;
    CHECK(cache_fetch_read(b, S("ended"), 0, &out, &e, &err) == CACHE_OK);
    CHECK(e.state == CACHE_FETCH_MISS);

    cache_buf_free(&v);
    cache_buf_free(&scratch);
    cache_buf_free(&out);
    cache_close(b);
}

static void test_lock(void)
{
    cache_backend *b = simple();
    cache_err err = {0, ""};
    char t1[CACHE_FETCH_TOKEN_LEN + 1], t2[CACHE_FETCH_TOKEN_LEN + 1];
    CHECK(cache_fetch_lock(b, S("k"), 30, t1, &err) == CACHE_OK);
    CHECK(strlen(t1) == CACHE_FETCH_TOKEN_LEN);
    CHECK(cache_fetch_lock(b, S("k"), 30, t2, &err) == CACHE_EXISTS);
    CHECK(strcmp(t1, t2) != 0);
    /* only the owner releases it */
    CHECK(cache_fetch_unlock(b, S("k"), t2, &err) == CACHE_MISS);
    CHECK(cache_has(b, S("k.fetch-lock"), &err) == CACHE_OK);
    CHECK(cache_fetch_unlock(b, S("k"), t1, &err) == CACHE_OK);
    CHECK(cache_has(b, S("k.fetch-lock"), &err) == CACHE_MISS);
    /* a lock expires after its ttl and is taken over */
    CHECK(cache_fetch_lock(b, S("e"), 0.1, t1, &err) == CACHE_OK);
    sleep_s(0.15);
    CHECK(cache_fetch_lock(b, S("e"), 30, t2, &err) == CACHE_OK);
    CHECK(cache_fetch_unlock(b, S("e"), t1, &err) == CACHE_MISS); /* not the dead owner's */
    CHECK(cache_fetch_unlock(b, S("e"), t2, &err) == CACHE_OK);
    /* locks are not counted as entries */
    CHECK(b->stats.sets == 0 && b->stats.deletes == 0);
    cache_close(b);
}

static void test_notes(void)
{
    cache_backend *b = simple();
    cache_fetch_note(b, CACHE_NOTE_COMPUTED);
    cache_fetch_note(b, CACHE_NOTE_STALE);
    cache_fetch_note(b, CACHE_NOTE_RUN);
    cache_fetch_note(b, CACHE_NOTE_RUN_FAILED);
    cache_fetch_note(b, CACHE_NOTE_WAIT);
    cache_fetch_note(b, CACHE_NOTE_LOCK_TIMEOUT);
    CHECK(b->stats.levels[2] == 1 && b->stats.levels[3] == 1 && b->stats.stale_served == 1);
    CHECK(b->stats.callback_runs == 1 && b->stats.callback_errors == 1);
    CHECK(b->stats.lock_waits == 1 && b->stats.lock_timeouts == 1);
    for (int i = 0; i < 1000; i++) {
        double r = cache_random01();
        if (!(r > 0 && r <= 1)) {
            CHECK(r > 0 && r <= 1);
            break;
        }
    }
    cache_close(b);
}

static void test_tiered(void)
{
    cache_backend *l2 = simple();
    cache_backend *a1 = simple(), *b1 = simple();
    cache_err err = {0, ""};
    cache_backend *a = cache_tiered_open(a1, l2, l2, 5, 0, &err);
    cache_backend *b = cache_tiered_open(b1, l2, l2, 5, 0, &err);
    CHECK(a && b && cache_is_tiered(a) && !cache_is_tiered(l2));
    /* the tiered objects own their tiers now */
    cache_close(a1);
    cache_close(b1);
    cache_buf v, out, scratch;
    cache_buf_init(&v);
    cache_buf_init(&out);
    cache_buf_init(&scratch);
    cache_fetch_entry e;
    CHECK(cache_fetch_store(a, S("k"), text(&v, "one"), 10, 0, 0, &scratch, &err) == CACHE_OK);
    CHECK(cache_fetch_read(a, S("k"), 0, &out, &e, &err) == CACHE_OK);
    CHECK(e.state == CACHE_FETCH_FRESH && e.level == 1);
    out.len = 0;
    CHECK(cache_fetch_read(b, S("k"), 0, &out, &e, &err) == CACHE_OK);
    CHECK(e.state == CACHE_FETCH_FRESH && e.level == 2); /* from l2, promoted */
    out.len = 0;
    CHECK(cache_fetch_read(b, S("k"), 0, &out, &e, &err) == CACHE_OK);
    CHECK(e.level == 1);
    /* a delete through a reaches b's l1 through the generation */
    CHECK(cache_del(a, S("k"), &err) == CACHE_OK);
    out.len = 0;
    CHECK(cache_get(b, S("k"), &out, &err) == CACHE_MISS);
    /* the lock goes to l2 */
    char t[CACHE_FETCH_TOKEN_LEN + 1];
    CHECK(cache_fetch_lock(a, S("k"), 30, t, &err) == CACHE_OK);
    CHECK(cache_has(l2, S("k.fetch-lock"), &err) == CACHE_OK);
    CHECK(cache_fetch_unlock(b, S("k"), t, &err) == CACHE_OK);
    CHECK(a->stats.hits == 1 && a->stats.levels[0] == 1);
    cache_buf_free(&v);
    cache_buf_free(&out);
    cache_buf_free(&scratch);
    cache_close(a);
    cache_close(b);
    cache_close(l2);
}

int main(void)
{
    RUN(test_envelope_layout);
    RUN(test_read_states);
    RUN(test_lock);
    RUN(test_notes);
    RUN(test_tiered);
    CTEST_END();
}
