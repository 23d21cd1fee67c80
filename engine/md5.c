/*
 * md5.c - MD5 as RFC 1321 specifies it (see md5.h for why it is here).
 */
#include "md5.h"

#include <string.h>

/* K[i] = floor(|sin(i + 1)| * 2^32) */
static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
    0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
    0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
    0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
    0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
    0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
    0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
    0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
    0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

static uint32_t rotl(uint32_t x, unsigned s)
{
    return (x << s) | (x >> (32 - s));
}

static uint32_t le32(const unsigned char *p)
{
    uint32_t v; /* x86 and arm64 are little-endian; memcpy keeps it aligned-safe */
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* The four round functions, and one step: a = b + ((a + F(b,c,d) + w + k) <<< s).
 * The 64 steps are written out (a loop with a switch costs four times as
 * much on short inputs). */
#define F1(x, y, z) (((x) & (y)) | (~(x) & (z)))
#define F2(x, y, z) (((x) & (z)) | ((y) & ~(z)))
#define F3(x, y, z) ((x) ^ (y) ^ (z))
#define F4(x, y, z) ((y) ^ ((x) | ~(z)))
#define STEP(F, a, b, c, d, g, i, s) \
    (a) = (b) + rotl((a) + F((b), (c), (d)) + w[g] + K[i], (s))

/* One 64-byte block into the state. */
static void compress(uint32_t h[4], const unsigned char *p)
{
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = le32(p + 4 * i);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];

    STEP(F1, a, b, c, d, 0, 0, 7);    STEP(F1, d, a, b, c, 1, 1, 12);
    STEP(F1, c, d, a, b, 2, 2, 17);   STEP(F1, b, c, d, a, 3, 3, 22);
    STEP(F1, a, b, c, d, 4, 4, 7);    STEP(F1, d, a, b, c, 5, 5, 12);
    STEP(F1, c, d, a, b, 6, 6, 17);   STEP(F1, b, c, d, a, 7, 7, 22);
    STEP(F1, a, b, c, d, 8, 8, 7);    STEP(F1, d, a, b, c, 9, 9, 12);
    STEP(F1, c, d, a, b, 10, 10, 17); STEP(F1, b, c, d, a, 11, 11, 22);
    STEP(F1, a, b, c, d, 12, 12, 7);  STEP(F1, d, a, b, c, 13, 13, 12);
    STEP(F1, c, d, a, b, 14, 14, 17); STEP(F1, b, c, d, a, 15, 15, 22);

    STEP(F2, a, b, c, d, 1, 16, 5);   STEP(F2, d, a, b, c, 6, 17, 9);
    STEP(F2, c, d, a, b, 11, 18, 14); STEP(F2, b, c, d, a, 0, 19, 20);
    STEP(F2, a, b, c, d, 5, 20, 5);   STEP(F2, d, a, b, c, 10, 21, 9);
    STEP(F2, c, d, a, b, 15, 22, 14); STEP(F2, b, c, d, a, 4, 23, 20);
    STEP(F2, a, b, c, d, 9, 24, 5);   STEP(F2, d, a, b, c, 14, 25, 9);
    STEP(F2, c, d, a, b, 3, 26, 14);  STEP(F2, b, c, d, a, 8, 27, 20);
    STEP(F2, a, b, c, d, 13, 28, 5);  STEP(F2, d, a, b, c, 2, 29, 9);
    STEP(F2, c, d, a, b, 7, 30, 14);  STEP(F2, b, c, d, a, 12, 31, 20);

    STEP(F3, a, b, c, d, 5, 32, 4);   STEP(F3, d, a, b, c, 8, 33, 11);
    STEP(F3, c, d, a, b, 11, 34, 16); STEP(F3, b, c, d, a, 14, 35, 23);
    STEP(F3, a, b, c, d, 1, 36, 4);   STEP(F3, d, a, b, c, 4, 37, 11);
    STEP(F3, c, d, a, b, 7, 38, 16);  STEP(F3, b, c, d, a, 10, 39, 23);
    STEP(F3, a, b, c, d, 13, 40, 4);  STEP(F3, d, a, b, c, 0, 41, 11);
    STEP(F3, c, d, a, b, 3, 42, 16);  STEP(F3, b, c, d, a, 6, 43, 23);
    STEP(F3, a, b, c, d, 9, 44, 4);   STEP(F3, d, a, b, c, 12, 45, 11);
    STEP(F3, c, d, a, b, 15, 46, 16); STEP(F3, b, c, d, a, 2, 47, 23);

    STEP(F4, a, b, c, d, 0, 48, 6);   STEP(F4, d, a, b, c, 7, 49, 10);
    STEP(F4, c, d, a, b, 14, 50, 15); STEP(F4, b, c, d, a, 5, 51, 21);
    STEP(F4, a, b, c, d, 12, 52, 6);  STEP(F4, d, a, b, c, 3, 53, 10);
    STEP(F4, c, d, a, b, 10, 54, 15); STEP(F4, b, c, d, a, 1, 55, 21);
    STEP(F4, a, b, c, d, 8, 56, 6);   STEP(F4, d, a, b, c, 15, 57, 10);
    STEP(F4, c, d, a, b, 6, 58, 15);  STEP(F4, b, c, d, a, 13, 59, 21);
    STEP(F4, a, b, c, d, 4, 60, 6);   STEP(F4, d, a, b, c, 11, 61, 10);
    STEP(F4, c, d, a, b, 2, 62, 15);  STEP(F4, b, c, d, a, 9, 63, 21);

    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

void cache_md5_init(cache_md5 *m)
{
    m->h[0] = 0x67452301;
    m->h[1] = 0xefcdab89;
    m->h[2] = 0x98badcfe;
    m->h[3] = 0x10325476;
    m->total = 0;
    m->used = 0;
}

void cache_md5_update(cache_md5 *m, const void *data, size_t n)
{
    const unsigned char *p = data;
    m->total += n;
    if (m->used) {
        size_t take = 64 - m->used < n ? 64 - m->used : n;
        memcpy(m->block + m->used, p, take);
        m->used += take;
        p += take;
        n -= take;
        if (m->used < 64)
            return;
        compress(m->h, m->block);
        m->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64)
        compress(m->h, p);
    if (n) {
        memcpy(m->block, p, n);
        m->used = n;
    }
}

void cache_md5_final(cache_md5 *m, unsigned char out[16])
{
    uint64_t bits = m->total * 8;
    /* 0x80, zeros up to 56 mod 64, then the bit length little-endian */
    m->block[m->used++] = 0x80;
    if (m->used > 56) {
        memset(m->block + m->used, 0, 64 - m->used);
        compress(m->h, m->block);
        m->used = 0;
    }
    memset(m->block + m->used, 0, 56 - m->used);
    for (int i = 0; i < 8; i++)
        m->block[56 + i] = (unsigned char)(bits >> (8 * i));
    compress(m->h, m->block);
    for (int i = 0; i < 4; i++) {
        out[4 * i] = (unsigned char)m->h[i];
        out[4 * i + 1] = (unsigned char)(m->h[i] >> 8);
        out[4 * i + 2] = (unsigned char)(m->h[i] >> 16);
        out[4 * i + 3] = (unsigned char)(m->h[i] >> 24);
    }
}
