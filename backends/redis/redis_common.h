/*
 * redis_common.h - what RedisCache and RedisSentinelCache share: the cache
 * operations on one server at a time (redis.c), the options every Redis
 * backend takes, and the parsing of addresses and URLs.
 *
 * A "single" backend is the operations of redis_proto.h driven through an
 * exchange function: RedisCache's talks to its one connection, the
 * sentinel's finds the master first and follows failovers.
 */
#ifndef CACHE_BACKENDS_REDIS_COMMON_H
#define CACHE_BACKENDS_REDIS_COMMON_H

#include "cache.h"
#include "redis_net.h"
#include "redis_proto.h"
#include "redis_tls.h"

typedef struct redis_single redis_single;

struct redis_single {
    cache_backend base;
    redis_proto proto;
    redis_req req, req2; /* two, so that clear can pipeline SCAN and UNLINK */
    cache_buf scratch;   /* a value's external form */
    cache_buf pattern;   /* clear's SCAN pattern */
    /* Sends q and reads all its replies (q->nreplies == q->ncmds), or
     * fails with err set. */
    int (*exchange)(redis_single *s, redis_req *q, cache_err *err);
};

/* Initialises the shared part (prefix copied). CACHE_OK or CACHE_ENOMEM. */
int redis_single_init(redis_single *s, const char *prefix, size_t plen,
                      cache_err *err);
void redis_single_free(redis_single *s);

/* The vtable entries, for a backend whose struct starts with redis_single. */
int redis_single_get(cache_backend *b, cache_str key, cache_buf *out,
                     cache_err *err);
int redis_single_set(cache_backend *b, cache_str key, cache_str value,
                     double ttl, int only_if_absent, cache_err *err);
int redis_single_del(cache_backend *b, cache_str key, cache_err *err);
int redis_single_has(cache_backend *b, cache_str key, cache_err *err);
int redis_single_clear(cache_backend *b, cache_err *err);
int redis_single_incr(cache_backend *b, cache_str key, int64_t delta,
                      double new_ttl, int64_t *result, cache_err *err);
int redis_single_get_many(cache_backend *b, size_t n, const cache_str *keys,
                          cache_buf *out, int *status, cache_err *err);
int redis_single_set_many(cache_backend *b, size_t n, const cache_str *keys,
                          const cache_str *values, double ttl, int *status,
                          cache_err *err);
int redis_single_del_many(cache_backend *b, size_t n, const cache_str *keys,
                          int *status, cache_err *err);
int redis_single_del_if(cache_backend *b, cache_str key, cache_str value,
                        cache_err *err);

/* The vtable of a backend on one data node at a time (RedisCache,
 * RedisSentinelCache): every operation is redis_single's; only the class
 * name and how the backend is destroyed differ. */
#define REDIS_SINGLE_VTABLE(class_name, destroy_fn)                           \
    {                                                                        \
        .name = class_name, .values_checked = 1, .get = redis_single_get,    \
        .set = redis_single_set, .del = redis_single_del,                    \
        .has = redis_single_has, .clear = redis_single_clear,                \
        .incr = redis_single_incr, .get_many = redis_single_get_many,        \
        .set_many = redis_single_set_many, .del_many = redis_single_del_many, \
        .del_if = redis_single_del_if, .destroy = destroy_fn,                \
    }

/* Deletes every key under p's prefix through fn (one server): SCAN MATCH
 * <escaped prefix>* COUNT 1000 in batches, each round trip carrying the
 * UNLINK of the previous batch (one multi-key UNLINK, or one per key when
 * per_key) and the next SCAN. a and b are two scratch requests. */
typedef int (*redis_xchg_fn)(void *ctx, redis_req *q, cache_err *err);
int redis_clear_prefix(const redis_proto *p, redis_req *a, redis_req *b,
                       cache_buf *pattern, int per_key, redis_xchg_fn fn,
                       void *ctx, cache_err *err);

/* ---- options ------------------------------------------------------------- */

/* key_prefix, connect_timeout (1.0) and timeout (1.0): every Redis backend. */
typedef struct redis_common_opts {
    const char *prefix;
    size_t plen;
    double connect_timeout, timeout;
} redis_common_opts;

int redis_take_common_opts(cache_opts *o, redis_common_opts *out,
                           cache_err *err);

/* An optional string option copied (NULL when absent). CACHE_OK or failure. */
int redis_take_str(cache_opts *o, const char *name, char **out,
                   cache_err *err);

/* ---- TLS options ----------------------------------------------------------- */

/* Nothing given: ssl, verify and check_hostname -1, files NULL. */
void redis_tls_opts_init(redis_tls_opts *t);
void redis_tls_opts_free(redis_tls_opts *t);

/* ssl, ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs ("required"
 * or "none") and ssl_check_hostname, as given, into t. */
int redis_take_tls_opts(cache_opts *o, redis_tls_opts *t, cache_err *err);

/* What from gives moves into to (a URL's parts win over options). */
void redis_tls_opts_merge(redis_tls_opts *to, redis_tls_opts *from);

/* The TLS context t describes, or NULL in *out when neither t->ssl nor
 * `also` (sentinel_ssl) asks for TLS. ssl_* options given without TLS
 * raise: ignoring them would mean plain text where TLS was meant. */
int redis_tls_setup(const redis_tls_opts *t, int also, redis_tls **out,
                    cache_err *err);

/* ---- addresses --------------------------------------------------------------- */


/* A list option whose items are "host:port" or several of them separated by
 * commas; calls fn for each address. An option that is given must name at
 * least one address (CACHE_EINVAL otherwise); an absent one is CACHE_EINVAL
 * when required, else CACHE_OK with no call (the caller's default). */
int redis_each_address(cache_opts *o, const char *name, int required,
                       int (*fn)(void *ctx, const char *host, int port,
                                 cache_err *err),
                       void *ctx, cache_err *err);

/* What a redis://, rediss:// or unix:// URL says; absent parts are NULL /
 * -1. */
typedef struct redis_url {
    char *host;
    int port; /* -1 when absent */
    char *path;
    char *username, *password;
    int64_t db; /* -1 when absent */
    redis_tls_opts tls; /* rediss://: tls.ssl = 1; ssl_* parameters */
} redis_url;

/* redis[s]://[[user]:password@]host[:port][/db][?db=N&password=..]
 * unix://[[user]:password@]/path[?db=N&password=..]
 * Parameters: db, username, password, and (as redis-py) ssl_ca_certs,
 * ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname.
 * User, password, path and text parameters are %-decoded. CACHE_EINVAL
 * when malformed. */
int redis_url_parse(const char *url, size_t len, redis_url *u,
                    cache_err *err);
void redis_url_free(redis_url *u);

#endif
