/*
 * uwsgi_proto.c - the uWSGI cache protocol as pure functions (see
 * uwsgi_proto.h for the wire format and what each command answers).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "uwsgi_proto.h"

const char *uwsgi_cmd_name(uwsgi_cmd cmd)
{
    switch (cmd) {
    case UWSGI_CMD_GET: return "get";
    case UWSGI_CMD_SET: return "set";
    case UWSGI_CMD_UPDATE: return "update";
    case UWSGI_CMD_DEL: return "del";
    case UWSGI_CMD_EXISTS: return "exists";
    case UWSGI_CMD_CLEAR: return "clear";
    }
    return "?";
}

/* ---- keys and expiry ----------------------------------------------------- */

int uwsgi_proto_map_key(cache_str key, char buf[UWSGI_DIGEST_KEY_LEN + 1],
                        cache_str *mapped)
{
    if (key.len >= 1 && key.len <= UWSGI_KEY_MAX &&
        !cache_key_marked(key.ptr, key.len)) {
        *mapped = key;
        return 0;
    }
    const void *parts[1] = {key.ptr ? key.ptr : ""};
    size_t lens[1] = {key.len};
    if (cache_key_digest_form(1, parts, lens, buf) != 0)
        return -1;
    mapped->ptr = buf;
    mapped->len = UWSGI_DIGEST_KEY_LEN;
    return 0;
}

/* 1e10 s is about 317 years: beyond it an entry is as good as permanent and
 * uWSGI's now + expires stays far from overflowing. */
#define EXPIRES_CAP 1e10

uint64_t uwsgi_proto_expires(double ttl, double now)
{
    if (!(ttl > 0)) /* also NaN */
        return 0;
    if (ttl >= EXPIRES_CAP || !(now >= 0) || now >= EXPIRES_CAP)
        return (uint64_t)EXPIRES_CAP;
    /* The server adds its whole-second clock (floor(now)); the entry must
     * survive until at least now + ttl. */
    double e = ceil(now + ttl) - floor(now);
    if (e < 1)
        e = 1;
    return (uint64_t)e;
}

int uwsgi_proto_keep_expires(uint64_t deadline, double now, uint64_t *expires)
{
    *expires = 0;
    if (deadline == 0)
        return 0;
    if (!(now >= 0) || now >= EXPIRES_CAP) {
        *expires = (uint64_t)EXPIRES_CAP;
        return 0;
    }
    uint64_t second = (uint64_t)floor(now);
    if (deadline <= second)
        return -1;
    *expires = deadline - second;
    if (*expires > (uint64_t)EXPIRES_CAP)
        *expires = (uint64_t)EXPIRES_CAP;
    return 0;
}

/* ---- requests ------------------------------------------------------------- */

static void put_u16le(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
}

/* One var: u16le keylen, key, u16le vallen, value. Both lengths were checked
 * against 65535 by the caller. */
static int put_var(cache_buf *out, const char *k, cache_str v)
{
    unsigned char len[2];
    size_t klen = strlen(k);
    put_u16le(len, klen);
    if (cache_buf_append(out, len, 2) || cache_buf_append(out, k, klen))
        return -1;
    put_u16le(len, v.len);
    if (cache_buf_append(out, len, 2) || cache_buf_append(out, v.ptr, v.len))
        return -1;
    return 0;
}

static cache_str cstr(const char *s) { return (cache_str){s, strlen(s)}; }

static int has_key(uwsgi_cmd cmd) { return cmd != UWSGI_CMD_CLEAR; }

static int has_value(uwsgi_cmd cmd)
{
    return cmd == UWSGI_CMD_SET || cmd == UWSGI_CMD_UPDATE;
}

static int check_fields(uwsgi_cmd cmd, cache_str name, cache_str key,
                        cache_str value, cache_err *err)
{
    if (name.len > UWSGI_NAME_MAX)
        return cache_fail(err, CACHE_EINVAL,
                          "uWSGI cache name of %zu bytes is too long (max %d)",
                          name.len, UWSGI_NAME_MAX);
    if (has_key(cmd) && (key.len == 0 || key.len > UWSGI_KEY_MAX))
        return cache_fail(err, CACHE_EINVAL,
                          "uWSGI key of %zu bytes not mapped (1..%d)", key.len,
                          UWSGI_KEY_MAX);
    if (has_value(cmd) && value.len == 0)
        return cache_fail(err, CACHE_EINVAL,
                          "uWSGI cannot store a zero-length value");
    return CACHE_OK;
}

int uwsgi_proto_request(cache_buf *out, uwsgi_cmd cmd, cache_str name,
                        cache_str key, cache_str value, uint64_t expires,
                        cache_err *err)
{
    int rc = check_fields(cmd, name, key, value, err);
    if (rc != CACHE_OK)
        return rc;
    size_t start = out->len;
    unsigned char head[4] = {UWSGI_MODIFIER1, 0, 0, UWSGI_MODIFIER2};
    char size_txt[24], exp_txt[24];
    int bad = cache_buf_append(out, head, 4) ||
              put_var(out, "cmd", cstr(uwsgi_cmd_name(cmd)));
    if (!bad && has_key(cmd))
        bad = put_var(out, "key", key);
    if (!bad && has_value(cmd)) {
        snprintf(size_txt, sizeof size_txt, "%zu", value.len);
        bad = put_var(out, "size", cstr(size_txt));
        if (!bad && expires > 0) {
            snprintf(exp_txt, sizeof exp_txt, "%llu",
                     (unsigned long long)expires);
            bad = put_var(out, "expires", cstr(exp_txt));
        }
    }
    if (!bad && name.len > 0)
        bad = put_var(out, "cache", name);
    if (bad) {
        out->len = start;
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    /* The limits above keep the vars block far below 65535 bytes. */
    put_u16le((unsigned char *)out->data + start + 1, out->len - start - 4);
    if (has_value(cmd) && cache_buf_append(out, value.ptr, value.len)) {
        out->len = start;
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    return CACHE_OK;
}

/* ---- replies -------------------------------------------------------------- */

typedef struct vars {
    cache_str status;
    int has_status, has_size, has_expires;
    uint64_t size, expires;
} vars;

static size_t get_u16le(const unsigned char *p)
{
    return (size_t)p[0] | ((size_t)p[1] << 8);
}

static int is_name(const unsigned char *p, size_t n, const char *name)
{
    return n == strlen(name) && memcmp(p, name, n) == 0;
}

/* Strict decimal: 1 to 20 digits, no sign, no overflow of uint64. */
static int parse_u64(const unsigned char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = p[i] - '0';
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Reads the vars block p[0..n). Unknown vars are skipped; a repeated var
 * counts as its last value (as the server's own parser does). */
static int parse_vars(const unsigned char *p, size_t n, vars *v,
                      cache_err *err)
{
    memset(v, 0, sizeof *v);
    size_t i = 0;
    while (i < n) {
        if (n - i < 2)
            return cache_fail(err, CACHE_FAIL, "uWSGI reply: broken vars");
        size_t klen = get_u16le(p + i);
        i += 2;
        if (n - i < klen + 2)
            return cache_fail(err, CACHE_FAIL, "uWSGI reply: broken vars");
        const unsigned char *k = p + i;
        i += klen;
        size_t vlen = get_u16le(p + i);
        i += 2;
        if (n - i < vlen)
            return cache_fail(err, CACHE_FAIL, "uWSGI reply: broken vars");
        const unsigned char *val = p + i;
        i += vlen;
        if (is_name(k, klen, "status")) {
            v->status = (cache_str){(const char *)val, vlen};
            v->has_status = 1;
        } else if (is_name(k, klen, "size")) {
            if (parse_u64(val, vlen, &v->size))
                return cache_fail(err, CACHE_FAIL, "uWSGI reply: bad size");
            v->has_size = 1;
        } else if (is_name(k, klen, "expires")) {
            if (parse_u64(val, vlen, &v->expires))
                return cache_fail(err, CACHE_FAIL,
                                  "uWSGI reply: bad expires");
            v->has_expires = 1;
        }
    }
    return CACHE_OK;
}

/* Checks the 4-byte header; *pktsize receives the vars block length. */
static int parse_header(const unsigned char *p, size_t *pktsize,
                        cache_err *err)
{
    if (p[0] != UWSGI_MODIFIER1 || p[3] != UWSGI_MODIFIER2)
        return cache_fail(err, CACHE_FAIL,
                          "uWSGI reply: not a cache reply (modifiers %u/%u)",
                          p[0], p[3]);
    *pktsize = get_u16le(p + 1);
    return CACHE_OK;
}

int uwsgi_proto_reply_need(const void *buf, size_t len, size_t *need,
                           cache_err *err)
{
    const unsigned char *p = buf;
    if (len < 4) {
        *need = 4;
        return CACHE_OK;
    }
    size_t pktsize = 0;
    if (parse_header(p, &pktsize, err) != CACHE_OK)
        return CACHE_FAIL;
    if (len < 4 + pktsize) {
        *need = 4 + pktsize;
        return CACHE_OK;
    }
    vars v;
    if (parse_vars(p + 4, pktsize, &v, err) != CACHE_OK)
        return CACHE_FAIL;
    if (v.has_size && v.size > UWSGI_REPLY_MAX)
        return cache_fail(err, CACHE_FAIL,
                          "uWSGI reply: value of %llu bytes is too large",
                          (unsigned long long)v.size);
    *need = 4 + pktsize + (v.has_size ? (size_t)v.size : 0);
    return CACHE_OK;
}

int uwsgi_proto_parse_reply(const void *buf, size_t len, uwsgi_reply *r,
                            cache_err *err)
{
    const unsigned char *p = buf;
    memset(r, 0, sizeof *r);
    if (len == 0)
        return CACHE_MISS;
    size_t need;
    if (uwsgi_proto_reply_need(buf, len, &need, err) != CACHE_OK)
        return CACHE_FAIL;
    if (len < need)
        return cache_fail(err, CACHE_FAIL,
                          "uWSGI reply: truncated (%zu of %zu bytes)", len,
                          need);
    /* Complete: the header and vars were checked by reply_need. */
    size_t pktsize = get_u16le(p + 1);
    vars v;
    parse_vars(p + 4, pktsize, &v, NULL);
    if (!v.has_status)
        return cache_fail(err, CACHE_FAIL, "uWSGI reply: no status");
    if (is_name((const unsigned char *)v.status.ptr, v.status.len,
                "notfound") ||
        is_name((const unsigned char *)v.status.ptr, v.status.len, "error"))
        return CACHE_MISS;
    if (!is_name((const unsigned char *)v.status.ptr, v.status.len, "ok"))
        return cache_fail(err, CACHE_FAIL, "uWSGI reply: status '%.*s'",
                          (int)(v.status.len > 40 ? 40 : v.status.len),
                          v.status.ptr);
    if (v.has_size) {
        r->has_value = 1;
        r->value = (const char *)p + 4 + pktsize;
        r->value_len = (size_t)v.size;
    }
    r->expires = v.has_expires ? v.expires : 0;
    return CACHE_OK;
}
