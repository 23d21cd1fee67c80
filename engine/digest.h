/*
 * digest.h - message digests by name, on OpenSSL's libcrypto EVP interface.
 */
#ifndef CACHE_ENGINE_DIGEST_H
#define CACHE_ENGINE_DIGEST_H

#include <stddef.h>

#define CACHE_DIGEST_MAX 64 /* sha512 */

typedef enum {
    CACHE_MD5,
    CACHE_SHA1,
    CACHE_SHA256,
    CACHE_SHA512
} cache_digest_kind;

/* The digests by name: the one list of names (the binding exports it as
 * core.hash_methods). kind runs from 0 to cache_digest_count() - 1. */
size_t cache_digest_count(void);
/* "md5", "sha1", "sha256", "sha512": 0 and *kind set, or -1 if unknown. */
int cache_digest_lookup(const char *name, cache_digest_kind *kind);
const char *cache_digest_name(cache_digest_kind kind);
/* The names for a message, "md5, sha1, sha256, sha512" (cut to cap). */
void cache_digest_list(char *out, size_t cap);
size_t cache_digest_size(cache_digest_kind kind);

/* Digest of the concatenation of n parts. Returns the digest length, or 0
 * on failure. */
size_t cache_digest(cache_digest_kind kind, size_t n, const void *const *parts,
                    const size_t *lens, unsigned char out[CACHE_DIGEST_MAX]);

/* The one hex and the one Base64 alphabet every encoder indexes. */
extern const char cache_hex_digits[17];
extern const char cache_base64_alphabet[65];

/* Lower-case hex of n bytes into out (2n chars plus NUL). */
void cache_hex(const unsigned char *bytes, size_t n, char *out);

/* ---- digest keys --------------------------------------------------------
 * A key a server cannot take as it is (too long, empty, bytes its protocol
 * forbids) is sent in digest form: CACHE_KEY_MARK followed by the
 * lower-case hex SHA-256 of the key. For the mapping to stay one-to-one, a
 * key that could be sent as it is but starts with CACHE_KEY_MARK is sent in
 * digest form too (cache_key_marked): then every key sent as it is differs
 * from every digest form in its first byte. */
#define CACHE_KEY_MARK '#'
#define CACHE_KEY_DIGEST_LEN 65 /* the mark + 64 hex digits */

/* 1 when the n bytes at p start with CACHE_KEY_MARK. */
static inline int cache_key_marked(const char *p, size_t n)
{
    return n > 0 && p[0] == CACHE_KEY_MARK;
}

/* The digest form of the concatenated parts into out (NUL-terminated).
 * 0, or -1 if the digest could not be computed. */
int cache_key_digest_form(size_t n, const void *const *parts,
                          const size_t *lens,
                          char out[CACHE_KEY_DIGEST_LEN + 1]);

/* Standard Base64 (A-Z a-z 0-9 + /, '=' padding) of n bytes into out
 * (4 * ceil(n / 3) chars plus NUL). */
void cache_base64(const unsigned char *bytes, size_t n, char *out);

#endif
