/*
 * codec.c - values as MessagePack: the project's one writer and its
 * bounded reader (see codec.h for why).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

/* ---- encoding ------------------------------------------------------------ */

static unsigned char *put_be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

/* A head in its smallest form: fix (holding n) below fixmax, then the
 * 8-bit (when the type has one), 16-bit and 32-bit forms. */
static unsigned char *put_head(unsigned char *p, size_t n, unsigned fix,
                               size_t fixmax, unsigned c8, unsigned c16,
                               unsigned c32)
{
    if (n < fixmax)
        *p++ = (unsigned char)(fix | n);
    else if (c8 && n < 256)
        *p++ = (unsigned char)c8, *p++ = (unsigned char)n;
    else if (n < 65536)
        *p++ = (unsigned char)c16, p = put_be(p, n, 2);
    else
        *p++ = (unsigned char)c32, p = put_be(p, n, 4);
    return p;
}

unsigned char *cache_mp_nil(unsigned char *p)
{
    *p++ = 0xc0;
    return p;
}

unsigned char *cache_mp_bool(unsigned char *p, int b)
{
    *p++ = b ? 0xc3 : 0xc2;
    return p;
}

unsigned char *cache_mp_int(unsigned char *p, int64_t i)
{
    if (i < -(1LL << 5)) {
        if (i < -(1LL << 31))
            *p++ = 0xd3, p = put_be(p, (uint64_t)i, 8);
        else if (i < -(1LL << 15))
            *p++ = 0xd2, p = put_be(p, (uint64_t)i, 4);
        else if (i < -(1LL << 7))
            *p++ = 0xd1, p = put_be(p, (uint64_t)i, 2);
        else
            *p++ = 0xd0, *p++ = (unsigned char)i;
    } else if (i < (1LL << 7)) {
        *p++ = (unsigned char)i; /* positive or negative fixint */
    } else if (i < (1LL << 8)) {
        *p++ = 0xcc, *p++ = (unsigned char)i;
    } else if (i < (1LL << 16)) {
        *p++ = 0xcd, p = put_be(p, (uint64_t)i, 2);
    } else if (i < (1LL << 32)) {
        *p++ = 0xce, p = put_be(p, (uint64_t)i, 4);
    } else {
        *p++ = 0xcf, p = put_be(p, (uint64_t)i, 8);
    }
    return p;
}

unsigned char *cache_mp_float(unsigned char *p, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    *p++ = 0xcb;
    return put_be(p, bits, 8);
}

unsigned char *cache_mp_str_head(unsigned char *p, size_t n)
{
    return put_head(p, n, 0xa0, 32, 0xd9, 0xda, 0xdb);
}

unsigned char *cache_mp_array_head(unsigned char *p, size_t n)
{
    return put_head(p, n, 0x90, 16, 0, 0xdc, 0xdd);
}

unsigned char *cache_mp_map_head(unsigned char *p, size_t n)
{
    return put_head(p, n, 0x80, 16, 0, 0xde, 0xdf);
}

/* Room for one item at the end of w's output, or NULL (w->failed). */
static unsigned char *room(cache_writer *w, size_t n)
{
    if (w->failed || cache_buf_reserve(w->out, n) < 0) {
        w->failed = 1;
        return NULL;
    }
    return (unsigned char *)w->out->data + w->out->len;
}

static void wrote(cache_writer *w, unsigned char *end)
{
    w->out->len = (size_t)(end - (unsigned char *)w->out->data);
}

void cache_writer_init(cache_writer *w, cache_buf *out)
{
    w->out = out;
    w->failed = 0;
}

void cache_write_nil(cache_writer *w)
{
    unsigned char *p = room(w, 1);
    if (p)
        wrote(w, cache_mp_nil(p));
}

void cache_write_bool(cache_writer *w, int b)
{
    unsigned char *p = room(w, 1);
    if (p)
        wrote(w, cache_mp_bool(p, b));
}

void cache_write_int(cache_writer *w, int64_t i)
{
    unsigned char *p = room(w, CACHE_MP_ITEM_MAX);
    if (p)
        wrote(w, cache_mp_int(p, i));
}

void cache_write_float(cache_writer *w, double d)
{
    unsigned char *p = room(w, CACHE_MP_ITEM_MAX);
    if (p)
        wrote(w, cache_mp_float(p, d));
}

void cache_write_str(cache_writer *w, const char *s, size_t n)
{
    unsigned char *p = n > UINT32_MAX ? NULL : room(w, 5 + n);
    if (!p) {
        w->failed = 1;
        return;
    }
    p = cache_mp_str_head(p, n);
    if (n)
        memcpy(p, s, n);
    wrote(w, p + n);
}

void cache_write_array(cache_writer *w, size_t n)
{
    unsigned char *p = n > UINT32_MAX ? NULL : room(w, 5);
    if (!p) {
        w->failed = 1;
        return;
    }
    wrote(w, cache_mp_array_head(p, n));
}

void cache_write_map(cache_writer *w, size_t n)
{
    unsigned char *p = n > UINT32_MAX ? NULL : room(w, 5);
    if (!p) {
        w->failed = 1;
        return;
    }
    wrote(w, cache_mp_map_head(p, n));
}

int cache_encode_int(int64_t i, cache_buf *out, cache_err *err)
{
    cache_writer w;
    cache_writer_init(&w, out);
    cache_write_int(&w, i);
    return w.failed ? cache_fail(err, CACHE_ENOMEM, "out of memory") : CACHE_OK;
}

/* ---- decoding ------------------------------------------------------------ */

void cache_reader_init(cache_reader *r, const void *bytes, size_t len)
{
    r->p = bytes;
    r->end = r->p + len;
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Takes n bytes of big-endian number after the type byte. */
static int take(cache_reader *r, int n, uint64_t *v)
{
    if (r->end - r->p < n)
        return -1;
    *v = be(r->p, n);
    r->p += n;
    return 0;
}

static int read_str(cache_reader *r, int lenbytes, size_t fixlen,
                    cache_item *it)
{
    uint64_t n = fixlen;
    if (lenbytes && take(r, lenbytes, &n))
        return -1;
    if ((uint64_t)(r->end - r->p) < n)
        return -1;
    it->type = CACHE_V_STR;
    it->s = (const char *)r->p;
    it->len = (size_t)n;
    r->p += n;
    return 0;
}

static int read_container(cache_reader *r, int lenbytes, size_t fixlen,
                          cache_vtype t, cache_item *it)
{
    uint64_t n = fixlen;
    if (lenbytes && take(r, lenbytes, &n))
        return -1;
    it->type = t;
    it->len = (size_t)n;
    return 0;
}

static int read_uint(cache_reader *r, int n, cache_item *it)
{
    uint64_t v;
    if (take(r, n, &v))
        return -1;
    if (v > INT64_MAX) {
        /* Only foreign writers produce these; keep the magnitude. */
        it->type = CACHE_V_FLOAT;
        it->f = (double)v;
    } else {
        it->type = CACHE_V_INT;
        it->i = (int64_t)v;
    }
    return 0;
}

static int read_sint(cache_reader *r, int n, cache_item *it)
{
    uint64_t v;
    if (take(r, n, &v))
        return -1;
    int bits = 8 * n;
    it->type = CACHE_V_INT;
    if (bits == 64)
        it->i = v > INT64_MAX ? -(int64_t)(~v) - 1 : (int64_t)v;
    else if (v >> (bits - 1))
        it->i = (int64_t)v - (int64_t)(UINT64_C(1) << bits);
    else
        it->i = (int64_t)v;
    return 0;
}

static int read_float(cache_reader *r, int n, cache_item *it)
{
    uint64_t v;
    if (take(r, n, &v))
        return -1;
    it->type = CACHE_V_FLOAT;
    if (n == 4) {
        uint32_t u = (uint32_t)v;
        float f;
        memcpy(&f, &u, sizeof f);
        it->f = f;
    } else {
        memcpy(&it->f, &v, sizeof it->f);
    }
    return 0;
}

int cache_reader_next(cache_reader *r, cache_item *it)
{
    if (r->p >= r->end)
        return -1;
    unsigned c = *r->p++;
    if (c <= 0x7f) {
        it->type = CACHE_V_INT;
        it->i = c;
        return 0;
    }
    if (c >= 0xe0) {
        it->type = CACHE_V_INT;
        it->i = (int64_t)c - 256;
        return 0;
    }
    if ((c & 0xf0) == 0x80)
        return read_container(r, 0, c & 0x0f, CACHE_V_MAP, it);
    if ((c & 0xf0) == 0x90)
        return read_container(r, 0, c & 0x0f, CACHE_V_ARRAY, it);
    if ((c & 0xe0) == 0xa0)
        return read_str(r, 0, c & 0x1f, it);
    switch (c) {
    case 0xc0: it->type = CACHE_V_NIL; return 0;
    case 0xc2: it->type = CACHE_V_BOOL; it->b = 0; return 0;
    case 0xc3: it->type = CACHE_V_BOOL; it->b = 1; return 0;
    case 0xc4: case 0xd9: return read_str(r, 1, 0, it);
    case 0xc5: case 0xda: return read_str(r, 2, 0, it);
    case 0xc6: case 0xdb: return read_str(r, 4, 0, it);
    case 0xca: return read_float(r, 4, it);
    case 0xcb: return read_float(r, 8, it);
    case 0xcc: return read_uint(r, 1, it);
    case 0xcd: return read_uint(r, 2, it);
    case 0xce: return read_uint(r, 4, it);
    case 0xcf: return read_uint(r, 8, it);
    case 0xd0: return read_sint(r, 1, it);
    case 0xd1: return read_sint(r, 2, it);
    case 0xd2: return read_sint(r, 4, it);
    case 0xd3: return read_sint(r, 8, it);
    case 0xdc: return read_container(r, 2, 0, CACHE_V_ARRAY, it);
    case 0xdd: return read_container(r, 4, 0, CACHE_V_ARRAY, it);
    case 0xde: return read_container(r, 2, 0, CACHE_V_MAP, it);
    case 0xdf: return read_container(r, 4, 0, CACHE_V_MAP, it);
    default: return -1; /* 0xc1 (never used) and the ext types */
    }
}

/* Validation walks the value with an explicit stack of "items still to
 * read" per open container, so hostile nesting cannot recurse on the C
 * stack. Every item takes at least one byte, which bounds each declared
 * count by the bytes left before anything trusts it. */
typedef struct frame {
    uint64_t left;  /* items left in this container (a map counts 2 per pair) */
    int is_map;
} frame;

static int valid_key(const cache_item *k)
{
    switch (k->type) {
    case CACHE_V_STR:
    case CACHE_V_INT:
    case CACHE_V_BOOL: return 1;
    case CACHE_V_FLOAT: return !isnan(k->f);
    default: return 0;
    }
}

static int corrupt(cache_err *err, const char *why)
{
    return cache_fail(err, CACHE_FAIL, "corrupt value: %s", why);
}

int cache_validate(const void *bytes, size_t len, cache_err *err)
{
    cache_reader r;
    frame stack[CACHE_MAX_DEPTH];
    int depth = 0; /* open containers */
    cache_reader_init(&r, bytes, len);
    if (len == 0)
        return corrupt(err, "empty");
    do {
        cache_item it;
        /* a map key is every even-positioned item of a map */
        int is_key = depth > 0 && stack[depth - 1].is_map &&
                     (stack[depth - 1].left % 2) == 0;
        if (cache_reader_next(&r, &it))
            return corrupt(err, "truncated or unknown type");
        if (depth > 0)
            stack[depth - 1].left--;
        if (is_key && !valid_key(&it))
            return corrupt(err, "map key of a type Lua cannot index by");
        if (it.type == CACHE_V_ARRAY || it.type == CACHE_V_MAP) {
            uint64_t items = it.type == CACHE_V_MAP ? (uint64_t)it.len * 2 : it.len;
            if (depth >= CACHE_MAX_DEPTH)
                return corrupt(err, "nested too deeply");
            if (items > (uint64_t)(r.end - r.p))
                return corrupt(err, "count larger than the data");
            stack[depth].left = items;
            stack[depth].is_map = it.type == CACHE_V_MAP;
            depth++;
        }
        while (depth > 0 && stack[depth - 1].left == 0)
            depth--;
    } while (depth > 0);
    if (r.p != r.end)
        return corrupt(err, "trailing bytes");
    return CACHE_OK;
}

/* ---- the external form ---------------------------------------------------- */

int cache_parse_int(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (n == 0)
        return 0;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1)
            return 0;
    }
    if (n - i > 19)
        return 0;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return 0;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return 0;
        *out = (int64_t)v;
    }
    return 1;
}

int cache_value_as_int(cache_str value, int64_t *out)
{
    cache_reader r;
    cache_item it;
    cache_reader_init(&r, value.ptr, value.len);
    if (cache_reader_next(&r, &it) || r.p != r.end || it.type != CACHE_V_INT)
        return 0;
    *out = it.i;
    return 1;
}

int cache_value_add(const cache_str *cur, int64_t delta, cache_buf *out,
                    int64_t *sum, cache_err *err)
{
    int64_t base = 0;
    if (cur && !cache_value_as_int(*cur, &base))
        return cache_fail(err, CACHE_ENOTINT, "value is not an integer");
    if (__builtin_add_overflow(base, delta, sum))
        return cache_fail(err, CACHE_ENOTINT, "integer overflow");
    return cache_encode_int(*sum, out, err);
}

int cache_external_encode(cache_str value, cache_buf *out)
{
    int64_t i;
    if (cache_value_as_int(value, &i)) {
        char text[24];
        int n = snprintf(text, sizeof text, "%lld", (long long)i);
        return cache_buf_append(out, text, (size_t)n);
    }
    char m = CACHE_MARKER;
    if (cache_buf_reserve(out, value.len + 1))
        return -1;
    cache_buf_append(out, &m, 1);
    return cache_buf_append(out, value.ptr, value.len);
}

int cache_external_decode(cache_str ext, cache_buf *out, cache_err *err)
{
    if (ext.len > 0 && ext.ptr[0] == CACHE_MARKER) {
        int rc = cache_validate(ext.ptr + 1, ext.len - 1, err);
        if (rc != CACHE_OK)
            return rc;
        if (cache_buf_append(out, ext.ptr + 1, ext.len - 1))
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        return CACHE_OK;
    }
    cache_writer w;
    int64_t i;
    cache_writer_init(&w, out);
    if (cache_parse_int(ext.ptr, ext.len, &i))
        cache_write_int(&w, i);
    else
        cache_write_str(&w, ext.ptr, ext.len);
    if (w.failed)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    return CACHE_OK;
}
