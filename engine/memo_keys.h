/*
 * memo_keys.h - the key machinery of the decorators (Flask-Caching's `memoize`
 * and `cached` keys), in plain C so that every binding computes the same
 * bytes.
 *
 *  memoize key  = first 16 chars of Base64(digest(text)) + version string,
 *                 where text = the function name and the canonical bytes of
 *                 the arguments (the binding writes them with the codec in
 *                 its key mode: tables by value with sorted keys)
 *  version      = 6 random chars: Base64 of 16 random bytes, cut to 6
 *  query digest = hex digest of the sorted (name, value) pairs of a query,
 *                 rendered as Python renders a tuple of 2-tuples, so that an
 *                 ASCII query hashes exactly as in Flask-Caching
 *  source digest = hex digest of a function's source text or bytecode
 */
#ifndef CACHE_ENGINE_KEYS_H
#define CACHE_ENGINE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "digest.h"

#define CACHE_MEMO_HEAD_LEN 16   /* Base64 characters kept from the digest */
#define CACHE_VERSION_LEN 6      /* characters of one version hash */
#define CACHE_HEX_MAX (2 * CACHE_DIGEST_MAX + 1)

/* ---- memoize keys --------------------------------------------------------- */

/* The key head of a digest: the first 16 characters of its standard Base64
 * (fewer if the digest is shorter than 12 bytes). Returns the length written
 * to out (NUL-terminated). */
size_t cache_memo_head(const unsigned char *digest, size_t n,
                       char out[CACHE_MEMO_HEAD_LEN + 1]);

/* Replaces out with head(digest(parts)) followed by the version string.
 * CACHE_OK, or CACHE_FAIL (digest failed) / CACHE_ENOMEM. */
int cache_memo_key(cache_digest_kind kind, size_t nparts,
                   const void *const *parts, const size_t *lens,
                   const char *version, size_t vlen, cache_buf *out);

/* A fresh version hash: 6 characters of the Base64 alphabet carrying 36 bits
 * from the kernel's random source. 0, or -1 if no randomness was available. */
int cache_memo_version(char out[CACHE_VERSION_LEN + 1]);

/* ---- the query-string digest of `cached(query_string = true)` ------------- */

typedef struct cache_query_pair {
    cache_str name, value;
} cache_query_pair;

/* Sorts the pairs (by name, then value, byte order = code point order for
 * UTF-8) and appends Python's text of the tuple of 2-tuples to out, e.g.
 * (('a', '1'), ('b', '2')) ; one pair gives (('a', '1'),) ; none gives ().
 * Strings are quoted as Python's repr quotes them for ASCII text; bytes of
 * 0x80 and above are copied as they are (Python keeps printable non-ASCII
 * characters). 0, or -1 on no memory. */
int cache_query_text(cache_query_pair *pairs, size_t n, cache_buf *out);

/* Lower-case hex digest of query_text(pairs) followed by extra (the source
 * text when source checking, else NULL/0). Returns the hex length, 0 on
 * failure. */
size_t cache_query_digest(cache_digest_kind kind, cache_query_pair *pairs,
                          size_t n, const void *extra, size_t extralen,
                          char hex[CACHE_HEX_MAX]);

/* ---- source digest ---------------------------------------------------------- */

/* Lower-case hex digest of a function's source text (or bytecode). Returns
 * the hex length, 0 on failure. */
size_t cache_source_digest(cache_digest_kind kind, const void *src, size_t len,
                           char hex[CACHE_HEX_MAX]);

#endif
