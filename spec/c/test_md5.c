/* test_md5.c - the direct MD5 path of cache_digest (memoize keys, file
 * names) against RFC 1321's test suite and against libcrypto's EVP
 * interface on every length up to 300 bytes, in one piece and in uneven
 * pieces. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ctest.h"
#include "digest.h"

static void hex16(const unsigned char *md, char *out)
{
    cache_hex(md, 16, out);
}

static void md5_of(const char *s, char out[33])
{
    unsigned char md[CACHE_DIGEST_MAX];
    const void *parts[1] = {s};
    size_t lens[1] = {strlen(s)};
    CHECK(cache_digest(CACHE_MD5, 1, parts, lens, md) == 16);
    hex16(md, out);
}

static void test_rfc1321_suite(void)
{
    static const char *const v[][2] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char hex[33];
        md5_of(v[i][0], hex);
        CHECK(strcmp(hex, v[i][1]) == 0);
    }
}

static void test_same_as_libcrypto(void)
{
    unsigned char data[300];
    srand(9);
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)rand();
    for (size_t n = 0; n <= sizeof data; n++) {
        unsigned char want[16], got[CACHE_DIGEST_MAX], split[CACHE_DIGEST_MAX];
        unsigned int wl = 0;
        EVP_Digest(data, n, want, &wl, EVP_md5(), NULL);
        const void *whole[1] = {data};
        size_t whole_len[1] = {n};
        CHECK(cache_digest(CACHE_MD5, 1, whole, whole_len, got) == 16);
        /* uneven pieces: 1, 2, 3, ... bytes */
        const void *pieces[32];
        size_t piece_lens[32], np = 0;
        for (size_t off = 0, step = 1; off < n; off += step, step++) {
            pieces[np] = data + off;
            piece_lens[np++] = off + step > n ? n - off : step;
        }
        CHECK(cache_digest(CACHE_MD5, np, pieces, piece_lens, split) == 16);
        CHECK(wl == 16 && memcmp(want, got, 16) == 0);
        CHECK(memcmp(want, split, 16) == 0);
    }
}

int main(void)
{
    RUN(test_rfc1321_suite);
    RUN(test_same_as_libcrypto);
    CTEST_END();
}
