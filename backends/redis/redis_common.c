/*
 * redis_common.c - the cache operations on one Redis server at a time
 * (shared by RedisCache and RedisSentinelCache), options, addresses, URLs.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "hostport.h"
#include "redis_common.h"

/* ---- the shared part -------------------------------------------------------- */

int redis_single_init(redis_single *s, const char *prefix, size_t plen,
                      cache_err *err)
{
    redis_req_init(&s->req);
    redis_req_init(&s->req2);
    cache_buf_init(&s->scratch);
    cache_buf_init(&s->pattern);
    s->proto.prefix = cache_strndup(prefix ? prefix : "", prefix ? plen : 0);
    s->proto.plen = prefix ? plen : 0;
    s->proto.label = "redis";
    if (!s->proto.prefix)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    return CACHE_OK;
}

void redis_single_free(redis_single *s)
{
    redis_req_free(&s->req);
    redis_req_free(&s->req2);
    cache_buf_free(&s->scratch);
    cache_buf_free(&s->pattern);
    free(s->proto.prefix);
    s->proto.prefix = NULL;
}

/* Sends the request built in s->req; on success the replies are there. */
static int run(redis_single *s, cache_err *err)
{
    return s->exchange(s, &s->req, err);
}

/* Every operation ends here: the replies are freed, the buffers kept. */
static int done(redis_single *s, int rc)
{
    redis_req_reset(&s->req);
    return rc;
}

int redis_single_get(cache_backend *b, cache_str key, cache_buf *out,
                     cache_err *err)
{
    redis_single *s = (redis_single *)b;
    redis_req_reset(&s->req);
    int rc = redis_op_get_build(&s->proto, &s->req, key, err);
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc == CACHE_OK)
        rc = redis_op_get_finish(&s->proto, &s->req, 0, out, err);
    return done(s, rc);
}

int redis_single_set(cache_backend *b, cache_str key, cache_str value,
                     double ttl, int only_if_absent, cache_err *err)
{
    redis_single *s = (redis_single *)b;
    redis_req_reset(&s->req);
    int rc = redis_op_set_build(&s->proto, &s->req, key, value, ttl,
                                only_if_absent, &s->scratch, err);
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc == CACHE_OK)
        rc = redis_op_set_finish(&s->proto, &s->req, 0, ttl, only_if_absent,
                                 err);
    return done(s, rc);
}

int redis_single_del(cache_backend *b, cache_str key, cache_err *err)
{
    redis_single *s = (redis_single *)b;
    redis_req_reset(&s->req);
    int rc = redis_op_del_build(&s->proto, &s->req, key, err);
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc == CACHE_OK)
        rc = redis_op_del_finish(&s->proto, &s->req, 0, err);
    return done(s, rc);
}

int redis_single_has(cache_backend *b, cache_str key, cache_err *err)
{
    redis_single *s = (redis_single *)b;
    redis_req_reset(&s->req);
    int rc = redis_op_has_build(&s->proto, &s->req, key, err);
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc == CACHE_OK)
        rc = redis_op_has_finish(&s->proto, &s->req, 0, err);
    return done(s, rc);
}

int redis_single_incr(cache_backend *b, cache_str key, int64_t delta,
                      double new_ttl, int64_t *result, cache_err *err)
{
    redis_single *s = (redis_single *)b;
    redis_req_reset(&s->req);
    int rc = redis_op_incr_build(&s->proto, &s->req, key, delta, new_ttl, err);
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc == CACHE_OK)
        rc = redis_op_incr_finish(&s->proto, &s->req, 0, result, err);
    return done(s, rc);
}

int redis_single_get_many(cache_backend *b, size_t n, const cache_str *keys,
                          cache_buf *out, int *status, cache_err *err)
{
    redis_single *s = (redis_single *)b;
    if (n == 0)
        return CACHE_OK;
    redis_req_reset(&s->req);
    int rc = redis_op_mget_build(&s->proto, &s->req, n, keys, err);
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc == CACHE_OK)
        rc = redis_op_mget_finish(&s->proto, &s->req, 0, n, out, status, err);
    return done(s, rc);
}

int redis_single_set_many(cache_backend *b, size_t n, const cache_str *keys,
                          const cache_str *values, double ttl, int *status,
                          cache_err *err)
{
    redis_single *s = (redis_single *)b;
    if (n == 0)
        return CACHE_OK;
    redis_req_reset(&s->req);
    int rc = CACHE_OK;
    if (ttl < 0) {
        /* Already expired entries: one DEL of them all. */
        rc = redis_op_mdel_build(&s->proto, &s->req, n, keys, err);
        if (rc == CACHE_OK)
            rc = run(s, err);
        if (rc == CACHE_OK)
            rc = redis_reply_check(s->req.replies[0], s->proto.label, err);
        for (size_t i = 0; i < n; i++)
            status[i] = rc;
        return done(s, rc);
    }
    /* One pipeline, one SET per entry (no MULTI: it works on proxies too). */
    for (size_t i = 0; i < n && rc == CACHE_OK; i++)
        rc = redis_op_set_build(&s->proto, &s->req, keys[i], values[i], ttl, 0,
                                &s->scratch, err);
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc != CACHE_OK) {
        for (size_t i = 0; i < n; i++)
            status[i] = rc;
        return done(s, rc);
    }
    for (size_t i = 0; i < n; i++)
        status[i] = redis_op_set_finish(&s->proto, &s->req, i, ttl, 0, err);
    return done(s, CACHE_OK);
}

int redis_single_del_many(cache_backend *b, size_t n, const cache_str *keys,
                          int *status, cache_err *err)
{
    redis_single *s = (redis_single *)b;
    if (n == 0)
        return CACHE_OK;
    redis_req_reset(&s->req);
    int rc = CACHE_OK;
    /* One DEL per key in one pipeline: one round trip, and each key's own
     * answer (one multi-key DEL would only give a count). */
    for (size_t i = 0; i < n && rc == CACHE_OK; i++)
        rc = redis_op_del_build(&s->proto, &s->req, keys[i], err);
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc != CACHE_OK) {
        for (size_t i = 0; i < n; i++)
            status[i] = rc;
        return done(s, rc);
    }
    for (size_t i = 0; i < n; i++)
        status[i] = redis_op_del_finish(&s->proto, &s->req, i, err);
    return done(s, CACHE_OK);
}

/* ---- clear ------------------------------------------------------------------- */

static int flushdb(redis_single *s, cache_err *err)
{
    redis_req_reset(&s->req);
    int rc = redis_req_addz(&s->req, err, 1, "FLUSHDB");
    if (rc == CACHE_OK)
        rc = run(s, err);
    if (rc == CACHE_OK)
        rc = redis_reply_ok(s->req.replies[0], s->proto.label, err);
    return done(s, rc);
}

/* Appends the UNLINK of the keys of a SCAN reply: one command, or one per
 * key (Redis Cluster refuses multi-key commands across slots). UNLINK
 * (Redis >= 4.0) frees the values in the background, so a big clear does
 * not stall the server. Returns the number of commands added, or < 0. */
static int add_unlink(redis_req *q, const redisReply *keys, int per_key,
                      cache_err *err)
{
    if (per_key) {
        for (size_t i = 0; i < keys->elements; i++) {
            redis_arg args[2] = {
                {{"UNLINK", 6}, {NULL, 0}},
                {{NULL, 0}, {keys->element[i]->str, keys->element[i]->len}}};
            int rc = redis_req_add(q, 2, args, err);
            if (rc != CACHE_OK)
                return rc;
        }
        return (int)keys->elements;
    }
    redis_arg *args = malloc((keys->elements + 1) * sizeof *args);
    if (!args)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    args[0] = (redis_arg){{"UNLINK", 6}, {NULL, 0}};
    for (size_t i = 0; i < keys->elements; i++)
        args[i + 1] = (redis_arg){{NULL, 0},
                                  {keys->element[i]->str, keys->element[i]->len}};
    int rc = redis_req_add(q, keys->elements + 1, args, err);
    free(args);
    return rc == CACHE_OK ? 1 : rc;
}

/* UNLINK answers a count; a key whose slot just moved (MOVED / ASK) is left
 * to whoever owns it now. */
static int check_unlinks(const redis_proto *p, const redis_req *q, int n,
                         cache_err *err)
{
    for (int i = 0; i < n; i++) {
        const redisReply *r = q->replies[i];
        if (r->type == REDIS_REPLY_INTEGER || redis_reply_is_error(r, "MOVED") ||
            redis_reply_is_error(r, "ASK"))
            continue;
        if (redis_reply_check(r, p->label, err) < 0)
            return CACHE_FAIL;
        return cache_fail(err, CACHE_FAIL, "%s: unexpected reply to UNLINK",
                          p->label);
    }
    return CACHE_OK;
}

int redis_clear_prefix(const redis_proto *p, redis_req *a, redis_req *b,
                       cache_buf *pattern, int per_key, redis_xchg_fn fn,
                       void *ctx, cache_err *err)
{
    if (redis_glob_prefix(p->prefix, p->plen, pattern))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    redis_req *cur = a, *next = b;
    redis_req_reset(cur);
    char cursor[32] = "0";
    size_t clen = 1;
    const redisReply *keys = NULL; /* the batch to delete, in cur */
    int scanned = 0, rc = CACHE_OK;
    for (;;) {
        int more = !scanned || !(clen == 1 && cursor[0] == '0');
        int nunlink = 0;
        if (!more && !(keys && keys->elements > 0))
            break;
        redis_req_reset(next);
        if (keys && keys->elements > 0) {
            nunlink = add_unlink(next, keys, per_key, err);
            rc = nunlink < 0 ? nunlink : CACHE_OK;
        }
        if (rc == CACHE_OK && more)
            rc = redis_op_scan_build(next, cursor, clen, pattern, err);
        if (rc == CACHE_OK)
            rc = fn(ctx, next, err);
        if (rc == CACHE_OK)
            rc = check_unlinks(p, next, nunlink, err);
        redis_req_reset(cur);
        keys = NULL;
        redis_req *t = cur;
        cur = next;
        next = t;
        if (rc == CACHE_OK && more) {
            rc = redis_op_scan_finish(p, cur, (size_t)nunlink, cursor, &clen,
                                      &keys, err);
            scanned = 1;
        }
        if (rc != CACHE_OK)
            break;
    }
    redis_req_reset(a);
    redis_req_reset(b);
    return rc;
}

static int single_xchg(void *ctx, redis_req *q, cache_err *err)
{
    redis_single *s = ctx;
    return s->exchange(s, q, err);
}

/* With a key prefix only that prefix is cleared; without one, the whole
 * database (FLUSHDB), as cachelib does. */
int redis_single_clear(cache_backend *b, cache_err *err)
{
    redis_single *s = (redis_single *)b;
    if (s->proto.plen == 0)
        return flushdb(s, err);
    /* SCAN MATCH <prefix>* in batches, never KEYS (which blocks the
     * server); each round trip carries the UNLINK of the previous batch and
     * the next SCAN. */
    return redis_clear_prefix(&s->proto, &s->req, &s->req2, &s->pattern, 0,
                              single_xchg, s, err);
}

/* ---- options ------------------------------------------------------------------- */

int redis_take_common_opts(cache_opts *o, redis_common_opts *out,
                           cache_err *err)
{
    out->prefix = NULL;
    out->plen = 0;
    out->connect_timeout = 1.0;
    out->timeout = 1.0;
    if (cache_opt_str(o, "key_prefix", &out->prefix, &out->plen, err) < 0 ||
        cache_opt_num(o, "connect_timeout", 0, 1e6, &out->connect_timeout,
                      err) < 0 ||
        cache_opt_num(o, "timeout", 0, 1e6, &out->timeout, err) < 0)
        return CACHE_EINVAL;
    return CACHE_OK;
}

int redis_take_str(cache_opts *o, const char *name, char **out,
                   cache_err *err)
{
    const char *s;
    size_t n;
    int got = cache_opt_str(o, name, &s, &n, err);
    if (got < 0)
        return got;
    if (!got)
        return CACHE_OK;
    if (memchr(s, '\0', n))
        return cache_fail(err, CACHE_EINVAL, "option '%s': contains a NUL byte",
                          name);
    free(*out);
    *out = cache_strndup(s, n);
    return *out ? CACHE_OK : cache_fail(err, CACHE_ENOMEM, "out of memory");
}

/* ---- TLS options ------------------------------------------------------------------ */

void redis_tls_opts_init(redis_tls_opts *t)
{
    memset(t, 0, sizeof *t);
    t->ssl = t->verify = t->check_hostname = -1;
}

void redis_tls_opts_free(redis_tls_opts *t)
{
    free(t->ca_certs);
    free(t->certfile);
    free(t->keyfile);
    redis_tls_opts_init(t);
}

/* ssl_cert_reqs: "required" -> 1, "none" -> 0 (redis-py's names). */
static int parse_cert_reqs(const char *s, size_t n, int *verify,
                           cache_err *err)
{
    if (n == 8 && memcmp(s, "required", 8) == 0)
        *verify = 1;
    else if (n == 4 && memcmp(s, "none", 4) == 0)
        *verify = 0;
    else
        return cache_fail(err, CACHE_EINVAL,
                          "option 'ssl_cert_reqs': 'required' or 'none' "
                          "expected, got '%.*s'",
                          (int)(n < 40 ? n : 40), s);
    return CACHE_OK;
}

int redis_take_tls_opts(cache_opts *o, redis_tls_opts *t, cache_err *err)
{
    int rc, b;
    const char *s;
    size_t n;
    if ((rc = cache_opt_bool(o, "ssl", &b, err)) < 0)
        return rc;
    if (rc)
        t->ssl = b;
    if ((rc = cache_opt_bool(o, "ssl_check_hostname", &b, err)) < 0)
        return rc;
    if (rc)
        t->check_hostname = b;
    if ((rc = cache_opt_str(o, "ssl_cert_reqs", &s, &n, err)) < 0)
        return rc;
    if (rc && (rc = parse_cert_reqs(s, n, &t->verify, err)) != CACHE_OK)
        return rc;
    if ((rc = redis_take_str(o, "ssl_ca_certs", &t->ca_certs, err)) != CACHE_OK ||
        (rc = redis_take_str(o, "ssl_certfile", &t->certfile, err)) != CACHE_OK ||
        (rc = redis_take_str(o, "ssl_keyfile", &t->keyfile, err)) != CACHE_OK)
        return rc;
    return CACHE_OK;
}

static void take_text(char **to, char **from)
{
    if (*from) {
        free(*to);
        *to = *from;
        *from = NULL;
    }
}

void redis_tls_opts_merge(redis_tls_opts *to, redis_tls_opts *from)
{
    if (from->ssl >= 0)
        to->ssl = from->ssl;
    if (from->verify >= 0)
        to->verify = from->verify;
    if (from->check_hostname >= 0)
        to->check_hostname = from->check_hostname;
    take_text(&to->ca_certs, &from->ca_certs);
    take_text(&to->certfile, &from->certfile);
    take_text(&to->keyfile, &from->keyfile);
}

int redis_tls_setup(const redis_tls_opts *t, int also, redis_tls **out,
                    cache_err *err)
{
    *out = NULL;
    if (t->ssl == 1 || also)
        return redis_tls_new(t, out, err);
    const char *given = t->ca_certs         ? "ssl_ca_certs"
                        : t->certfile       ? "ssl_certfile"
                        : t->keyfile        ? "ssl_keyfile"
                        : t->verify >= 0    ? "ssl_cert_reqs"
                        : t->check_hostname >= 0 ? "ssl_check_hostname"
                                            : NULL;
    if (given)
        return cache_fail(err, CACHE_EINVAL,
                          "option '%s': TLS is not on (ssl = true, or a "
                          "rediss:// url)",
                          given);
    return CACHE_OK;
}

/* ---- addresses ------------------------------------------------------------------ */

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s))
        (*s)++, (*n)--;
    while (*n && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

int redis_each_address(cache_opts *o, const char *name, int required,
                       int (*fn)(void *ctx, const char *host, int port,
                                 cache_err *err),
                       void *ctx, cache_err *err)
{
    const cache_opt *list;
    int got = cache_opt_list(o, name, &list, err);
    if (got < 0)
        return got;
    char what[64];
    snprintf(what, sizeof what, "option '%s'", name);
    size_t count = 0;
    for (size_t i = 0; got && i < list->count; i++) {
        const char *s = list->list[i], *end = s + list->list_lens[i];
        while (s < end) { /* "h:p,h:p" inside one item too */
            const char *comma = memchr(s, ',', (size_t)(end - s));
            const char *stop = comma ? comma : end;
            const char *p = s;
            size_t n = (size_t)(stop - s);
            trim(&p, &n);
            if (n) {
                cache_hostport hp;
                int rc = cache_hostport_parse(p, n, 0, 0, &hp, what, err);
                if (rc != CACHE_OK)
                    return rc;
                rc = fn(ctx, hp.host, hp.port, err);
                cache_hostport_free(&hp);
                if (rc != CACHE_OK)
                    return rc;
                count++;
            }
            s = comma ? comma + 1 : end;
        }
    }
    if ((got || required) && count == 0)
        return cache_fail(err, CACHE_EINVAL,
                          "option '%s': at least one host:port is required",
                          name);
    return CACHE_OK;
}

/* ---- URLs ------------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* %-decodes s[0..n) into a new string; NULL on bad escapes, NUL bytes or no
 * memory (*bad tells which). */
static char *pct_decode(const char *s, size_t n, int *bad)
{
    char *out = malloc(n + 1);
    size_t j = 0;
    *bad = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                *bad = 1;
                free(out);
                return NULL;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '\0') {
            *bad = 1;
            free(out);
            return NULL;
        }
        out[j++] = c;
    }
    out[j] = '\0';
    return out;
}

void redis_url_free(redis_url *u)
{
    free(u->host);
    free(u->path);
    free(u->username);
    if (u->password)
        memset(u->password, 0, strlen(u->password));
    free(u->password);
    u->host = u->path = u->username = u->password = NULL;
    redis_tls_opts_free(&u->tls);
}

static int url_bad(cache_err *err, const char *why)
{
    return cache_fail(err, CACHE_EINVAL, "option 'url': %s", why);
}

/* A decoded copy into *out (replacing what was there). */
static int url_text(const char *s, size_t n, char **out, const char *what,
                    cache_err *err)
{
    int bad;
    char *v = pct_decode(s, n, &bad);
    if (!v) {
        if (!bad)
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        return cache_fail(err, CACHE_EINVAL, "option 'url': bad %s", what);
    }
    free(*out);
    *out = v;
    return CACHE_OK;
}

static int url_db(const char *s, size_t n, redis_url *u, cache_err *err)
{
    int64_t db;
    if (!cache_parse_int(s, n, &db) || db < 0 || db > 1000000)
        return url_bad(err, "the database must be a number >= 0");
    u->db = db;
    return CACHE_OK;
}

/* "[user]:password" or "user" (no password). */
static int url_userinfo(const char *s, size_t n, redis_url *u, cache_err *err)
{
    const char *colon = memchr(s, ':', n);
    size_t un = colon ? (size_t)(colon - s) : n;
    int rc = CACHE_OK;
    if (un)
        rc = url_text(s, un, &u->username, "user name", err);
    if (rc == CACHE_OK && colon)
        rc = url_text(colon + 1, (size_t)(s + n - colon - 1), &u->password,
                      "password", err);
    return rc;
}

/* "host", "host:port", "[v6]", "[v6]:port"; an empty host keeps the
 * default, and so does a missing port. */
static int url_hostport(const char *s, size_t n, redis_url *u, cache_err *err)
{
    cache_hostport hp;
    int rc = cache_hostport_parse(s, n,
                                  CACHE_HP_PORT_OPTIONAL | CACHE_HP_EMPTY_HOST,
                                  u->port, &hp, "option 'url'", err);
    if (rc != CACHE_OK)
        return rc;
    u->port = hp.port;
    if (hp.host)
        rc = url_text(hp.host, strlen(hp.host), &u->host, "host", err);
    cache_hostport_free(&hp);
    return rc;
}

/* A yes/no parameter: true/false, yes/no, 1/0 (any case). */
static int url_bool(const char *s, size_t n, int *out, const char *name,
                    cache_err *err)
{
    static const char *const yes[] = {"true", "yes", "1"};
    static const char *const no[] = {"false", "no", "0"};
    for (size_t i = 0; i < 3; i++) {
        if (n == strlen(yes[i]) && strncasecmp(s, yes[i], n) == 0) {
            *out = 1;
            return CACHE_OK;
        }
        if (n == strlen(no[i]) && strncasecmp(s, no[i], n) == 0) {
            *out = 0;
            return CACHE_OK;
        }
    }
    return cache_fail(err, CACHE_EINVAL,
                      "option 'url': parameter '%s': true or false expected",
                      name);
}

/* The ssl_* parameters redis-py reads from a URL; 0 when name is none. */
static int url_tls_param(const char *name, size_t kn, const char *v,
                         size_t vn, redis_url *u, int *rc, cache_err *err)
{
#define IS(lit) (kn == sizeof lit - 1 && memcmp(name, lit, kn) == 0)
    if (IS("ssl_ca_certs"))
        *rc = url_text(v, vn, &u->tls.ca_certs, "ssl_ca_certs", err);
    else if (IS("ssl_certfile"))
        *rc = url_text(v, vn, &u->tls.certfile, "ssl_certfile", err);
    else if (IS("ssl_keyfile"))
        *rc = url_text(v, vn, &u->tls.keyfile, "ssl_keyfile", err);
    else if (IS("ssl_cert_reqs"))
        *rc = parse_cert_reqs(v, vn, &u->tls.verify, err);
    else if (IS("ssl_check_hostname"))
        *rc = url_bool(v, vn, &u->tls.check_hostname, "ssl_check_hostname",
                       err);
    else
        return 0;
#undef IS
    return 1;
}

/* db=N, password=..., username=..., ssl_*=... separated by '&'. */
static int url_query(const char *s, size_t n, redis_url *u, cache_err *err)
{
    const char *end = s + n;
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(stop - s));
        if (stop > s) {
            if (!eq)
                return url_bad(err, "query parameters are name=value");
            size_t kn = (size_t)(eq - s), vn = (size_t)(stop - eq - 1);
            int rc;
            if (kn == 2 && memcmp(s, "db", 2) == 0)
                rc = url_db(eq + 1, vn, u, err);
            else if (kn == 8 && memcmp(s, "password", 8) == 0)
                rc = url_text(eq + 1, vn, &u->password, "password", err);
            else if (kn == 8 && memcmp(s, "username", 8) == 0)
                rc = url_text(eq + 1, vn, &u->username, "user name", err);
            else if (url_tls_param(s, kn, eq + 1, vn, u, &rc, err))
                ; /* rc set */
            else
                rc = cache_fail(err, CACHE_EINVAL,
                                "option 'url': unknown parameter '%.*s'",
                                (int)(kn < 40 ? kn : 40), s);
            if (rc != CACHE_OK)
                return rc;
        }
        s = amp ? amp + 1 : end;
    }
    return CACHE_OK;
}

static int url_parse_parts(const char *url, size_t len, redis_url *u,
                           cache_err *err)
{
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= len; i++)
        if (memcmp(url + i, "://", 3) == 0) {
            sep = url + i;
            break;
        }
    if (!sep)
        return url_bad(err, "expected redis[s]://host[:port][/db] or unix://path");
    size_t sn = (size_t)(sep - url);
    int is_unix = 0;
    if (sn == 5 && strncasecmp(url, "redis", 5) == 0)
        is_unix = 0;
    else if (sn == 4 && strncasecmp(url, "unix", 4) == 0)
        is_unix = 1;
    else if (sn == 6 && strncasecmp(url, "rediss", 6) == 0)
        u->tls.ssl = 1;
    else
        return url_bad(err, "the scheme must be redis://, rediss:// or unix://");
    const char *s = sep + 3, *end = url + len;
    const char *q = memchr(s, '?', (size_t)(end - s));
    const char *body_end = q ? q : end;
    int rc = CACHE_OK;
    if (is_unix) {
        /* [[user]:password@]/path : the path starts at the first '/'. */
        const char *slash = memchr(s, '/', (size_t)(body_end - s));
        if (!slash)
            return url_bad(err, "unix:// needs an absolute path");
        if (slash > s) {
            if (slash[-1] != '@')
                return url_bad(err, "unix:// needs an absolute path");
            rc = url_userinfo(s, (size_t)(slash - 1 - s), u, err);
        }
        if (rc == CACHE_OK)
            rc = url_text(slash, (size_t)(body_end - slash), &u->path, "path",
                          err);
    } else {
        const char *slash = memchr(s, '/', (size_t)(body_end - s));
        const char *auth_end = slash ? slash : body_end;
        const char *at = NULL;
        for (const char *p = s; p < auth_end; p++)
            if (*p == '@')
                at = p; /* the last '@': a password may hold one */
        if (at)
            rc = url_userinfo(s, (size_t)(at - s), u, err);
        if (rc == CACHE_OK)
            rc = url_hostport(at ? at + 1 : s,
                              (size_t)(auth_end - (at ? at + 1 : s)), u, err);
        if (rc == CACHE_OK && slash && body_end - slash > 1)
            rc = url_db(slash + 1, (size_t)(body_end - slash - 1), u, err);
    }
    if (rc == CACHE_OK && q)
        rc = url_query(q + 1, (size_t)(end - q - 1), u, err);
    return rc;
}

int redis_url_parse(const char *url, size_t len, redis_url *u, cache_err *err)
{
    memset(u, 0, sizeof *u);
    u->port = -1;
    u->db = -1;
    redis_tls_opts_init(&u->tls);
    int rc = url_parse_parts(url, len, u, err);
    if (rc != CACHE_OK)
        redis_url_free(u);
    return rc;
}
