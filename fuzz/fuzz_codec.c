/*
 * fuzz_codec.c - libFuzzer target for the value codec (engine/codec.c) and
 * the Lua value walker (bindings/value.c).
 *
 * Any byte string must either validate or be refused with a reason, and
 * validated bytes must be safe to trust:
 *   - cache_reader_next walks them item by item without a failure and ends
 *     exactly at the last byte (what bindings rely on: they never check);
 *   - copying them item by item through cache_writer gives bytes that
 *     validate again, and copying those gives the same bytes (a fixpoint);
 *   - cache_lua_decode turns them into a Lua value, and cache_lua_encode of
 *     that value (key mode: sorted maps, so deterministic) gives bytes that
 *     validate, and decode + encode of those gives the same bytes again.
 * An entry envelope (engine/envelope.h, fetch's) validates when its value
 * does: the checks then run on that value, and writing the envelope again
 * from what was read gives the same bytes.
 * The same input is also read as the external form of network backends
 * (cache_external_decode): success must yield valid codec bytes, and a
 * decimal integer read by cache_parse_int must agree with strtoll.
 *
 * Build and run: `make fuzz-codec FUZZ_SECONDS=60` (see fuzz/fuzz.mk).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "codec.h"
#include "envelope.h"

#define CHECK(c)                                                            \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "fuzz_codec: check failed at line %d: %s\n",    \
                    __LINE__, #c);                                          \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* Walks validated bytes the way a binding does, copying each item into w
 * (w may be NULL). Items left to read are counted, not recursed into. */
static void walk_copy(const void *bytes, size_t len, cache_writer *w)
{
    cache_reader r;
    uint64_t left = 1;
    cache_reader_init(&r, bytes, len);
    while (left > 0) {
        cache_item it;
        CHECK(cache_reader_next(&r, &it) == 0);
        left--;
        switch (it.type) {
        case CACHE_V_NIL: if (w) cache_write_nil(w); break;
        case CACHE_V_BOOL: if (w) cache_write_bool(w, it.b); break;
        case CACHE_V_INT: if (w) cache_write_int(w, it.i); break;
        case CACHE_V_FLOAT: if (w) cache_write_float(w, it.f); break;
        case CACHE_V_STR:
            CHECK(it.s >= (const char *)bytes &&
                  it.s + it.len <= (const char *)bytes + len);
            if (w) cache_write_str(w, it.s, it.len);
            break;
        case CACHE_V_ARRAY:
            left += it.len;
            if (w) cache_write_array(w, it.len);
            break;
        case CACHE_V_MAP:
            left += 2 * (uint64_t)it.len;
            if (w) cache_write_map(w, it.len);
            break;
        }
    }
    CHECK(r.p == r.end);
}

static void check_copy(const unsigned char *p, size_t n)
{
    cache_buf a, b;
    cache_writer w;
    cache_buf_init(&a);
    cache_buf_init(&b);
    cache_writer_init(&w, &a);
    walk_copy(p, n, &w);
    CHECK(!w.failed);
    CHECK(cache_validate(a.data, a.len, NULL) == CACHE_OK);
    cache_writer_init(&w, &b);
    walk_copy(a.data, a.len, &w);
    CHECK(!w.failed);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    cache_buf_free(&a);
    cache_buf_free(&b);
}

/* ---- through Lua ----------------------------------------------------------- */

static lua_State *L;

typedef struct lua_job {
    const char *bytes;
    size_t len;
    cache_buf *out;
} lua_job;

/* decode(bytes) then encode(value) into job->out, inside a pcall. */
static int decode_encode(lua_State *Ls)
{
    lua_job *job = lua_touserdata(Ls, 1);
    cache_writer w;
    cache_lua_decode(Ls, job->bytes, job->len);
    cache_writer_init(&w, job->out);
    cache_lua_encode(Ls, -1, &w, "value", CACHE_ENC_KEY);
    CHECK(!w.failed);
    return 0;
}

static void lua_round(const char *bytes, size_t len, cache_buf *out)
{
    lua_job job = {bytes, len, out};
    lua_settop(L, 0);
    lua_pushcfunction(L, decode_encode);
    lua_pushlightuserdata(L, &job);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        fprintf(stderr, "fuzz_codec: Lua error on a validated value: %s\n",
                lua_tostring(L, -1));
        abort();
    }
}

static void check_lua(const unsigned char *p, size_t n)
{
    cache_buf a, b;
    cache_buf_init(&a);
    cache_buf_init(&b);
    lua_round((const char *)p, n, &a);
    CHECK(cache_validate(a.data, a.len, NULL) == CACHE_OK);
    lua_round(a.data, a.len, &b);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    cache_buf_free(&a);
    cache_buf_free(&b);
}

/* ---- the external form ------------------------------------------------------ */

static void check_external(const unsigned char *p, size_t n)
{
    cache_buf out;
    cache_err err = {0, ""};
    cache_buf_init(&out);
    int rc = cache_external_decode((cache_str){(const char *)p, n}, &out, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_FAIL);
    if (rc == CACHE_OK)
        CHECK(cache_validate(out.data, out.len, NULL) == CACHE_OK);
    else
        CHECK(err.msg[0] != '\0');
    cache_buf_free(&out);

    /* Leading zeros are accepted (cachelib's int() reads "007" as 7 too),
     * so compare with strtoll rather than with the printed text. */
    int64_t i;
    if (cache_parse_int((const char *)p, n, &i)) {
        char text[32], *end;
        CHECK(n < sizeof text);
        memcpy(text, p, n);
        text[n] = '\0';
        errno = 0;
        long long v = strtoll(text, &end, 10);
        CHECK(errno == 0 && end == text + n && v == i);
        CHECK(text[0] == '-' || (text[0] >= '0' && text[0] <= '9'));
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    return L ? 0 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: a read one byte past the input is then caught by
     * ASan (libFuzzer's own buffer may be larger). */
    unsigned char *p = malloc(size ? size : 1);
    CHECK(p != NULL);
    memcpy(p, data, size);

    cache_err err = {0, ""};
    int rc = cache_validate(p, size, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_FAIL);
    cache_envelope env;
    if (rc == CACHE_OK && cache_envelope_open((const char *)p, size, &env)) {
        /* its value: valid, and never an envelope itself */
        cache_envelope inner;
        CHECK(cache_validate(env.value.ptr, env.value.len, NULL) == CACHE_OK);
        CHECK(!cache_envelope_open(env.value.ptr, env.value.len, &inner));
        cache_envelope again;
        CHECK(cache_envelope_open((const char *)p, size, &again));
        cache_buf w;
        cache_buf_init(&w);
        CHECK(cache_envelope_write(&w, again.value, again.fresh_until, again.expires,
                                   again.delta) == 0);
        CHECK(w.len == size && memcmp(w.data, p, size) == 0);
        cache_buf_free(&w);
        walk_copy(again.value.ptr, again.value.len, NULL);
        check_copy((const unsigned char *)again.value.ptr, again.value.len);
        check_lua(p, size); /* the decoder unwraps it */
    } else if (rc == CACHE_OK) {
        walk_copy(p, size, NULL);
        check_copy(p, size);
        check_lua(p, size);
        int64_t i;
        if (cache_value_as_int((cache_str){(const char *)p, size}, &i)) {
            cache_buf ext;
            cache_buf_init(&ext);
            CHECK(cache_external_encode((cache_str){(const char *)p, size},
                                        &ext) == 0);
            CHECK(cache_parse_int(ext.data, ext.len, &i));
            cache_buf_free(&ext);
        }
    } else {
        CHECK(err.msg[0] != '\0');
    }
    check_external(p, size);
    free(p);
    return 0;
}
