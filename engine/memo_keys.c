/*
 * memo_keys.c - memoize keys, version hashes, the query-string digest and the
 * source digest (see memo_keys.h and behaviour.md §5.3, §6.4, §6.5).
 */
#define _DEFAULT_SOURCE

#include "memo_keys.h"

#include <stdlib.h>
#include <string.h>

/* ---- memoize keys --------------------------------------------------------- */

size_t cache_memo_head(const unsigned char *digest, size_t n,
                       char out[CACHE_MEMO_HEAD_LEN + 1])
{
    const char *abc = cache_base64_alphabet;
    if (n >= CACHE_MEMO_HEAD_LEN * 3 / 4) { /* every digest: 4 whole groups */
        for (int g = 0; g < CACHE_MEMO_HEAD_LEN / 4; g++) {
            const unsigned char *b = digest + 3 * g;
            unsigned v = (unsigned)b[0] << 16 | (unsigned)b[1] << 8 | b[2];
            out[4 * g] = abc[v >> 18];
            out[4 * g + 1] = abc[(v >> 12) & 63];
            out[4 * g + 2] = abc[(v >> 6) & 63];
            out[4 * g + 3] = abc[v & 63];
        }
        out[CACHE_MEMO_HEAD_LEN] = '\0';
        return CACHE_MEMO_HEAD_LEN;
    }
    /* 12 bytes are exactly 16 Base64 characters, so only they matter. */
    char b64[4 * ((CACHE_MEMO_HEAD_LEN * 3 / 4 + 2) / 3) + 1];
    size_t take = n < CACHE_MEMO_HEAD_LEN * 3 / 4 ? n : CACHE_MEMO_HEAD_LEN * 3 / 4;
    cache_base64(digest, take, b64);
    size_t len = strlen(b64);
    if (len > CACHE_MEMO_HEAD_LEN)
        len = CACHE_MEMO_HEAD_LEN;
    memcpy(out, b64, len);
    out[len] = '\0';
    return len;
}

int cache_memo_key(cache_digest_kind kind, size_t nparts,
                   const void *const *parts, const size_t *lens,
                   const char *version, size_t vlen, cache_buf *out)
{
    unsigned char md[CACHE_DIGEST_MAX];
    size_t mdlen = cache_digest(kind, nparts, parts, lens, md);
    if (mdlen == 0)
        return CACHE_FAIL;
    char head[CACHE_MEMO_HEAD_LEN + 1];
    size_t hlen = cache_memo_head(md, mdlen, head);
    if (cache_buf_set(out, head, hlen) < 0 ||
        cache_buf_append(out, version, vlen) < 0)
        return CACHE_ENOMEM;
    return CACHE_OK;
}

int cache_memo_version(char out[CACHE_VERSION_LEN + 1])
{
    /* As Flask-Caching: Base64 of a 16-byte random token, cut to 6. */
    unsigned char raw[16];
    char b64[25];
    cache_random_bytes(raw, sizeof raw);
    cache_base64(raw, sizeof raw, b64);
    memcpy(out, b64, CACHE_VERSION_LEN);
    out[CACHE_VERSION_LEN] = '\0';
    return 0;
}

/* ---- the query-string digest ----------------------------------------------- */

static int bytes_cmp(const unsigned char *a, size_t alen,
                     const unsigned char *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int pair_cmp(const void *pa, const void *pb)
{
    const cache_query_pair *a = pa, *b = pb;
    int c = bytes_cmp((const unsigned char *)a->name.ptr, a->name.len,
                      (const unsigned char *)b->name.ptr, b->name.len);
    if (c)
        return c;
    return bytes_cmp((const unsigned char *)a->value.ptr, a->value.len,
                     (const unsigned char *)b->value.ptr, b->value.len);
}

/* Python's repr() of a str, for the ASCII range. */
static int py_repr(cache_str s, cache_buf *out)
{
    int has_sq = s.len && memchr(s.ptr, '\'', s.len) != NULL;
    int has_dq = s.len && memchr(s.ptr, '"', s.len) != NULL;
    char quote = (has_sq && !has_dq) ? '"' : '\'';
    if (cache_buf_append(out, &quote, 1) < 0)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        char esc[4];
        size_t el = 0;
        if (c == (unsigned char)quote || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
        } else if (c == '\t' || c == '\n' || c == '\r') {
            esc[0] = '\\';
            esc[1] = c == '\t' ? 't' : c == '\n' ? 'n' : 'r';
            el = 2;
        } else if (c < 0x20 || c == 0x7f) {
            const char *hexd = cache_hex_digits;
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hexd[c >> 4];
            esc[3] = hexd[c & 15];
            el = 4;
        }
        if (el ? cache_buf_append(out, esc, el) : cache_buf_append(out, &c, 1))
            return -1;
    }
    return cache_buf_append(out, &quote, 1);
}

static int append_cstr(cache_buf *out, const char *s)
{
    return cache_buf_append(out, s, strlen(s));
}

int cache_query_text(cache_query_pair *pairs, size_t n, cache_buf *out)
{
    if (n > 1)
        qsort(pairs, n, sizeof *pairs, pair_cmp);
    if (append_cstr(out, "(") < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((i && append_cstr(out, ", ") < 0) || append_cstr(out, "(") < 0 ||
            py_repr(pairs[i].name, out) < 0 || append_cstr(out, ", ") < 0 ||
            py_repr(pairs[i].value, out) < 0 || append_cstr(out, ")") < 0)
            return -1;
    }
    /* A one-element tuple keeps its trailing comma. */
    if (n == 1 && append_cstr(out, ",") < 0)
        return -1;
    return append_cstr(out, ")");
}

static size_t hex_digest(cache_digest_kind kind, size_t nparts,
                         const void *const *parts, const size_t *lens,
                         char hex[CACHE_HEX_MAX])
{
    unsigned char md[CACHE_DIGEST_MAX];
    size_t mdlen = cache_digest(kind, nparts, parts, lens, md);
    if (mdlen == 0)
        return 0;
    cache_hex(md, mdlen, hex);
    return 2 * mdlen;
}

size_t cache_query_digest(cache_digest_kind kind, cache_query_pair *pairs,
                          size_t n, const void *extra, size_t extralen,
                          char hex[CACHE_HEX_MAX])
{
    cache_buf text;
    cache_buf_init(&text);
    size_t r = 0;
    if (cache_query_text(pairs, n, &text) == 0) {
        const void *parts[2] = {text.data, extra};
        size_t lens[2] = {text.len, extra ? extralen : 0};
        r = hex_digest(kind, extra ? 2 : 1, parts, lens, hex);
    }
    cache_buf_free(&text);
    return r;
}

size_t cache_source_digest(cache_digest_kind kind, const void *src, size_t len,
                           char hex[CACHE_HEX_MAX])
{
    const void *parts[1] = {src};
    size_t lens[1] = {len};
    return hex_digest(kind, 1, parts, lens, hex);
}
