/*
 * envelope.c - fetch's entry envelope (see envelope.h for the layout).
 */
#include <string.h>

#include "envelope.h"

/* Big-endian 64-bit words: every read of a fetched entry opens one, so
 * these are a load and a byte swap, not a loop. */
static void put_be64(unsigned char *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static void put_double(unsigned char *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    put_be64(p, v);
}

static double get_double(const unsigned char *p)
{
    uint64_t v = get_be64(p);
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

int cache_envelope_write(cache_buf *out, cache_str value, double fresh_until,
                         double expires, double delta)
{
    /* the ext's length counts the payload: everything after the type byte */
    size_t payload = CACHE_ENVELOPE_HEAD - 6 + value.len;
    if (payload > UINT32_MAX || cache_buf_reserve(out, CACHE_ENVELOPE_HEAD + value.len))
        return -1;
    unsigned char h[CACHE_ENVELOPE_HEAD];
    h[0] = 0xc9;
    h[1] = (unsigned char)(payload >> 24);
    h[2] = (unsigned char)(payload >> 16);
    h[3] = (unsigned char)(payload >> 8);
    h[4] = (unsigned char)payload;
    h[5] = CACHE_ENVELOPE_EXT;
    h[6] = 1; /* version */
    put_double(h + 7, fresh_until);
    put_double(h + 15, expires);
    put_double(h + 23, delta);
    cache_buf_append(out, h, sizeof h);
    cache_buf_append(out, value.ptr, value.len);
    return 0;
}

int cache_envelope_open(const char *bytes, size_t len, cache_envelope *env)
{
    const unsigned char *p = (const unsigned char *)bytes;
    if (len < CACHE_ENVELOPE_HEAD || p[0] != 0xc9 || p[5] != CACHE_ENVELOPE_EXT ||
        p[6] != 1)
        return 0;
    uint64_t payload = ((uint64_t)p[1] << 24) | ((uint64_t)p[2] << 16) |
                       ((uint64_t)p[3] << 8) | p[4];
    if (payload != len - 6)
        return 0;
    env->fresh_until = get_double(p + 7);
    env->expires = get_double(p + 15);
    env->delta = get_double(p + 23);
    env->value.ptr = bytes + CACHE_ENVELOPE_HEAD;
    env->value.len = len - CACHE_ENVELOPE_HEAD;
    return 1;
}
