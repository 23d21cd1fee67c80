/*
 * test_dispatch.c - the engine's generic fallbacks (dispatch.c) on a stub
 * backend whose del and get fail on the key "bad": delete_many stops at the
 * first failure unless ignore_errors, and a batch cut short leaves every
 * status defined.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "codec.h"
#include "ctest.h"

typedef struct stub {
    cache_backend base;
    int deleted[8]; /* per key index, by the first letter 'a'.. */
} stub;

static int is_bad(cache_str k) { return k.len == 3 && memcmp(k.ptr, "bad", 3) == 0; }

static int stub_get(cache_backend *b, cache_str k, cache_buf *out, cache_err *e)
{
    (void)b;
    if (is_bad(k))
        return cache_fail(e, CACHE_FAIL, "stub: get failed");
    return cache_buf_append(out, "\x01", 1) ? CACHE_ENOMEM : CACHE_OK;
}

static int stub_set(cache_backend *b, cache_str k, cache_str v, double ttl,
                    int only_if_absent, cache_err *e)
{
    (void)b, (void)k, (void)v, (void)ttl, (void)only_if_absent, (void)e;
    return CACHE_OK;
}

static int stub_del(cache_backend *b, cache_str k, cache_err *e)
{
    if (is_bad(k))
        return cache_fail(e, CACHE_FAIL, "stub: delete failed");
    ((stub *)b)->deleted[k.ptr[0] - 'a'] = 1;
    return CACHE_OK;
}

static int stub_has(cache_backend *b, cache_str k, cache_err *e)
{
    (void)b, (void)k, (void)e;
    return CACHE_MISS;
}

static int stub_clear(cache_backend *b, cache_err *e)
{
    (void)b, (void)e;
    return CACHE_OK;
}
static void stub_destroy(cache_backend *b) { free(b); }

static const cache_vtable stub_vt = {
    .name = "Stub",
    .get = stub_get,
    .set = stub_set,
    .del = stub_del,
    .has = stub_has,
    .clear = stub_clear,
    .destroy = stub_destroy,
};

static stub *new_stub(int ignore_errors)
{
    stub *s = calloc(1, sizeof *s);
    s->base.vt = &stub_vt;
    s->base.ignore_errors = ignore_errors;
    return s;
}

static const cache_str keys[3] = {{"a", 1}, {"bad", 3}, {"c", 1}};

static void delete_many_stops_at_the_first_failure(void)
{
    stub *s = new_stub(0);
    int status[3] = {42, 42, 42};
    cache_err err = {0, ""};
    CHECK(cache_del_many(&s->base, 3, keys, status, &err) == CACHE_FAIL);
    CHECK(status[0] == CACHE_OK && status[1] == CACHE_FAIL);
    CHECK(status[2] == CACHE_MISS); /* never reached, yet defined */
    CHECK(s->deleted[0] && !s->deleted['c' - 'a']);
    CHECK(strstr(err.msg, "delete failed") != NULL);
    cache_close(&s->base);
}

static void delete_many_goes_on_with_ignore_errors(void)
{
    stub *s = new_stub(1);
    int status[3];
    cache_err err = {0, ""};
    CHECK(cache_del_many(&s->base, 3, keys, status, &err) == CACHE_OK);
    CHECK(status[0] == CACHE_OK && status[1] == CACHE_FAIL && status[2] == CACHE_OK);
    CHECK(s->deleted[0] && s->deleted['c' - 'a']);
    cache_close(&s->base);
}

static void get_many_cut_short_leaves_statuses_defined(void)
{
    stub *s = new_stub(0);
    cache_buf out[3];
    int status[3] = {42, 42, 42};
    for (int i = 0; i < 3; i++)
        cache_buf_init(&out[i]);
    cache_err err = {0, ""};
    CHECK(cache_get_many(&s->base, 3, keys, out, status, &err) == CACHE_FAIL);
    CHECK(status[0] == CACHE_OK && status[1] == CACHE_FAIL && status[2] == CACHE_MISS);
    for (int i = 0; i < 3; i++)
        cache_buf_free(&out[i]);
    cache_close(&s->base);
}

int main(void)
{
    RUN(delete_many_stops_at_the_first_failure);
    RUN(delete_many_goes_on_with_ignore_errors);
    RUN(get_many_cut_short_leaves_statuses_defined);
    CTEST_END();
}
