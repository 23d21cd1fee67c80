/*
 * fuzz_uwsgi.c - libFuzzer target for the uWSGI cache protocol
 * (backends/uwsgi/uwsgi_proto.c), the part that reads what a server sends.
 *
 * The input is what a server sent before closing. Checked:
 *   - uwsgi_proto_parse_reply is total (OK / MISS / FAIL with a reason) and
 *     a value lies inside the bytes given (every byte of it is touched);
 *   - uwsgi_proto_reply_need, asked after every byte the way a transport
 *     reads, never asks for less than it asked before, never fails on a
 *     prefix of bytes it later accepts, and agrees with parse_reply: once
 *     len >= need, parsing the first `need` bytes does not fail as
 *     truncated, and parsing fewer bytes than it asks for does not succeed.
 * The same bytes, cut into a cache name, a key and a value, also build a
 * request with uwsgi_proto_request; a set request is a packet with the same
 * framing as a reply, so reply_need must find it complete at exactly its
 * length, and parse_reply must locate the value bytes at its end.
 *
 * Build and run: `make fuzz-uwsgi FUZZ_SECONDS=60` (see fuzz/fuzz.mk).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uwsgi/uwsgi_proto.h"

#define CHECK(c)                                                            \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "fuzz_uwsgi: check failed at line %d: %s\n",    \
                    __LINE__, #c);                                          \
            abort();                                                        \
        }                                                                   \
    } while (0)

static void check_parse(const unsigned char *p, size_t n)
{
    cache_err err = {0, ""};
    uwsgi_reply r;
    int rc = uwsgi_proto_parse_reply(p, n, &r, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_MISS || rc == CACHE_FAIL);
    if (rc == CACHE_FAIL)
        CHECK(err.msg[0] != '\0');
    if (rc == CACHE_OK && r.has_value) {
        const unsigned char *v = (const unsigned char *)r.value;
        CHECK(v >= p && r.value_len <= n && v + r.value_len <= p + n);
        volatile unsigned char sum = 0;
        for (size_t i = 0; i < r.value_len; i++)
            sum ^= v[i];
        (void)sum;
    }
}

/* The next prefix length to try: every one up to 64 bytes, then doubling,
 * but never skipping need - 1 and need (either side of complete); n + 1 when
 * done. */
static size_t next_len(size_t len, size_t need, size_t n)
{
    size_t next = len < 64 ? len + 1 : len * 2;
    if (need > len + 1 && need - 1 < next)
        next = need - 1;
    else if (need > len && need < next)
        next = need;
    if (next > n)
        next = len == n ? n + 1 : n;
    return next;
}

/* Reads the bytes in growing prefixes, as a transport that receives them slowly
 * would, asking reply_need after each. */
static void check_need(const unsigned char *p, size_t n)
{
    size_t prev = 0, need = 0;
    for (size_t len = 0; len <= n; len = next_len(len, need, n)) {
        cache_err err = {0, ""};
        int rc = uwsgi_proto_reply_need(p, len, &need, &err);
        CHECK(rc == CACHE_OK || rc == CACHE_FAIL);
        if (rc == CACHE_FAIL) {
            CHECK(err.msg[0] != '\0');
            break;
        }
        CHECK(need >= prev);
        CHECK(need >= 4);
        prev = need;
        if (len >= need) {
            /* complete: more bytes must not change the answer */
            size_t again;
            CHECK(uwsgi_proto_reply_need(p, n, &again, NULL) == CACHE_OK);
            CHECK(again == need);
            uwsgi_reply r;
            cache_err e2 = {0, ""};
            int prc = uwsgi_proto_parse_reply(p, need, &r, &e2);
            CHECK(prc == CACHE_OK || prc == CACHE_MISS || prc == CACHE_FAIL);
            if (prc == CACHE_FAIL)
                /* (a prefix test: a status text may say "truncated") */
                CHECK(strncmp(e2.msg, "uWSGI reply: truncated", 22) != 0);
            break;
        }
        if (len > 0) {
            /* incomplete: parsing what is there cannot succeed */
            uwsgi_reply r;
            CHECK(uwsgi_proto_parse_reply(p, len, &r, NULL) == CACHE_FAIL);
        }
    }
}

/* Cuts the input into (name, key, value) by its first two bytes. */
static void check_request(const unsigned char *p, size_t n)
{
    if (n < 3)
        return;
    size_t name_len = p[0] % 64, key_len = p[1] * 16u + (p[2] & 15);
    uwsgi_cmd cmd = (uwsgi_cmd)((p[2] >> 4) % 6);
    p += 3;
    n -= 3;
    if (name_len > n)
        name_len = n;
    cache_str name = {(const char *)p, name_len};
    p += name_len;
    n -= name_len;
    if (key_len > n)
        key_len = n;
    cache_str raw_key = {(const char *)p, key_len};
    cache_str value = {(const char *)p + key_len, n - key_len};

    char digest[UWSGI_DIGEST_KEY_LEN + 1];
    cache_str key;
    CHECK(uwsgi_proto_map_key(raw_key, digest, &key) == 0);
    CHECK(key.len >= 1 && key.len <= UWSGI_KEY_MAX);

    cache_buf out;
    cache_err err = {0, ""};
    cache_buf_init(&out);
    int rc = uwsgi_proto_request(&out, cmd, name, key, value, 60, &err);
    if (rc != CACHE_OK) {
        CHECK(rc == CACHE_EINVAL && err.msg[0] != '\0');
        CHECK((cmd == UWSGI_CMD_SET || cmd == UWSGI_CMD_UPDATE) &&
              value.len == 0);
        cache_buf_free(&out);
        return;
    }
    size_t need;
    CHECK(uwsgi_proto_reply_need(out.data, out.len, &need, NULL) == CACHE_OK);
    CHECK(need == out.len);
    uwsgi_reply r;
    /* a request has no status var */
    CHECK(uwsgi_proto_parse_reply(out.data, out.len, &r, NULL) == CACHE_FAIL);
    if (cmd == UWSGI_CMD_SET || cmd == UWSGI_CMD_UPDATE)
        CHECK(memcmp(out.data + out.len - value.len, value.ptr, value.len) ==
              0);
    cache_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so a read past the end is caught by ASan. */
    unsigned char *p = malloc(size ? size : 1);
    CHECK(p != NULL);
    memcpy(p, data, size);
    check_parse(p, size);
    check_need(p, size);
    check_request(p, size);
    free(p);
    return 0;
}
