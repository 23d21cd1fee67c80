#define _POSIX_C_SOURCE 200809L
/*
 * test_codec.c - the engine codec from C: standard MessagePack out (checked
 * with msgpack-c's own unpacker), total decoding in, and the external form.
 */
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"
#include "ctest.h"
#include "digest.h"

static cache_str S(const cache_buf *b) { return (cache_str){b->data, b->len}; }

static void encodes_what_msgpack_c_reads(void)
{
    cache_buf b;
    cache_writer w;
    cache_buf_init(&b);
    cache_writer_init(&w, &b);
    cache_write_map(&w, 2);
    cache_write_str(&w, "n", 1);
    cache_write_int(&w, -123456789012LL);
    cache_write_str(&w, "l", 1);
    cache_write_array(&w, 3);
    cache_write_float(&w, 1.5);
    cache_write_bool(&w, 1);
    cache_write_nil(&w);
    CHECK(!w.failed);
    CHECK(cache_validate(b.data, b.len, NULL) == CACHE_OK);

    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK(msgpack_unpack_next(&u, b.data, b.len, &off) == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == b.len);
    CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 2);
    CHECK(u.data.via.map.ptr[0].val.via.i64 == -123456789012LL);
    CHECK(u.data.via.map.ptr[1].val.via.array.ptr[0].via.f64 == 1.5);
    msgpack_unpacked_destroy(&u);
    cache_buf_free(&b);
}

static void reads_every_integer_width(void)
{
    int64_t samples[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295LL,
                         4294967296LL, INT64_MAX, -1, -32, -33, -128, -129,
                         -32768, -32769, -2147483648LL, -2147483649LL, INT64_MIN};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        cache_buf b;
        cache_writer w;
        int64_t back = 0;
        cache_buf_init(&b);
        cache_writer_init(&w, &b);
        cache_write_int(&w, samples[i]);
        CHECK(cache_value_as_int(S(&b), &back) && back == samples[i]);
        cache_buf_free(&b);
    }
}

static void rejects_hostile_bytes(void)
{
    const char *bad[] = {"", "\xc1", "\xdd\xff\xff\xff\xff", "\x81\xc0\x01",
                         "\xa2x", "\xc0\xc0", "\xd6\x00\x00\x00\x00\x00"};
    size_t lens[] = {0, 1, 5, 3, 2, 2, 6};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(cache_validate(bad[i], lens[i], NULL) == CACHE_FAIL);
    /* 10,000 nested arrays: refused, without recursion */
    size_t n = 10000;
    char *deep = malloc(n + 1);
    memset(deep, 0x91, n);
    deep[n] = (char)0xc0;
    cache_err err = {0, ""};
    CHECK(cache_validate(deep, n + 1, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "nested") != NULL);
    free(deep);
}

static void random_bytes_never_crash(void)
{
    unsigned seed = 42;
    unsigned char buf[64];
    int valid = 0;
    for (int round = 0; round < 200000; round++) {
        size_t n = (size_t)(rand_r(&seed) % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)rand_r(&seed);
        if (cache_validate(buf, n, NULL) == CACHE_OK) {
            valid++;
            /* a valid value must also walk to its end */
            cache_reader r;
            cache_item it;
            cache_reader_init(&r, buf, n);
            size_t left = 1;
            while (left > 0) {
                CHECK(cache_reader_next(&r, &it) == 0);
                left--;
                if (it.type == CACHE_V_ARRAY)
                    left += it.len;
                if (it.type == CACHE_V_MAP)
                    left += 2 * it.len;
            }
            CHECK(r.p == r.end);
        }
    }
    CHECK(valid > 0);
}

static void external_form(void)
{
    cache_buf v, ext, back;
    cache_writer w;
    cache_buf_init(&v);
    cache_buf_init(&ext);
    cache_buf_init(&back);
    cache_writer_init(&w, &v);
    cache_write_int(&w, -42);
    CHECK(cache_external_encode(S(&v), &ext) == 0);
    CHECK(ext.len == 3 && memcmp(ext.data, "-42", 3) == 0);
    CHECK(cache_external_decode(S(&ext), &back, NULL) == CACHE_OK);
    CHECK(back.len == v.len && memcmp(back.data, v.data, v.len) == 0);

    v.len = ext.len = back.len = 0;
    cache_write_str(&w, "hi", 2);
    CHECK(cache_external_encode(S(&v), &ext) == 0);
    CHECK(ext.data[0] == CACHE_MARKER && ext.len == v.len + 1);
    CHECK(cache_external_decode(S(&ext), &back, NULL) == CACHE_OK);
    CHECK(back.len == v.len && memcmp(back.data, v.data, v.len) == 0);

    /* a foreign value: no marker, not a number -> a string */
    back.len = 0;
    CHECK(cache_external_decode((cache_str){"Awesome", 7}, &back, NULL) == CACHE_OK);
    CHECK(back.len == 8 && (unsigned char)back.data[0] == 0xa7);
    /* a marker followed by junk is corrupt */
    back.len = 0;
    CHECK(cache_external_decode((cache_str){"!\xc1", 2}, &back, NULL) == CACHE_FAIL);
    int64_t i;
    CHECK(!cache_parse_int(" 1", 2, &i) && !cache_parse_int("+1", 2, &i));
    CHECK(!cache_parse_int("9223372036854775808", 19, &i));
    CHECK(cache_parse_int("-9223372036854775808", 20, &i) && i == INT64_MIN);
    cache_buf_free(&v);
    cache_buf_free(&ext);
    cache_buf_free(&back);
}

static void digests(void)
{
    unsigned char d[CACHE_DIGEST_MAX];
    char hex[2 * CACHE_DIGEST_MAX + 1], b64[100];
    const void *parts[] = {"foo"};
    size_t lens[] = {3};
    cache_digest_kind k;
    CHECK(cache_digest_lookup("md5", &k) == 0);
    CHECK(cache_digest(k, 1, parts, lens, d) == 16);
    cache_hex(d, 16, hex);
    CHECK(strcmp(hex, "acbd18db4cc2f85cedef654fccc4a4d8") == 0);
    CHECK(cache_digest_lookup("sha256", &k) == 0);
    CHECK(cache_digest(k, 1, parts, lens, d) == 32);
    cache_hex(d, 32, hex);
    CHECK(strcmp(hex, "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae") == 0);
    CHECK(cache_digest_lookup("whirlpool", &k) == -1);
    cache_base64((const unsigned char *)"foob", 4, b64);
    CHECK(strcmp(b64, "Zm9vYg==") == 0);
}

int main(void)
{
    RUN(encodes_what_msgpack_c_reads);
    RUN(reads_every_integer_width);
    RUN(rejects_hostile_bytes);
    RUN(random_bytes_never_crash);
    RUN(external_form);
    RUN(digests);
    CTEST_END();
}
