/*
 * envelope.h - the entry envelope of fetch: a value together with when it
 * stops being fresh, how long it is stored, and how long computing it took.
 *
 * An envelope is a codec value of its own kind, a MessagePack ext (type
 * CACHE_ENVELOPE_EXT) wrapping the value's codec bytes, so it is the same
 * bytes on every backend and in every process, backends store it like any
 * value (Redis and memcached as '!' + bytes), cache_validate accepts it at
 * the top of an entry (never inside a table), and every reader that is not
 * fetch sees the plain value inside (the bindings' decoder unwraps it):
 * c:get on a fetched key returns the value.
 *
 *   0xc9  u32 length  i8 CACHE_ENVELOPE_EXT          (MessagePack ext 32)
 *   u8 version (1)
 *   f64 fresh_until   wall-clock seconds; 0: fresh for as long as stored
 *   f64 expires       wall-clock seconds it is stored until; 0: no end
 *   f64 delta         seconds the callback took to compute the value
 *   the value's codec bytes (one value, never an envelope)
 * Numbers are big-endian IEEE doubles, as MessagePack writes them.
 */
#ifndef CACHE_ENGINE_ENVELOPE_H
#define CACHE_ENGINE_ENVELOPE_H

#include "cache.h"

#define CACHE_ENVELOPE_EXT 0x46 /* 'F' */
#define CACHE_ENVELOPE_HEAD 31  /* bytes before the value */

typedef struct cache_envelope {
    double fresh_until, expires, delta;
    cache_str value;
} cache_envelope;

/* Appends the envelope of value (codec bytes) to out. -1 on no memory. */
int cache_envelope_write(cache_buf *out, cache_str value, double fresh_until,
                         double expires, double delta);

/* 1 when bytes start like an envelope: the header is then read into env
 * (env->value is the rest, not yet validated); 0 when they are something
 * else. Never reads past len. */
int cache_envelope_open(const char *bytes, size_t len, cache_envelope *env);

#endif
