/*
 * md5.h - MD5 (RFC 1321) in plain C, for memoize keys.
 *
 * Keys digest a few dozen bytes per call, and through libcrypto's EVP
 * interface the setup of a digest costs more than the digest itself; this
 * straight implementation is about three times cheaper for such inputs and
 * gives the same bytes (spec/c/test_md5.c compares it with libcrypto).
 */
#ifndef CACHE_ENGINE_MD5_H
#define CACHE_ENGINE_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache_md5 {
    uint32_t h[4];
    uint64_t total;         /* bytes fed so far */
    unsigned char block[64];
    size_t used;            /* bytes waiting in block */
} cache_md5;

void cache_md5_init(cache_md5 *m);
void cache_md5_update(cache_md5 *m, const void *data, size_t n);
void cache_md5_final(cache_md5 *m, unsigned char out[16]);

#endif
