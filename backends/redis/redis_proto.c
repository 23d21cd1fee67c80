/*
 * redis_proto.c - the Redis protocol of the cache operations (see
 * redis_proto.h): requests written in RESP here, replies read with
 * hiredis's reader and mapped to the engine's results. No sockets here.
 */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "hostport.h"
#include "redis_proto.h"

/* ---- requests ------------------------------------------------------------ */

void redis_req_init(redis_req *q)
{
    memset(q, 0, sizeof *q);
    cache_buf_init(&q->bytes);
    cache_buf_init(&q->argbuf);
}

void redis_req_drop_replies(redis_req *q)
{
    for (size_t i = 0; i < q->nreplies; i++)
        freeReplyObject(q->replies[i]);
    q->nreplies = 0;
}

void redis_req_reset(redis_req *q)
{
    redis_req_drop_replies(q);
    q->bytes.len = 0;
    q->ncmds = 0;
}

void redis_req_free(redis_req *q)
{
    redis_req_drop_replies(q);
    cache_buf_free(&q->bytes);
    cache_buf_free(&q->argbuf);
    free(q->replies);
    free(q->argv);
    free(q->argvlen);
    redis_req_init(q);
}

static int no_memory(cache_err *err)
{
    return cache_fail(err, CACHE_ENOMEM, "out of memory");
}

static int reserve_argv(redis_req *q, size_t argc, cache_err *err)
{
    if (argc <= q->argv_cap)
        return CACHE_OK;
    const char **argv = realloc(q->argv, argc * sizeof *argv);
    if (!argv)
        return no_memory(err);
    q->argv = argv;
    size_t *lens = realloc(q->argvlen, argc * sizeof *lens);
    if (!lens)
        return no_memory(err);
    q->argvlen = lens;
    q->argv_cap = argc;
    return CACHE_OK;
}

/* Writes v in decimal at p; returns the number of digits. */
static size_t put_decimal(char *p, size_t v)
{
    char tmp[20];
    size_t n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* Appends a command in RESP - an array of bulk strings, "*<argc>\r\n" then
 * "$<len>\r\n<bytes>\r\n" per argument - to out. The same bytes as
 * hiredis's redisFormatCommandArgv, which goes through sprintf and a malloc
 * per command: half the client's CPU of a GET on loopback. -1 on no memory. */
static int format_command(cache_buf *out, size_t argc, const char **argv,
                          const size_t *argvlen)
{
    size_t need = 1 + 20 + 2;
    for (size_t i = 0; i < argc; i++)
        need += 1 + 20 + 2 + argvlen[i] + 2;
    if (cache_buf_reserve(out, need))
        return -1;
    char *p = out->data + out->len;
    *p++ = '*';
    p += put_decimal(p, argc);
    *p++ = '\r';
    *p++ = '\n';
    for (size_t i = 0; i < argc; i++) {
        *p++ = '$';
        p += put_decimal(p, argvlen[i]);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], argvlen[i]);
        p += argvlen[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    out->len = (size_t)(p - out->data);
    return 0;
}

int redis_req_add(redis_req *q, size_t argc, const redis_arg *args,
                  cache_err *err)
{
    if (argc == 0 || argc > INT_MAX)
        return cache_fail(err, CACHE_EINVAL, "redis: bad argument count");
    int rc = reserve_argv(q, argc, err);
    if (rc != CACHE_OK)
        return rc;
    /* Two-part arguments are joined in argbuf, sized first so that the
     * pointers taken into it stay valid. */
    size_t joined = 0;
    for (size_t i = 0; i < argc; i++)
        if (args[i].head.len && args[i].tail.len)
            joined += args[i].head.len + args[i].tail.len;
    q->argbuf.len = 0;
    if (cache_buf_reserve(&q->argbuf, joined))
        return no_memory(err);
    for (size_t i = 0; i < argc; i++) {
        const redis_arg *a = &args[i];
        if (a->head.len && a->tail.len) {
            char *at = q->argbuf.data + q->argbuf.len;
            cache_buf_append(&q->argbuf, a->head.ptr, a->head.len);
            cache_buf_append(&q->argbuf, a->tail.ptr, a->tail.len);
            q->argv[i] = at;
            q->argvlen[i] = a->head.len + a->tail.len;
        } else if (a->tail.len) {
            q->argv[i] = a->tail.ptr;
            q->argvlen[i] = a->tail.len;
        } else {
            q->argv[i] = a->head.len ? a->head.ptr : "";
            q->argvlen[i] = a->head.len;
        }
    }
    if (format_command(&q->bytes, argc, q->argv, q->argvlen) != 0)
        return no_memory(err);
    q->ncmds++;
    return CACHE_OK;
}

static redis_arg zarg(const char *s)
{
    return (redis_arg){{s, strlen(s)}, {NULL, 0}};
}

static redis_arg sarg(cache_str s)
{
    return (redis_arg){{NULL, 0}, s};
}

int redis_req_addz(redis_req *q, cache_err *err, size_t argc, ...)
{
    redis_arg args[8];
    if (argc > 8)
        return cache_fail(err, CACHE_EINVAL, "redis: too many arguments");
    va_list ap;
    va_start(ap, argc);
    for (size_t i = 0; i < argc; i++)
        args[i] = zarg(va_arg(ap, const char *));
    va_end(ap);
    return redis_req_add(q, argc, args, err);
}

int redis_req_reserve_replies(redis_req *q, cache_err *err)
{
    if (q->ncmds <= q->replies_cap)
        return CACHE_OK;
    redisReply **r = realloc(q->replies, q->ncmds * sizeof *r);
    if (!r)
        return no_memory(err);
    q->replies = r;
    q->replies_cap = q->ncmds;
    return CACHE_OK;
}

/* ---- the reader ------------------------------------------------------------ */

/* hiredis's default reply functions, with array creation bounded: a reply
 * declaring a huge array must not make us allocate for it. */
static redisReplyObjectFunctions bounded_fns;
static void *(*default_create_array)(const redisReadTask *, int);
static pthread_once_t bounded_once = PTHREAD_ONCE_INIT;

static void *bounded_create_array(const redisReadTask *t, int n)
{
    if (n < 0 || n > REDIS_MAX_ELEMENTS)
        return NULL; /* the reader reports an error and stops */
    return default_create_array(t, n);
}

static void init_bounded(void)
{
    redisReader *r = redisReaderCreate();
    if (!r)
        return;
    bounded_fns = *r->fn;
    default_create_array = bounded_fns.createArray;
    bounded_fns.createArray = bounded_create_array;
    redisReaderFree(r);
}

redisReader *redis_reader_new(void)
{
    pthread_once(&bounded_once, init_bounded);
    redisReader *r = redisReaderCreate();
    if (r && default_create_array)
        r->fn = &bounded_fns;
    return r;
}

int redis_reader_next(redisReader *r, redisReply **out, cache_err *err)
{
    void *reply = NULL;
    if (redisReaderGetReply(r, &reply) != REDIS_OK) {
        /* Out of memory here almost always means an array over our bound. */
        const char *why = r->err == REDIS_ERR_OOM
                              ? "reply too large (or out of memory)"
                              : r->errstr;
        return cache_fail(err, CACHE_FAIL, "protocol error: %s", why);
    }
    if (!reply)
        return 0;
    *out = reply;
    return 1;
}

int redis_reader_has_leftover(const redisReader *r)
{
    return r->pos < r->len;
}

/* ---- replies ---------------------------------------------------------------- */

static int reply_error(const redisReply *r, const char *label, int code,
                       cache_err *err)
{
    return cache_fail(err, code, "%s: %.*s", label,
                      (int)(r->len < 200 ? r->len : 200), r->str);
}

int redis_reply_check(const redisReply *r, const char *label, cache_err *err)
{
    if (r->type == REDIS_REPLY_ERROR)
        return reply_error(r, label, CACHE_FAIL, err);
    return CACHE_OK;
}

int redis_reply_is_error(const redisReply *r, const char *word)
{
    size_t n = strlen(word);
    return r->type == REDIS_REPLY_ERROR && r->len >= n &&
           memcmp(r->str, word, n) == 0 &&
           (r->len == n || r->str[n] == ' ');
}

static const char *type_name(int type)
{
    switch (type) {
    case REDIS_REPLY_STRING: return "bulk string";
    case REDIS_REPLY_ARRAY: return "array";
    case REDIS_REPLY_INTEGER: return "integer";
    case REDIS_REPLY_NIL: return "nil";
    case REDIS_REPLY_STATUS: return "status";
    case REDIS_REPLY_ERROR: return "error";
    }
    return "unknown";
}

/* An error reply as itself, anything else as "unexpected <type> reply". */
static int unexpected(const redisReply *r, const char *label, const char *cmd,
                      cache_err *err)
{
    if (r->type == REDIS_REPLY_ERROR)
        return reply_error(r, label, CACHE_FAIL, err);
    return cache_fail(err, CACHE_FAIL, "%s: unexpected %s reply to %s", label,
                      type_name(r->type), cmd);
}

int redis_reply_ok(const redisReply *r, const char *label, cache_err *err)
{
    if (r->type == REDIS_REPLY_STATUS)
        return CACHE_OK;
    return unexpected(r, label, "command", err);
}

/* ---- helpers ------------------------------------------------------------------ */

int64_t redis_ttl_ms(double ttl)
{
    /* The epsilon keeps 0.3 s from becoming 301 ms through 300.00000000000006. */
    double ms = ceil(ttl * 1000.0 - 1e-6);
    if (!(ms >= 1))
        ms = 1;
    if (ms > (double)REDIS_MAX_PX)
        ms = (double)REDIS_MAX_PX;
    return (int64_t)ms;
}

int redis_glob_prefix(const char *prefix, size_t plen, cache_buf *out)
{
    out->len = 0;
    if (cache_buf_reserve(out, 2 * plen + 1))
        return -1;
    for (size_t i = 0; i < plen; i++) {
        char c = prefix[i];
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\')
            cache_buf_append(out, "\\", 1);
        cache_buf_append(out, &c, 1);
    }
    cache_buf_append(out, "*", 1);
    return 0;
}

static redis_arg key_arg(const redis_proto *p, cache_str key)
{
    return (redis_arg){{p->prefix, p->plen}, key};
}

static int key_cmd(const redis_proto *p, redis_req *q, const char *cmd,
                   cache_str key, cache_err *err)
{
    redis_arg args[2] = {zarg(cmd), key_arg(p, key)};
    return redis_req_add(q, 2, args, err);
}

/* Appends a bulk or nil reply's value to out: CACHE_OK, CACHE_MISS (nil, or
 * a corrupt value: then err->code is CACHE_FAIL), or a failure. */
static int value_reply(const redis_proto *p, const redisReply *r,
                       cache_buf *out, const char *cmd, cache_err *err)
{
    if (r->type == REDIS_REPLY_NIL)
        return CACHE_MISS;
    if (r->type != REDIS_REPLY_STRING)
        return unexpected(r, p->label, cmd, err);
    int rc = cache_external_decode((cache_str){r->str, r->len}, out, err);
    if (rc == CACHE_FAIL)
        return CACHE_MISS; /* an unreadable entry reads as a miss */
    return rc;
}

/* ---- operations ---------------------------------------------------------------- */

int redis_op_get_build(const redis_proto *p, redis_req *q, cache_str key,
                       cache_err *err)
{
    return key_cmd(p, q, "GET", key, err);
}

int redis_op_get_finish(const redis_proto *p, const redis_req *q, size_t at,
                        cache_buf *out, cache_err *err)
{
    return value_reply(p, q->replies[at], out, "GET", err);
}

int redis_op_has_build(const redis_proto *p, redis_req *q, cache_str key,
                       cache_err *err)
{
    return key_cmd(p, q, "EXISTS", key, err);
}

static int count_reply(const redis_proto *p, const redisReply *r,
                       const char *cmd, cache_err *err)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return unexpected(r, p->label, cmd, err);
    return r->integer > 0 ? CACHE_OK : CACHE_MISS;
}

int redis_op_has_finish(const redis_proto *p, const redis_req *q, size_t at,
                        cache_err *err)
{
    return count_reply(p, q->replies[at], "EXISTS", err);
}

int redis_op_del_build(const redis_proto *p, redis_req *q, cache_str key,
                       cache_err *err)
{
    return key_cmd(p, q, "DEL", key, err);
}

int redis_op_del_finish(const redis_proto *p, const redis_req *q, size_t at,
                        cache_err *err)
{
    return count_reply(p, q->replies[at], "DEL", err);
}

int redis_op_set_build(const redis_proto *p, redis_req *q, cache_str key,
                       cache_str value, double ttl, int only_if_absent,
                       cache_buf *scratch, cache_err *err)
{
    /* Redis refuses a negative expiry: an entry stored already expired is an
     * absent one, so set deletes and add only looks. */
    if (ttl < 0)
        return key_cmd(p, q, only_if_absent ? "EXISTS" : "DEL", key, err);
    scratch->len = 0;
    if (cache_external_encode(value, scratch))
        return no_memory(err);
    char ms[24];
    redis_arg args[6];
    size_t n = 0;
    args[n++] = zarg("SET");
    args[n++] = key_arg(p, key);
    args[n++] = sarg((cache_str){scratch->data, scratch->len});
    if (only_if_absent)
        args[n++] = zarg("NX");
    if (ttl > 0) {
        snprintf(ms, sizeof ms, "%lld", (long long)redis_ttl_ms(ttl));
        args[n++] = zarg("PX");
        args[n++] = zarg(ms);
    }
    return redis_req_add(q, n, args, err);
}

int redis_op_set_finish(const redis_proto *p, const redis_req *q, size_t at,
                        double ttl, int only_if_absent, cache_err *err)
{
    const redisReply *r = q->replies[at];
    if (ttl < 0) {
        int rc = count_reply(p, r, only_if_absent ? "EXISTS" : "DEL", err);
        if (rc < 0)
            return rc;
        return only_if_absent && rc == CACHE_OK ? CACHE_EXISTS : CACHE_OK;
    }
    if (r->type == REDIS_REPLY_STATUS)
        return CACHE_OK;
    if (r->type == REDIS_REPLY_NIL && only_if_absent)
        return CACHE_EXISTS;
    return unexpected(r, p->label, "SET", err);
}

/* The increment, atomic in one command. An existing key is INCRBY'd and
 * keeps its TTL; a missing one is created at 0 with the new ttl (ARGV[2]:
 * milliseconds, 0 = none, -1 = expired at once) and then INCRBY'd.
 * The script answers the stored text (GET), never INCRBY's integer: inside a
 * script that integer is a Lua double, inexact past 2^53 and turned to a
 * wrong sign near 2^63 on the way back. */
static const char incr_script[] =
    "local k = KEYS[1]\n"
    "local ms = 0\n"
    "if redis.call('EXISTS', k) == 0 then\n"
    "  ms = tonumber(ARGV[2])\n"
    "  if ms > 0 then redis.call('SET', k, '0', 'PX', ARGV[2])\n"
    "  else redis.call('SET', k, '0') end\n"
    "end\n"
    "redis.call('INCRBY', k, ARGV[1])\n"
    "local v = redis.call('GET', k)\n"
    "if ms < 0 then redis.call('DEL', k) end\n"
    "return v\n";

int redis_op_incr_build(const redis_proto *p, redis_req *q, cache_str key,
                        int64_t delta, double new_ttl, cache_err *err)
{
    char d[24], ms[24];
    snprintf(d, sizeof d, "%lld", (long long)delta);
    if (new_ttl > 0)
        snprintf(ms, sizeof ms, "%lld", (long long)redis_ttl_ms(new_ttl));
    else
        snprintf(ms, sizeof ms, "%d", new_ttl < 0 ? -1 : 0);
    redis_arg args[6] = {zarg("EVAL"), zarg(incr_script), zarg("1"),
                         key_arg(p, key), zarg(d), zarg(ms)};
    return redis_req_add(q, 6, args, err);
}

static int mentions(const redisReply *r, const char *what)
{
    size_t n = strlen(what);
    for (size_t i = 0; i + n <= r->len; i++)
        if (memcmp(r->str + i, what, n) == 0)
            return 1;
    return 0;
}

int redis_op_incr_finish(const redis_proto *p, const redis_req *q, size_t at,
                         int64_t *result, cache_err *err)
{
    const redisReply *r = q->replies[at];
    if (r->type == REDIS_REPLY_STRING &&
        cache_parse_int(r->str, r->len, result))
        return CACHE_OK;
    if (r->type == REDIS_REPLY_ERROR &&
        (mentions(r, "not an integer") || mentions(r, "overflow")))
        return reply_error(r, p->label, CACHE_ENOTINT, err);
    return unexpected(r, p->label, "EVAL (increment)", err);
}

/* MGET or DEL of n prefixed keys. */
static int multi_key_cmd(const redis_proto *p, redis_req *q, const char *cmd,
                         size_t n, const cache_str *keys, cache_err *err)
{
    redis_arg *args = malloc((n + 1) * sizeof *args);
    if (!args)
        return no_memory(err);
    args[0] = zarg(cmd);
    for (size_t i = 0; i < n; i++)
        args[i + 1] = key_arg(p, keys[i]);
    int rc = redis_req_add(q, n + 1, args, err);
    free(args);
    return rc;
}

int redis_op_mget_build(const redis_proto *p, redis_req *q, size_t n,
                        const cache_str *keys, cache_err *err)
{
    return multi_key_cmd(p, q, "MGET", n, keys, err);
}

int redis_op_mget_finish(const redis_proto *p, const redis_req *q, size_t at,
                         size_t n, cache_buf *out, int *status,
                         cache_err *err)
{
    const redisReply *r = q->replies[at];
    if (r->type != REDIS_REPLY_ARRAY)
        return unexpected(r, p->label, "MGET", err);
    if (r->elements != n)
        return cache_fail(err, CACHE_FAIL,
                          "%s: MGET of %zu keys answered %zu values", p->label,
                          n, r->elements);
    for (size_t i = 0; i < n; i++) {
        status[i] = value_reply(p, r->element[i], &out[i], "MGET", err);
        if (status[i] < 0 && status[i] != CACHE_ENOMEM) {
            /* A value that is neither bulk nor nil: the whole reply is
             * suspect. */
            return status[i];
        }
        if (status[i] == CACHE_ENOMEM)
            return CACHE_ENOMEM;
    }
    return CACHE_OK;
}

int redis_op_mdel_build(const redis_proto *p, redis_req *q, size_t n,
                        const cache_str *keys, cache_err *err)
{
    return multi_key_cmd(p, q, "DEL", n, keys, err);
}

/* ---- Redis Cluster ------------------------------------------------------------ */

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as the cluster
 * specification defines the key slots. Bitwise: keys are short. */
static unsigned crc16(const char *s, size_t n)
{
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)s[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff
                               : (crc << 1) & 0xffff;
    }
    return crc;
}

unsigned redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        const char *from = open + 1;
        const char *close = memchr(from, '}', (size_t)(key + len - from));
        if (close && close > from)
            return crc16(from, (size_t)(close - from)) % REDIS_SLOTS;
    }
    return crc16(key, len) % REDIS_SLOTS;
}

int redis_redirect(const redisReply *r, int *ask, unsigned *slot, char *host,
                   size_t host_size, int *port)
{
    size_t skip;
    if (redis_reply_is_error(r, "MOVED")) {
        *ask = 0;
        skip = 6;
    } else if (redis_reply_is_error(r, "ASK")) {
        *ask = 1;
        skip = 4;
    } else {
        return 0;
    }
    /* "MOVED <slot> <host>:<port>" (host may be empty, or [v6]) */
    const char *p = r->str + skip, *end = r->str + r->len;
    unsigned long v = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9' && v < REDIS_SLOTS)
        v = v * 10 + (unsigned long)(*p++ - '0');
    if (p == digits || p >= end || *p != ' ' || v >= REDIS_SLOTS)
        return 0;
    p++;
    cache_hostport hp;
    if (cache_hostport_parse(p, (size_t)(end - p), CACHE_HP_EMPTY_HOST, 0, &hp,
                             "MOVED", NULL) != CACHE_OK)
        return 0;
    size_t hn = hp.host ? strlen(hp.host) : 0;
    if (hn >= host_size) {
        cache_hostport_free(&hp);
        return 0;
    }
    if (hn)
        memcpy(host, hp.host, hn);
    host[hn] = '\0';
    *port = hp.port;
    cache_hostport_free(&hp);
    *slot = (unsigned)v;
    return 1;
}

/* ---- clear ---------------------------------------------------------------------- */

int redis_op_scan_build(redis_req *q, const char *cursor, size_t cursor_len,
                        const cache_buf *pattern, cache_err *err)
{
    char count[16];
    snprintf(count, sizeof count, "%d", REDIS_CLEAR_BATCH);
    redis_arg args[6] = {zarg("SCAN"),
                         sarg((cache_str){cursor, cursor_len}),
                         zarg("MATCH"),
                         sarg((cache_str){pattern->data, pattern->len}),
                         zarg("COUNT"),
                         zarg(count)};
    return redis_req_add(q, 6, args, err);
}

int redis_op_scan_finish(const redis_proto *p, const redis_req *q, size_t at,
                         char *cursor, size_t *cursor_len,
                         const redisReply **keys, cache_err *err)
{
    const redisReply *r = q->replies[at];
    if (r->type != REDIS_REPLY_ARRAY)
        return unexpected(r, p->label, "SCAN", err);
    if (r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[0]->len == 0 || r->element[0]->len > 31 ||
        r->element[1]->type != REDIS_REPLY_ARRAY)
        return cache_fail(err, CACHE_FAIL, "%s: malformed SCAN reply",
                          p->label);
    for (size_t i = 0; i < r->element[1]->elements; i++)
        if (r->element[1]->element[i]->type != REDIS_REPLY_STRING)
            return cache_fail(err, CACHE_FAIL, "%s: malformed SCAN reply",
                              p->label);
    memcpy(cursor, r->element[0]->str, r->element[0]->len);
    *cursor_len = r->element[0]->len;
    cursor[*cursor_len] = '\0';
    *keys = r->element[1];
    return CACHE_OK;
}
