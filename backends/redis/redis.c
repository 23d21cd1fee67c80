/*
 * redis.c - RedisCache: cachelib's RedisCache on one Redis server, over one
 * reused connection (redis_net.c) speaking redis_proto.c.
 *
 * Options: host = "localhost", port = 6379, or url =
 * "redis[s]://[[user]:password@]host[:port][/db]" / "unix://path?db=N", or
 * unix_socket = path; password, username (Redis 6 ACL), db = 0, key_prefix,
 * connect_timeout = 1.0, timeout = 1.0 (seconds; per request); ssl = false
 * (rediss:// means true), ssl_ca_certs, ssl_certfile, ssl_keyfile,
 * ssl_cert_reqs = "required", ssl_check_hostname (redis_tls.h).
 * What the URL says wins over host / port / unix_socket and the ssl_*
 * options; password, username and db options fill in what it leaves out.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "redis_co.h"
#include "redis_common.h"

typedef struct redis_backend {
    redis_single s; /* first: its base is the cache_backend */
    redis_conn conn;
    cache_co_opts co; /* its cosocket path (redis_co.c) */
} redis_backend;

static int exchange(redis_single *s, redis_req *q, cache_err *err)
{
    redis_backend *r = (redis_backend *)s;
    return redis_exchange_on(&s->base, &r->conn, q, err);
}

static void redis_destroy(cache_backend *b)
{
    redis_backend *r = (redis_backend *)b;
    redis_conn_free(&r->conn);
    redis_single_free(&r->s);
    free(r);
}

static const cache_vtable redis_vtable =
    REDIS_SINGLE_VTABLE("RedisCache", redis_destroy);

/* Where to connect and as whom, from the options. */
typedef struct target {
    char *host, *path, *username, *password;
    int port;
    int64_t db;
    redis_tls_opts tls;
} target;

static void target_free(target *t)
{
    redis_tls_opts_free(&t->tls);
    free(t->host);
    free(t->path);
    free(t->username);
    if (t->password)
        memset(t->password, 0, strlen(t->password));
    free(t->password);
}

/* Moves *from into *to when set (URL parts win over options). */
static void take(char **to, char **from)
{
    if (*from) {
        free(*to);
        *to = *from;
        *from = NULL;
    }
}

static int read_target(cache_opts *o, target *t, cache_err *err)
{
    int64_t port = 6379, db = 0;
    const char *url;
    size_t url_len;
    int has_url, rc;
    if ((rc = redis_take_str(o, "host", &t->host, err)) != CACHE_OK ||
        (rc = redis_take_str(o, "unix_socket", &t->path, err)) != CACHE_OK ||
        (rc = redis_take_str(o, "username", &t->username, err)) != CACHE_OK ||
        (rc = redis_take_str(o, "password", &t->password, err)) != CACHE_OK ||
        (rc = redis_take_tls_opts(o, &t->tls, err)) != CACHE_OK)
        return rc;
    if (cache_opt_int(o, "port", 1, 65535, &port, err) < 0 ||
        cache_opt_int(o, "db", 0, 1000000, &db, err) < 0 ||
        (has_url = cache_opt_str(o, "url", &url, &url_len, err)) < 0)
        return CACHE_EINVAL;
    t->port = (int)port;
    t->db = db;
    if (t->host && !t->host[0])
        return cache_fail(err, CACHE_EINVAL, "option 'host': empty");
    if (t->path && !t->path[0])
        return cache_fail(err, CACHE_EINVAL, "option 'unix_socket': empty");
    if (has_url) {
        redis_url u;
        if ((rc = redis_url_parse(url, url_len, &u, err)) != CACHE_OK)
            return rc;
        if (u.path) { /* the URL names the server: forget host and socket */
            free(t->host);
            t->host = NULL;
        } else {
            free(t->path);
            t->path = NULL;
            if (u.port > 0)
                t->port = u.port;
            else
                t->port = 6379;
            if (!u.host)
                u.host = cache_strndup("localhost", 9);
        }
        take(&t->host, &u.host);
        take(&t->path, &u.path);
        take(&t->username, &u.username);
        take(&t->password, &u.password);
        if (u.db >= 0)
            t->db = u.db;
        redis_tls_opts_merge(&t->tls, &u.tls);
        redis_url_free(&u);
    }
    if (t->path && t->tls.ssl == 1)
        return cache_fail(err, CACHE_EINVAL,
                          "options 'ssl' and 'unix_socket': Redis serves TLS "
                          "on TCP only");
    if (!t->host && !t->path && !(t->host = cache_strndup("localhost", 9)))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    return CACHE_OK;
}

cache_backend *cache_redis_create(cache_opts *opts, cache_err *err)
{
    redis_common_opts common;
    target t = {0};
    redis_tls_opts_init(&t.tls);
    redis_tls *tls = NULL;
    redis_backend *r = NULL;
    cache_co_opts co;
    if (redis_take_common_opts(opts, &common, err) != CACHE_OK ||
        read_target(opts, &t, err) != CACHE_OK ||
        cache_co_take_opts(opts, &co, err) != CACHE_OK ||
        redis_tls_setup(&t.tls, 0, &tls, err) != CACHE_OK)
        goto fail;
    r = calloc(1, sizeof *r);
    if (!r) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto fail;
    }
    if (redis_single_init(&r->s, common.prefix, common.plen, err) != CACHE_OK) {
        free(r);
        r = NULL;
        goto fail;
    }
    redis_conn_config cfg = {
        .kind = "redis",
        .host = t.host,
        .port = t.port,
        .path = t.path,
        .username = t.username,
        .password = t.password,
        .db = t.db,
        .connect_timeout = common.connect_timeout,
        .timeout = common.timeout,
        .tls = tls,
    };
    if (redis_conn_init(&r->conn, &cfg, err) != CACHE_OK) {
        redis_single_free(&r->s);
        free(r);
        r = NULL;
        goto fail;
    }
    r->s.base.vt = &redis_vtable;
    r->co = co;
    if (redis_co_attach(&r->s.base, &r->co, tls != NULL, err) != CACHE_OK) {
        redis_conn_free(&r->conn);
        redis_single_free(&r->s);
        free(r);
        r = NULL;
        goto fail;
    }
    r->s.exchange = exchange;
    r->s.proto.label = r->conn.label;
    redis_tls_unref(tls); /* the connection holds it */
    target_free(&t);
    return &r->s.base;
fail:
    redis_tls_unref(tls);
    target_free(&t);
    return NULL;
}
