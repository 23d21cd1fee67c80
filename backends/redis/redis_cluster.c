/*
 * redis_cluster.c - RedisClusterCache: the RedisCache operations on a Redis
 * Cluster, each key sent to the master that owns its slot.
 *
 * - The slot map comes from CLUSTER SLOTS, asked of any known node (the
 *   startup nodes first); entries may carry extra elements (Redis 7 adds a
 *   node id and metadata), only ip and port of the master are used.
 * - A key's slot is CRC16 of the prefixed key, or of its {hash tag}.
 * - MOVED: the slot's owner is updated, the whole map read again, the
 *   command retried on the new owner. ASK: the command is retried once on
 *   the named node, preceded by ASKING, and the map is left as it is.
 *   At most 5 redirections per command.
 * - A node that cannot be reached: the map is read again (a replica may have
 *   taken over) and the command retried once.
 * - get_many / set_many / delete_many: keys grouped by node, one pipeline
 *   per node, written to every node before any reply is read (so the whole
 *   batch costs about one round trip); keys redirected meanwhile are redone
 *   one by one.
 * - clear: every master, SCAN + UNLINK of the prefix (one UNLINK per key:
 *   a cluster refuses multi-key commands across slots), or FLUSHDB on every
 *   master without a prefix.
 *
 * Options: cluster = "host:port,host:port" or a list (required), username,
 * password, key_prefix, connect_timeout = 1.0, timeout = 1.0; ssl and the
 * ssl_* options (TLS to every node). A cluster has no db.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_co.h"
#include "redis_common.h"

#define MAX_REDIRECTS 5

typedef struct cnode {
    redis_conn conn;
    redis_req req; /* this node's share of a batch */
    size_t *idx;   /* which key of the batch each command is for */
    size_t nidx, idx_cap;
    int failed;    /* this node's part of the batch failed */
    int is_master; /* owns slots in the current map */
    cache_err err; /* why it failed */
} cnode;

typedef struct cluster_backend {
    cache_backend base;
    redis_proto proto;
    cnode **nodes; /* never removed, so indexes stay valid */
    size_t nnodes, cap;
    unsigned short owner[REDIS_SLOTS]; /* node index + 1; 0 = unknown */
    int map_ok;
    char *username, *password;
    redis_tls *tls; /* NULL: plain text */
    double connect_timeout, timeout;
    redis_req req, req2, asking;
    cache_buf scratch; /* a value's external form */
    cache_buf keybuf;  /* a prefixed key, to hash */
    cache_buf pattern;
    cache_co_opts co; /* its cosocket path (redis_co.c) */
} cluster_backend;

/* ---- nodes ----------------------------------------------------------------- */

static void node_free(cnode *n)
{
    redis_conn_free(&n->conn);
    redis_req_free(&n->req);
    free(n->idx);
    free(n);
}

/* The index of the node host:port, added when new; -1 on no memory. */
static int node_index(cluster_backend *cb, const char *host, int port,
                      cache_err *err)
{
    for (size_t i = 0; i < cb->nnodes; i++) {
        const redis_conn *c = &cb->nodes[i]->conn;
        if (c->port == port && strcmp(c->host, host) == 0)
            return (int)i;
    }
    if (cb->nnodes >= 65000) {
        cache_fail(err, CACHE_FAIL, "redis cluster: too many nodes");
        return -1;
    }
    if (cb->nnodes == cb->cap) {
        size_t cap = cb->cap ? 2 * cb->cap : 8;
        cnode **n = realloc(cb->nodes, cap * sizeof *n);
        if (!n) {
            cache_fail(err, CACHE_ENOMEM, "out of memory");
            return -1;
        }
        cb->nodes = n;
        cb->cap = cap;
    }
    cnode *n = calloc(1, sizeof *n);
    if (!n) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return -1;
    }
    redis_req_init(&n->req);
    redis_conn_config cfg = {
        .kind = "redis cluster node",
        .host = host,
        .port = port,
        .username = cb->username,
        .password = cb->password,
        .connect_timeout = cb->connect_timeout,
        .timeout = cb->timeout,
        .tls = cb->tls,
    };
    if (redis_conn_init(&n->conn, &cfg, err) != CACHE_OK) {
        redis_req_free(&n->req);
        free(n);
        return -1;
    }
    cb->nodes[cb->nnodes] = n;
    return (int)cb->nnodes++;
}

static int push_idx(cnode *n, size_t i, cache_err *err)
{
    if (n->nidx == n->idx_cap) {
        size_t cap = n->idx_cap ? 2 * n->idx_cap : 16;
        size_t *p = realloc(n->idx, cap * sizeof *p);
        if (!p)
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        n->idx = p;
        n->idx_cap = cap;
    }
    n->idx[n->nidx++] = i;
    return CACHE_OK;
}

/* ---- the slot map ------------------------------------------------------------ */

/* Reads one CLUSTER SLOTS reply into map (node index + 1 per slot). An
 * empty ip means the node that was asked. */
static int parse_slots(cluster_backend *cb, const redisReply *r,
                       const cnode *asked, unsigned short *map,
                       cache_err *err)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return redis_reply_check(r, asked->conn.label, err) < 0
                   ? CACHE_FAIL
                   : cache_fail(err, CACHE_FAIL,
                                "%s: CLUSTER SLOTS: unexpected reply",
                                asked->conn.label);
    memset(map, 0, REDIS_SLOTS * sizeof *map);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            goto bad;
        long long from = e->element[0]->integer, to = e->element[1]->integer;
        long long port = e->element[2]->element[1]->integer;
        const redisReply *ip = e->element[2]->element[0];
        if (from < 0 || to < from || to >= REDIS_SLOTS || port < 1 ||
            port > 65535 || ip->len > 255 || memchr(ip->str, '\0', ip->len))
            goto bad;
        char host[256];
        if (ip->len == 0 || (ip->len == 1 && ip->str[0] == '?'))
            snprintf(host, sizeof host, "%s", asked->conn.host);
        else
            snprintf(host, sizeof host, "%.*s", (int)ip->len, ip->str);
        int idx = node_index(cb, host, (int)port, err);
        if (idx < 0)
            return err ? err->code : CACHE_FAIL;
        for (long long s = from; s <= to; s++)
            map[s] = (unsigned short)(idx + 1);
    }
    return CACHE_OK;
bad:
    return cache_fail(err, CACHE_FAIL, "%s: malformed CLUSTER SLOTS reply",
                      asked->conn.label);
}

static void apply_map(cluster_backend *cb, const unsigned short *map)
{
    memcpy(cb->owner, map, sizeof cb->owner);
    for (size_t i = 0; i < cb->nnodes; i++)
        cb->nodes[i]->is_master = 0;
    for (size_t s = 0; s < REDIS_SLOTS; s++)
        if (map[s])
            cb->nodes[map[s] - 1]->is_master = 1;
    cb->map_ok = 1;
}

/* Asks the known nodes in turn (startup nodes first) for the slot map. */
static int refresh_map(cluster_backend *cb, cache_err *err)
{
    unsigned short *map = malloc(REDIS_SLOTS * sizeof *map);
    if (!map)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    cache_err last = {0, ""};
    redis_req *q = &cb->req2;
    size_t known = cb->nnodes; /* parse_slots may add nodes */
    for (size_t i = 0; i < known; i++) {
        cnode *n = cb->nodes[i];
        redis_req_reset(q);
        int rc = redis_req_addz(q, &last, 2, "CLUSTER", "SLOTS");
        if (rc == CACHE_OK)
            rc = redis_exchange_on(&cb->base, &n->conn, q, &last);
        if (rc == CACHE_OK)
            rc = parse_slots(cb, q->replies[0], n, map, &last);
        redis_req_reset(q);
        if (rc == CACHE_OK) {
            apply_map(cb, map);
            free(map);
            return CACHE_OK;
        }
        if (rc == CACHE_PENDING) { /* the cosocket driver has it to do */
            free(map);
            return rc;
        }
        if (rc == CACHE_ENOMEM)
            break;
    }
    free(map);
    return cache_fail(err, last.code == CACHE_ENOMEM ? CACHE_ENOMEM : CACHE_FAIL,
                      "redis cluster: cannot read the slot map (last: %s)",
                      last.msg[0] ? last.msg : "no nodes");
}

static unsigned key_slot(cluster_backend *cb, cache_str key, cache_err *err,
                         int *rc)
{
    cb->keybuf.len = 0;
    if (cache_buf_append(&cb->keybuf, cb->proto.prefix, cb->proto.plen) ||
        cache_buf_append(&cb->keybuf, key.ptr, key.len)) {
        *rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        return 0;
    }
    *rc = CACHE_OK;
    return redis_key_slot(cb->keybuf.data, cb->keybuf.len);
}

/* The node that owns slot (reading the map first when it is stale; a known
 * owner is used even if the map cannot be read now). */
static int route(cluster_backend *cb, unsigned slot, cache_err *err)
{
    if (!cb->map_ok) {
        cache_err why = {0, ""};
        int rc = refresh_map(cb, &why);
        if (rc == CACHE_PENDING)
            return rc;
        if (rc != CACHE_OK && !cb->owner[slot])
            return cache_fail(err, why.code, "%s", why.msg);
    }
    if (!cb->owner[slot])
        return cache_fail(err, CACHE_FAIL,
                          "redis cluster: no node serves slot %u", slot);
    return cb->owner[slot] - 1;
}

/* ---- one key, following redirections ------------------------------------------ */

/* q's commands sent to node n after ASKING; q's replies as if sent alone. */
static int exchange_asking(cluster_backend *cb, cnode *n, redis_req *q,
                           cache_err *err)
{
    redis_req *a = &cb->asking;
    redis_req_reset(a);
    int rc = redis_req_addz(a, err, 1, "ASKING");
    if (rc != CACHE_OK)
        return rc;
    if (cache_buf_append(&a->bytes, q->bytes.data, q->bytes.len))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    a->ncmds += q->ncmds;
    if ((rc = redis_req_reserve_replies(q, err)) != CACHE_OK ||
        (rc = redis_exchange_on(&cb->base, &n->conn, a, err)) != CACHE_OK)
        return rc;
    rc = redis_reply_ok(a->replies[0], n->conn.label, err);
    if (rc == CACHE_OK) {
        redis_req_drop_replies(q);
        for (size_t i = 1; i < a->nreplies; i++)
            q->replies[q->nreplies++] = a->replies[i];
        a->nreplies = 1; /* the others belong to q now */
    }
    redis_req_reset(a);
    return rc;
}

/* Sends q (the commands of one key of slot) to the slot's owner, following
 * MOVED / ASK and retrying once after a lost node; on success q holds the
 * replies and the proto label names the node that answered. */
static int run_key(cluster_backend *cb, redis_req *q, unsigned slot,
                   cache_err *err)
{
    int target = -1, asking = 0, retried = 0;
    for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
        if (target < 0 && (target = route(cb, slot, err)) < 0)
            return target;
        cnode *n = cb->nodes[target];
        int rc = asking ? exchange_asking(cb, n, q, err)
                        : redis_exchange_on(&cb->base, &n->conn, q, err);
        /* on the cosocket path a failed exchange has always lost its
         * connection (co.c closes it) */
        if (rc == CACHE_FAIL && (cache_co_of(&cb->base) ||
                                 !redis_conn_connected(&n->conn))) {
            if (retried)
                return rc;
            /* A failover may have moved the slot: read the map again. */
            retried = 1;
            cache_err why;
            if (refresh_map(cb, &why) != CACHE_OK)
                return rc;
            target = -1;
            asking = 0;
            continue;
        }
        if (rc != CACHE_OK)
            return rc;
        int ask, port;
        unsigned rslot;
        char host[256];
        if (!redis_redirect(q->replies[0], &ask, &rslot, host, sizeof host,
                            &port)) {
            cb->proto.label = n->conn.label;
            return CACHE_OK;
        }
        redis_req_drop_replies(q);
        if (!host[0])
            snprintf(host, sizeof host, "%s", n->conn.host);
        int to = node_index(cb, host, port, err);
        if (to < 0)
            return err ? err->code : CACHE_FAIL;
        if (ask) {
            target = to;
            asking = 1;
        } else {
            cb->owner[rslot] = (unsigned short)(to + 1);
            cb->map_ok = 0; /* read the whole map before the retry */
            target = -1;
            asking = 0;
        }
    }
    return cache_fail(err, CACHE_FAIL,
                      "redis cluster: more than %d redirections for slot %u",
                      MAX_REDIRECTS, slot);
}

/* ---- single-key operations ------------------------------------------------------ */

#define KEY_OP(build_call, finish_call)                                      \
    cluster_backend *cb = (cluster_backend *)b;                              \
    redis_req *q = &cb->req;                                                 \
    redis_req_reset(q);                                                      \
    int rc;                                                                  \
    unsigned slot = key_slot(cb, key, err, &rc);                             \
    if (rc == CACHE_OK)                                                      \
        rc = build_call;                                                     \
    if (rc == CACHE_OK)                                                      \
        rc = run_key(cb, q, slot, err);                                      \
    if (rc == CACHE_OK)                                                      \
        rc = finish_call;                                                    \
    redis_req_reset(q);                                                      \
    return rc

static int cluster_get(cache_backend *b, cache_str key, cache_buf *out,
                       cache_err *err)
{
    KEY_OP(redis_op_get_build(&cb->proto, q, key, err),
           redis_op_get_finish(&cb->proto, q, 0, out, err));
}

static int cluster_set(cache_backend *b, cache_str key, cache_str value,
                       double ttl, int only_if_absent, cache_err *err)
{
    KEY_OP(redis_op_set_build(&cb->proto, q, key, value, ttl, only_if_absent,
                              &cb->scratch, err),
           redis_op_set_finish(&cb->proto, q, 0, ttl, only_if_absent, err));
}

static int cluster_del(cache_backend *b, cache_str key, cache_err *err)
{
    KEY_OP(redis_op_del_build(&cb->proto, q, key, err),
           redis_op_del_finish(&cb->proto, q, 0, err));
}

static int cluster_has(cache_backend *b, cache_str key, cache_err *err)
{
    KEY_OP(redis_op_has_build(&cb->proto, q, key, err),
           redis_op_has_finish(&cb->proto, q, 0, err));
}

static int cluster_incr(cache_backend *b, cache_str key, int64_t delta,
                        double new_ttl, int64_t *result, cache_err *err)
{
    KEY_OP(redis_op_incr_build(&cb->proto, q, key, delta, new_ttl, err),
           redis_op_incr_finish(&cb->proto, q, 0, result, err));
}

/* ---- batches: one pipeline per node ------------------------------------------------ */

typedef enum { BATCH_GET, BATCH_SET, BATCH_DEL } batch_op;

typedef struct batch {
    batch_op op;
    const cache_str *keys;
    const cache_str *values;
    double ttl;
    cache_buf *out;
    int *status;
} batch;

static int build_one(cluster_backend *cb, redis_req *q, const batch *a,
                     size_t i, cache_err *err)
{
    switch (a->op) {
    case BATCH_GET: return redis_op_get_build(&cb->proto, q, a->keys[i], err);
    case BATCH_SET:
        return redis_op_set_build(&cb->proto, q, a->keys[i], a->values[i],
                                  a->ttl, 0, &cb->scratch, err);
    case BATCH_DEL: return redis_op_del_build(&cb->proto, q, a->keys[i], err);
    }
    return CACHE_EINVAL;
}

static int finish_one(cluster_backend *cb, const redis_req *q, size_t at,
                      const batch *a, size_t i, cache_err *err)
{
    switch (a->op) {
    case BATCH_GET:
        return redis_op_get_finish(&cb->proto, q, at, &a->out[i], err);
    case BATCH_SET:
        return redis_op_set_finish(&cb->proto, q, at, a->ttl, 0, err);
    case BATCH_DEL: return redis_op_del_finish(&cb->proto, q, at, err);
    }
    return CACHE_EINVAL;
}

/* One key on its own, with redirections followed. */
static int redo_one(cluster_backend *cb, const batch *a, size_t i,
                    cache_err *err)
{
    redis_req *q = &cb->req;
    redis_req_reset(q);
    int rc;
    unsigned slot = key_slot(cb, a->keys[i], err, &rc);
    if (rc == CACHE_OK)
        rc = build_one(cb, q, a, i, err);
    if (rc == CACHE_OK)
        rc = run_key(cb, q, slot, err);
    if (rc == CACHE_OK)
        rc = finish_one(cb, q, 0, a, i, err);
    redis_req_reset(q);
    return rc;
}

/* Groups the keys by node: each node's req gets its keys' commands. Keys
 * that cannot be routed get their failure in status. */
static void group_keys(cluster_backend *cb, size_t n, const batch *a,
                       cache_err *first)
{
    for (size_t j = 0; j < cb->nnodes; j++) {
        redis_req_reset(&cb->nodes[j]->req);
        cb->nodes[j]->nidx = 0;
        cb->nodes[j]->failed = 0;
    }
    for (size_t i = 0; i < n; i++) {
        cache_err e = {0, ""};
        int rc;
        unsigned slot = key_slot(cb, a->keys[i], &e, &rc);
        int t = rc == CACHE_OK ? route(cb, slot, &e) : -1;
        if (t >= 0) {
            cnode *node = cb->nodes[t];
            rc = push_idx(node, i, &e);
            if (rc == CACHE_OK && (rc = build_one(cb, &node->req, a, i, &e)) != CACHE_OK)
                node->nidx--; /* nothing was added to the pipeline */
        } else {
            rc = t == CACHE_PENDING ? t : e.code;
        }
        a->status[i] = rc == CACHE_OK ? CACHE_MISS : rc;
        if (rc != CACHE_OK && !first->code)
            *first = e;
    }
}

/* Writes every node's pipeline, then reads every node's replies. */
static void exchange_all(cluster_backend *cb)
{
    for (size_t j = 0; j < cb->nnodes; j++) {
        cnode *node = cb->nodes[j];
        if (node->req.ncmds &&
            redis_send_on(&cb->base, &node->conn, &node->req, &node->err) !=
                CACHE_OK)
            node->failed = 1;
    }
    for (size_t j = 0; j < cb->nnodes; j++) {
        cnode *node = cb->nodes[j];
        if (node->req.ncmds && !node->failed &&
            redis_recv_on(&cb->base, &node->conn, &node->req, &node->err) !=
                CACHE_OK)
            node->failed = 1;
    }
}

static int run_batch(cluster_backend *cb, size_t n, const batch *a,
                     cache_err *err)
{
    if (n == 0)
        return CACHE_OK;
    cache_err first = {0, ""};
    group_keys(cb, n, a, &first);
    exchange_all(cb);
    int any_failed = 0;
    for (size_t j = 0; j < cb->nnodes; j++) {
        cnode *node = cb->nodes[j];
        if (node->failed) {
            any_failed = 1;
            continue;
        }
        cb->proto.label = node->conn.label;
        for (size_t k = 0; k < node->nidx; k++) {
            size_t i = node->idx[k];
            int ask, port;
            unsigned slot;
            char host[256];
            if (redis_redirect(node->req.replies[k], &ask, &slot, host,
                               sizeof host, &port)) {
                a->status[i] = 1000; /* redone below */
                continue;
            }
            cache_err e;
            a->status[i] = finish_one(cb, &node->req, k, a, i, &e);
            if (a->status[i] < 0 && !first.code)
                first = e;
        }
    }
    /* A node that failed: read the map again; its keys go one by one to
     * whoever owns them now, or fail with the node's error. */
    if (any_failed) {
        cache_err why;
        refresh_map(cb, &why);
        for (size_t j = 0; j < cb->nnodes; j++) {
            cnode *node = cb->nodes[j];
            if (!node->failed)
                continue;
            for (size_t k = 0; k < node->nidx; k++) {
                size_t i = node->idx[k];
                int rc;
                unsigned slot = key_slot(cb, a->keys[i], &why, &rc);
                if (rc == CACHE_OK && cb->owner[slot] &&
                    cb->owner[slot] - 1 != (int)j) {
                    a->status[i] = 1000;
                } else {
                    a->status[i] = node->err.code < 0 ? node->err.code : CACHE_FAIL;
                    if (!first.code)
                        first = node->err;
                }
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (a->status[i] != 1000)
            continue;
        cache_err e;
        a->status[i] = redo_one(cb, a, i, &e);
        if (a->status[i] < 0 && !first.code)
            first = e;
    }
    for (size_t j = 0; j < cb->nnodes; j++)
        redis_req_reset(&cb->nodes[j]->req);
    if (first.code < 0)
        return cache_fail(err, first.code, "%s", first.msg);
    return CACHE_OK;
}

static int cluster_get_many(cache_backend *b, size_t n, const cache_str *keys,
                            cache_buf *out, int *status, cache_err *err)
{
    batch a = {BATCH_GET, keys, NULL, 0, out, status};
    return run_batch((cluster_backend *)b, n, &a, err);
}

static int cluster_set_many(cache_backend *b, size_t n, const cache_str *keys,
                            const cache_str *values, double ttl, int *status,
                            cache_err *err)
{
    batch a = {BATCH_SET, keys, values, ttl, NULL, status};
    return run_batch((cluster_backend *)b, n, &a, err);
}

static int cluster_del_many(cache_backend *b, size_t n, const cache_str *keys,
                            int *status, cache_err *err)
{
    batch a = {BATCH_DEL, keys, NULL, 0, NULL, status};
    return run_batch((cluster_backend *)b, n, &a, err);
}

/* ---- clear: every master ----------------------------------------------------------- */

typedef struct node_ctx {
    cluster_backend *cb;
    cnode *n;
} node_ctx;

static int node_xchg(void *ctx, redis_req *q, cache_err *err)
{
    node_ctx *x = ctx;
    return redis_exchange_on(&x->cb->base, &x->n->conn, q, err);
}

static int clear_node(cluster_backend *cb, cnode *n, cache_err *err)
{
    cb->proto.label = n->conn.label;
    node_ctx x = {cb, n};
    if (cb->proto.plen)
        return redis_clear_prefix(&cb->proto, &cb->req, &cb->req2,
                                  &cb->pattern, 1, node_xchg, &x, err);
    redis_req *q = &cb->req;
    redis_req_reset(q);
    int rc = redis_req_addz(q, err, 1, "FLUSHDB");
    if (rc == CACHE_OK)
        rc = redis_exchange_on(&cb->base, &n->conn, q, err);
    if (rc == CACHE_OK)
        rc = redis_reply_ok(q->replies[0], n->conn.label, err);
    redis_req_reset(q);
    return rc;
}

static int cluster_clear(cache_backend *b, cache_err *err)
{
    cluster_backend *cb = (cluster_backend *)b;
    int rc = refresh_map(cb, err); /* the masters of now */
    if (rc != CACHE_OK)
        return rc;
    cache_err first = {0, ""};
    for (size_t j = 0; j < cb->nnodes; j++) {
        if (!cb->nodes[j]->is_master)
            continue;
        cache_err e;
        int rc2 = clear_node(cb, cb->nodes[j], &e);
        if (rc2 == CACHE_PENDING)
            return rc2;
        if (rc2 != CACHE_OK && !first.code)
            first = e;
    }
    if (first.code < 0)
        return cache_fail(err, first.code, "%s", first.msg);
    return CACHE_OK;
}

/* ---- construction ------------------------------------------------------------------- */

static void cluster_destroy(cache_backend *b)
{
    cluster_backend *cb = (cluster_backend *)b;
    for (size_t i = 0; i < cb->nnodes; i++)
        node_free(cb->nodes[i]);
    free(cb->nodes);
    free(cb->username);
    if (cb->password)
        memset(cb->password, 0, strlen(cb->password));
    free(cb->password);
    redis_tls_unref(cb->tls);
    free(cb->proto.prefix);
    redis_req_free(&cb->req);
    redis_req_free(&cb->req2);
    redis_req_free(&cb->asking);
    cache_buf_free(&cb->scratch);
    cache_buf_free(&cb->keybuf);
    cache_buf_free(&cb->pattern);
    free(cb);
}

static const cache_vtable cluster_vtable = {
    .name = "RedisClusterCache",
    .values_checked = 1,
    .get = cluster_get,
    .set = cluster_set,
    .del = cluster_del,
    .has = cluster_has,
    .clear = cluster_clear,
    .incr = cluster_incr,
    .get_many = cluster_get_many,
    .set_many = cluster_set_many,
    .del_many = cluster_del_many,
    .destroy = cluster_destroy,
};

static int add_seed(void *ctx, const char *host, int port, cache_err *err)
{
    return node_index(ctx, host, port, err) < 0 ? (err ? err->code : CACHE_FAIL)
                                                : CACHE_OK;
}

cache_backend *cache_redis_cluster_create(cache_opts *opts, cache_err *err)
{
    redis_common_opts common;
    if (redis_take_common_opts(opts, &common, err) != CACHE_OK)
        return NULL;
    cluster_backend *cb = calloc(1, sizeof *cb);
    if (!cb) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    cb->base.vt = &cluster_vtable;
    redis_req_init(&cb->req);
    redis_req_init(&cb->req2);
    redis_req_init(&cb->asking);
    cache_buf_init(&cb->scratch);
    cache_buf_init(&cb->keybuf);
    cache_buf_init(&cb->pattern);
    cb->connect_timeout = common.connect_timeout;
    cb->timeout = common.timeout;
    cb->proto.prefix = cache_strndup(common.prefix ? common.prefix : "",
                                     common.prefix ? common.plen : 0);
    cb->proto.plen = common.prefix ? common.plen : 0;
    cb->proto.label = "redis cluster";
    if (!cb->proto.prefix) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto fail;
    }
    redis_tls_opts tls;
    redis_tls_opts_init(&tls);
    int rc = redis_take_tls_opts(opts, &tls, err);
    if (rc == CACHE_OK)
        rc = redis_tls_setup(&tls, 0, &cb->tls, err);
    redis_tls_opts_free(&tls);
    if (rc != CACHE_OK ||
        redis_take_str(opts, "username", &cb->username, err) != CACHE_OK ||
        redis_take_str(opts, "password", &cb->password, err) != CACHE_OK ||
        redis_each_address(opts, "cluster", 1, add_seed, cb, err) != CACHE_OK ||
        cache_co_take_opts(opts, &cb->co, err) != CACHE_OK ||
        redis_co_attach(&cb->base, &cb->co, cb->tls != NULL, err) != CACHE_OK)
        goto fail;
    return &cb->base;
fail:
    cluster_destroy(&cb->base);
    return NULL;
}
