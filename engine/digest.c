/*
 * digest.c - md5/sha1/sha256/sha512 through libcrypto's EVP interface, and
 * the hex and Base64 renderings the keys use.
 */
/* MD5_Init/Update/Final are deprecated in OpenSSL 3.0, not removed: ask for
 * the 1.1.1 API so they are declared without the warning. */
#define OPENSSL_API_COMPAT 10101

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/md5.h>

#include "digest.h"

static const struct {
    const char *name;
    size_t size;
} digests[] = {
    [CACHE_MD5] = {"md5", 16},
    [CACHE_SHA1] = {"sha1", 20},
    [CACHE_SHA256] = {"sha256", 32},
    [CACHE_SHA512] = {"sha512", 64},
};

size_t cache_digest_count(void)
{
    return sizeof digests / sizeof digests[0];
}

void cache_digest_list(char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < cache_digest_count() && o < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s%s", i ? ", " : "",
                         digests[i].name);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

int cache_digest_lookup(const char *name, cache_digest_kind *kind)
{
    for (int i = 0; i < (int)cache_digest_count(); i++)
        if (strcmp(digests[i].name, name) == 0) {
            *kind = (cache_digest_kind)i;
            return 0;
        }
    return -1;
}

const char *cache_digest_name(cache_digest_kind kind)
{
    return digests[kind].name;
}

size_t cache_digest_size(cache_digest_kind kind)
{
    return digests[kind].size;
}

/* OpenSSL 3 looks an algorithm up on every EVP_DigestInit_ex with the
 * legacy EVP_md5() objects, and a context costs an allocation: together
 * they were most of a short digest. So the algorithms are fetched once per
 * process and each thread keeps one context, freed when the thread ends. */
static EVP_MD *fetched[4];
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;

static void free_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static int have_key;

static void fetch_all(void)
{
    for (int i = 0; i < 4; i++)
        fetched[i] = EVP_MD_fetch(NULL, digests[i].name, NULL);
    have_key = pthread_key_create(&ctx_key, free_ctx) == 0;
}

/* Lua dlcloses the module in lua_close (and a host may unload it sooner):
 * give the algorithms and this thread's context back, and delete the key,
 * whose destructor would otherwise point into unmapped code when another
 * thread ends. */
__attribute__((destructor)) static void release_all(void)
{
    if (have_key) {
        EVP_MD_CTX_free(pthread_getspecific(ctx_key));
        pthread_key_delete(ctx_key);
        have_key = 0;
    }
    for (int i = 0; i < 4; i++) {
        EVP_MD_free(fetched[i]);
        fetched[i] = NULL;
    }
}

static EVP_MD_CTX *thread_ctx(void)
{
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        if (ctx && pthread_setspecific(ctx_key, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            ctx = NULL;
        }
    }
    return ctx;
}

/* MD5 is the default of memoize keys and file names, digested once per call
 * over a few dozen bytes. libcrypto's direct MD5 routines skip the EVP
 * provider dispatch, which costs more than such a digest itself. */
static size_t md5_direct(size_t n, const void *const *parts,
                         const size_t *lens, unsigned char out[CACHE_DIGEST_MAX])
{
    MD5_CTX c;
    if (!MD5_Init(&c))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!MD5_Update(&c, parts[i], lens[i]))
            return 0;
    return MD5_Final(out, &c) ? 16 : 0;
}

size_t cache_digest(cache_digest_kind kind, size_t n, const void *const *parts,
                    const size_t *lens, unsigned char out[CACHE_DIGEST_MAX])
{
    if (kind == CACHE_MD5)
        return md5_direct(n, parts, lens, out);
    pthread_once(&fetch_once, fetch_all);
    const EVP_MD *md = fetched[kind];
    EVP_MD_CTX *ctx = md ? thread_ctx() : NULL;
    unsigned int len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, md, NULL);
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], lens[i]);
    ok = ok && EVP_DigestFinal_ex(ctx, out, &len);
    return ok ? len : 0;
}

const char cache_hex_digits[17] = "0123456789abcdef";
const char cache_base64_alphabet[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void cache_hex(const unsigned char *bytes, size_t n, char *out)
{
    const char *digits = cache_hex_digits;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

int cache_key_digest_form(size_t n, const void *const *parts,
                          const size_t *lens,
                          char out[CACHE_KEY_DIGEST_LEN + 1])
{
    unsigned char d[CACHE_DIGEST_MAX];
    if (cache_digest(CACHE_SHA256, n, parts, lens, d) != 32)
        return -1;
    out[0] = CACHE_KEY_MARK;
    cache_hex(d, 32, out + 1);
    return 0;
}

void cache_base64(const unsigned char *bytes, size_t n, char *out)
{
    const char *abc = cache_base64_alphabet;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)bytes[i] << 16 | (unsigned)bytes[i + 1] << 8 | bytes[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)bytes[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)bytes[i + 1] << 8;
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}
