/*
 * codec.h - the value codec: values as MessagePack bytes.
 *
 * Encoding is the one MessagePack writer of the project (the binding's value
 * and memoize-argument writers use it too); it writes what msgpack-c's
 * packer writes, the smallest form of every item, so stored values and keys
 * keep their bytes. Decoding is our own bounded pull reader: msgpack-c's
 * unpacker stops at 32 levels and sizes its allocations
 * from counts declared in the input, while ours allocates nothing, bounds
 * depth by CACHE_MAX_DEPTH and checks every count against the bytes left,
 * so that any byte string either validates or is reported corrupt.
 *
 * Usage by a binding: cache_validate() the bytes once, then walk them with
 * cache_reader_next(), which cannot fail on validated input.
 */
#ifndef CACHE_ENGINE_CODEC_H
#define CACHE_ENGINE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"

/* Tables nested deeper than this are refused on encode and are corrupt on
 * decode. The outermost value is depth 1. */
#define CACHE_MAX_DEPTH 100

/* ---- encoding ------------------------------------------------------------ */
/* Items and heads written at p, which must have CACHE_MP_ITEM_MAX bytes of
 * room; each returns the end. For writers that reserve once for many
 * items; the cache_write_* functions below reserve per item. */
#define CACHE_MP_ITEM_MAX 9
unsigned char *cache_mp_nil(unsigned char *p);
unsigned char *cache_mp_bool(unsigned char *p, int b);
unsigned char *cache_mp_int(unsigned char *p, int64_t i);
unsigned char *cache_mp_float(unsigned char *p, double d);
unsigned char *cache_mp_str_head(unsigned char *p, size_t n); /* n < 2^32 */
unsigned char *cache_mp_array_head(unsigned char *p, size_t n);
unsigned char *cache_mp_map_head(unsigned char *p, size_t n);

typedef struct cache_writer {
    cache_buf *out;
    int failed; /* set when memory ran out; the output is then unusable */
} cache_writer;

void cache_writer_init(cache_writer *w, cache_buf *out);
void cache_write_nil(cache_writer *w);
void cache_write_bool(cache_writer *w, int b);
void cache_write_int(cache_writer *w, int64_t i);
void cache_write_float(cache_writer *w, double d);
void cache_write_str(cache_writer *w, const char *s, size_t n);
void cache_write_array(cache_writer *w, size_t n); /* n items follow */
void cache_write_map(cache_writer *w, size_t n);   /* n key/value pairs follow */
/* Appends the codec bytes of the integer i to out (incr's stored sum):
 * CACHE_OK, or CACHE_ENOMEM with err set. */
int cache_encode_int(int64_t i, cache_buf *out, cache_err *err);

/* ---- decoding ------------------------------------------------------------ */
typedef enum {
    CACHE_V_NIL,
    CACHE_V_BOOL,
    CACHE_V_INT,
    CACHE_V_FLOAT,
    CACHE_V_STR,   /* msgpack str and bin both read as strings */
    CACHE_V_ARRAY,
    CACHE_V_MAP
} cache_vtype;

typedef struct cache_item {
    cache_vtype type;
    int b;
    int64_t i;
    double f;
    const char *s;
    size_t len; /* string length, or the item count of an array / map */
} cache_item;

typedef struct cache_reader {
    const unsigned char *p, *end;
} cache_reader;

/* CACHE_OK when bytes hold exactly one well-formed value (no trailing bytes),
 * within CACHE_MAX_DEPTH, with map keys that are strings, numbers (not NaN)
 * or booleans; else CACHE_FAIL with a reason in err. Never allocates. */
int cache_validate(const void *bytes, size_t len, cache_err *err);

void cache_reader_init(cache_reader *r, const void *bytes, size_t len);
/* Reads the next item header (for arrays and maps, the items follow as
 * further calls). Returns 0, or -1 on malformed input (never on validated
 * input). */
int cache_reader_next(cache_reader *r, cache_item *it);

/* ---- the external form of network backends --------------------------------
 * Redis and memcached store an integer as its plain decimal text (so the
 * server's INCRBY / incr work on it and other clients can read it) and every
 * other value as CACHE_MARKER followed by the codec bytes. A foreign value
 * with no marker reads back as an integer when it is one, else as a string. */
#define CACHE_MARKER '!'

/* Appends the external form of encoded value bytes to out. -1 on no memory. */
int cache_external_encode(cache_str value, cache_buf *out);
/* Appends the codec bytes of an external value to out. CACHE_OK, or
 * CACHE_FAIL (marker present but the rest corrupt), or CACHE_ENOMEM. */
int cache_external_decode(cache_str external, cache_buf *out, cache_err *err);

/* If encoded value bytes are exactly one integer, stores it and returns 1. */
int cache_value_as_int(cache_str value, int64_t *out);
/* The value an increment writes: the integer in cur plus delta (cur NULL:
 * a missing entry, counted as 0), appended to out as codec bytes, the sum in
 * *sum. CACHE_OK; CACHE_ENOTINT when cur is not exactly one integer or the
 * sum leaves int64; CACHE_ENOMEM. */
int cache_value_add(const cache_str *cur, int64_t delta, cache_buf *out,
                    int64_t *sum, cache_err *err);
/* Parses strict decimal text ("-12", no spaces, no '+', within int64). */
int cache_parse_int(const char *s, size_t n, int64_t *out);

#endif
