/*
 * redis_sentinel.c - RedisSentinelCache: the RedisCache operations sent to
 * the master that Redis Sentinel names, following failovers.
 *
 * The sentinels are asked `SENTINEL get-master-addr-by-name <master>` in
 * turn (the first that answers moves to the front, as redis-py does); every
 * command then goes to that master over one reused connection. When the
 * master cannot be reached, or answers READONLY / LOADING / MASTERDOWN (it
 * was demoted, or is not ready), the sentinels are asked again and the
 * request is sent once more to the master they name now. A request that
 * failed after it was sent may thus run twice (a concern only for inc).
 *
 * Reads go to the master as well (cachelib reads from a replica): a cache
 * read right after a write sees it.
 *
 * Options: sentinels = {"host:port", ...} (or "h:p,h:p"; when absent
 * 127.0.0.1:26379; given, it must name one at least), master = "mymaster",
 * username and password (the data nodes'), sentinel_username and
 * sentinel_password, db = 0, key_prefix, connect_timeout = 1.0,
 * timeout = 1.0; ssl (TLS to the data nodes) and sentinel_ssl (to the
 * sentinels), both with the same ssl_* options.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "redis_co.h"
#include "redis_common.h"

typedef struct sentinel_backend {
    redis_single s; /* first: its base is the cache_backend */
    redis_conn master;
    int have_master; /* master holds a configured connection */
    redis_conn *sentinels;
    size_t nsentinels, cap;
    char *master_name;
    char *username, *password, *sentinel_username, *sentinel_password;
    redis_tls *tls;     /* the ssl_* options, when any TLS is on */
    int master_ssl;     /* TLS to the data nodes (ssl) */
    int64_t db;
    double connect_timeout, timeout;
    redis_req ask;   /* the question to the sentinels */
    char label[200]; /* until a master is known */
    cache_co_opts co; /* its cosocket path (redis_co.c) */
} sentinel_backend;

/* ---- asking the sentinels ----------------------------------------------- */

/* The master's address from a sentinel's reply: CACHE_OK, CACHE_MISS (this
 * sentinel does not know the master) or CACHE_FAIL. */
static int master_from_reply(const redisReply *r, char **host, int *port,
                             const char *label, cache_err *err)
{
    if (r->type == REDIS_REPLY_NIL)
        return cache_fail(err, CACHE_MISS, "%s: does not know the master",
                          label);
    if (r->type == REDIS_REPLY_ERROR)
        return redis_reply_check(r, label, err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len == 0 || memchr(r->element[0]->str, '\0', r->element[0]->len))
        return cache_fail(err, CACHE_FAIL, "%s: malformed master address",
                          label);
    int64_t p;
    if (!cache_parse_int(r->element[1]->str, r->element[1]->len, &p) ||
        p < 1 || p > 65535)
        return cache_fail(err, CACHE_FAIL, "%s: malformed master port", label);
    *host = cache_strndup(r->element[0]->str, r->element[0]->len);
    *port = (int)p;
    return *host ? CACHE_OK : cache_fail(err, CACHE_ENOMEM, "out of memory");
}

/* (Re)configures the data connection for host:port. */
static int use_master(sentinel_backend *sb, const char *host, int port,
                      cache_err *err)
{
    if (sb->have_master && sb->master.host && sb->master.port == port &&
        strcmp(sb->master.host, host) == 0) {
        redis_conn_close(&sb->master); /* same node: just reconnect */
        return CACHE_OK;
    }
    if (sb->have_master)
        redis_conn_free(&sb->master);
    sb->have_master = 0;
    redis_conn_config cfg = {
        .kind = "redis master",
        .host = host,
        .port = port,
        .username = sb->username,
        .password = sb->password,
        .db = sb->db,
        .connect_timeout = sb->connect_timeout,
        .timeout = sb->timeout,
        .tls = sb->master_ssl ? sb->tls : NULL,
    };
    int rc = redis_conn_init(&sb->master, &cfg, err);
    if (rc != CACHE_OK)
        return rc;
    sb->have_master = 1;
    sb->s.proto.label = sb->master.label;
    return CACHE_OK;
}

static int ask_one(sentinel_backend *sb, redis_conn *sc, char **host,
                   int *port, cache_err *err)
{
    redis_req *q = &sb->ask;
    redis_req_reset(q);
    int rc = redis_req_addz(q, err, 3, "SENTINEL", "get-master-addr-by-name",
                            sb->master_name);
    if (rc == CACHE_OK)
        rc = redis_exchange_on(&sb->s.base, sc, q, err);
    if (rc == CACHE_OK)
        rc = master_from_reply(q->replies[0], host, port, sc->label, err);
    redis_req_reset(q);
    return rc;
}

/* Asks the sentinels in turn for the master's address. */
static int resolve(sentinel_backend *sb, cache_err *err)
{
    cache_err last = {0, ""};
    for (size_t i = 0; i < sb->nsentinels; i++) {
        char *host = NULL;
        int port = 0;
        int rc = ask_one(sb, &sb->sentinels[i], &host, &port, &last);
        if (rc == CACHE_ENOMEM)
            return cache_fail(err, rc, "out of memory");
        if (rc == CACHE_PENDING)
            return rc;
        if (rc != CACHE_OK)
            continue;
        if (i > 0) { /* the one that answered is asked first next time */
            redis_conn t = sb->sentinels[0];
            sb->sentinels[0] = sb->sentinels[i];
            sb->sentinels[i] = t;
        }
        rc = use_master(sb, host, port, err);
        free(host);
        return rc;
    }
    return cache_fail(err, CACHE_FAIL,
                      "redis sentinel: no sentinel gave the address of "
                      "master '%s' (last: %s)",
                      sb->master_name, last.msg[0] ? last.msg : "no sentinels");
}

/* ---- the exchange: to the master, following a failover once ------------- */

/* A reply saying this node is not (or not yet) a usable master. */
static int not_master(const redis_req *q)
{
    for (size_t i = 0; i < q->nreplies; i++) {
        const redisReply *r = q->replies[i];
        if (r->type != REDIS_REPLY_ERROR)
            continue;
        if (redis_reply_is_error(r, "READONLY") ||
            redis_reply_is_error(r, "LOADING") ||
            redis_reply_is_error(r, "MASTERDOWN") ||
            strstr(r->str, "READONLY")) /* raised inside a script */
            return 1;
    }
    return 0;
}

static int exchange(redis_single *s, redis_req *q, cache_err *err)
{
    sentinel_backend *sb = (sentinel_backend *)s;
    int rc;
    if (!sb->have_master && (rc = resolve(sb, err)) != CACHE_OK)
        return rc;
    for (int attempt = 0;; attempt++) {
        rc = redis_exchange_on(&sb->s.base, &sb->master, q, err);
        /* on the cosocket path a failed exchange has always lost its
         * connection (co.c closes it) */
        int lost = rc == CACHE_FAIL && (cache_co_of(&sb->s.base) ||
                                        !redis_conn_connected(&sb->master));
        int demoted = rc == CACHE_OK && not_master(q);
        if ((!lost && !demoted) || attempt == 1)
            return rc;
        /* The master failed or is no master any more: ask again. */
        char first[CACHE_ERRMSG_MAX] = "";
        if (lost && err)
            snprintf(first, sizeof first, "%s", err->msg);
        redis_conn_close(&sb->master);
        cache_err why;
        int rrc = resolve(sb, &why);
        if (rrc != CACHE_OK) {
            redis_req_drop_replies(q);
            if (lost) /* keep the first cause, add the sentinels' answer */
                return cache_fail(err, CACHE_FAIL, "%.120s; %.120s", first,
                                  why.msg);
            return cache_fail(err, rrc, "%s", why.msg);
        }
    }
}

/* ---- construction --------------------------------------------------------- */

static void sentinel_destroy(cache_backend *b)
{
    sentinel_backend *sb = (sentinel_backend *)b;
    if (sb->have_master)
        redis_conn_free(&sb->master);
    for (size_t i = 0; i < sb->nsentinels; i++)
        redis_conn_free(&sb->sentinels[i]);
    free(sb->sentinels);
    free(sb->master_name);
    free(sb->username);
    free(sb->sentinel_username);
    if (sb->password)
        memset(sb->password, 0, strlen(sb->password));
    free(sb->password);
    if (sb->sentinel_password)
        memset(sb->sentinel_password, 0, strlen(sb->sentinel_password));
    free(sb->sentinel_password);
    redis_tls_unref(sb->tls);
    redis_req_free(&sb->ask);
    redis_single_free(&sb->s);
    free(sb);
}

static const cache_vtable sentinel_vtable =
    REDIS_SINGLE_VTABLE("RedisSentinelCache", sentinel_destroy);

/* The sentinels get TLS when sentinel_ssl asked for it. */
typedef struct sentinel_add {
    sentinel_backend *sb;
    redis_tls *tls;
} sentinel_add;

static int add_sentinel(void *ctx, const char *host, int port, cache_err *err)
{
    sentinel_add *a = ctx;
    sentinel_backend *sb = a->sb;
    if (sb->nsentinels == sb->cap) {
        size_t cap = sb->cap ? 2 * sb->cap : 4;
        redis_conn *n = realloc(sb->sentinels, cap * sizeof *n);
        if (!n)
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        sb->sentinels = n;
        sb->cap = cap;
    }
    redis_conn_config cfg = {
        .kind = "sentinel",
        .host = host,
        .port = port,
        .username = sb->sentinel_username,
        .password = sb->sentinel_password,
        .connect_timeout = sb->connect_timeout,
        .timeout = sb->timeout,
        .tls = a->tls,
    };
    int rc = redis_conn_init(&sb->sentinels[sb->nsentinels], &cfg, err);
    if (rc == CACHE_OK)
        sb->nsentinels++;
    return rc;
}

static int read_options(sentinel_backend *sb, cache_opts *o,
                        const redis_common_opts *common, cache_err *err)
{
    int rc;
    sb->connect_timeout = common->connect_timeout;
    sb->timeout = common->timeout;
    if ((rc = redis_take_str(o, "master", &sb->master_name, err)) != CACHE_OK ||
        (rc = redis_take_str(o, "username", &sb->username, err)) != CACHE_OK ||
        (rc = redis_take_str(o, "password", &sb->password, err)) != CACHE_OK ||
        (rc = redis_take_str(o, "sentinel_username", &sb->sentinel_username,
                             err)) != CACHE_OK ||
        (rc = redis_take_str(o, "sentinel_password", &sb->sentinel_password,
                             err)) != CACHE_OK)
        return rc;
    redis_tls_opts tls;
    redis_tls_opts_init(&tls);
    int sentinel_ssl = 0;
    rc = redis_take_tls_opts(o, &tls, err);
    if (rc == CACHE_OK && cache_opt_bool(o, "sentinel_ssl", &sentinel_ssl, err) < 0)
        rc = CACHE_EINVAL;
    if (rc == CACHE_OK)
        rc = redis_tls_setup(&tls, sentinel_ssl, &sb->tls, err);
    sb->master_ssl = tls.ssl == 1;
    redis_tls_opts_free(&tls);
    if (rc != CACHE_OK)
        return rc;
    if (cache_opt_int(o, "db", 0, 1000000, &sb->db, err) < 0)
        return CACHE_EINVAL;
    if (!sb->master_name && !(sb->master_name = cache_strndup("mymaster", 8)))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    if (!sb->master_name[0])
        return cache_fail(err, CACHE_EINVAL, "option 'master': empty");
    sentinel_add add = {sb, sentinel_ssl ? sb->tls : NULL};
    rc = redis_each_address(o, "sentinels", 0, add_sentinel, &add, err);
    if (rc == CACHE_OK && sb->nsentinels == 0) /* absent: cachelib's default */
        rc = add_sentinel(&add, "127.0.0.1", 26379, err);
    return rc;
}

cache_backend *cache_redis_sentinel_create(cache_opts *opts, cache_err *err)
{
    redis_common_opts common;
    if (redis_take_common_opts(opts, &common, err) != CACHE_OK)
        return NULL;
    sentinel_backend *sb = calloc(1, sizeof *sb);
    if (!sb) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    redis_req_init(&sb->ask);
    if (redis_single_init(&sb->s, common.prefix, common.plen, err) != CACHE_OK) {
        redis_req_free(&sb->ask);
        free(sb);
        return NULL;
    }
    sb->s.base.vt = &sentinel_vtable;
    sb->s.exchange = exchange;
    if (read_options(sb, opts, &common, err) != CACHE_OK ||
        cache_co_take_opts(opts, &sb->co, err) != CACHE_OK ||
        redis_co_attach(&sb->s.base, &sb->co, sb->tls != NULL, err) != CACHE_OK) {
        sentinel_destroy(&sb->s.base);
        return NULL;
    }
    snprintf(sb->label, sizeof sb->label, "redis sentinel master '%s'",
             sb->master_name);
    sb->s.proto.label = sb->label;
    return &sb->s.base;
}
