/*
 * memcached_co.c - the memcached family on the cosocket path (see
 * memcached_co.h): memcached's binary protocol, requests built and replies
 * parsed here, bytes moved by the Lua driver.
 *
 * A request is a 24-byte header (magic 0x80, opcode, key length, extras
 * length, body length, opaque, cas; big-endian) then extras, key, value; a
 * response the same with magic 0x81 and a status in place of the vbucket.
 * Every request of a pipeline carries its index as opaque, and the last one
 * always answers (a GETK, a NOOP after quiet GETKQs, a plain SET / DELETE /
 * FLUSH): the exchange is complete when the answer to the last one came,
 * and any byte after it puts the stream out of step (the connection is
 * closed, never pooled).
 */
#define _DEFAULT_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "memcached_co.h"

enum {
    OP_SET = 0x01,
    OP_ADD = 0x02,
    OP_DELETE = 0x04,
    OP_INCREMENT = 0x05,
    OP_FLUSH = 0x08,
    OP_NOOP = 0x0a,
    OP_GETK = 0x0c,
    OP_GETKQ = 0x0d,
    OP_SASL_AUTH = 0x21
};

enum {
    ST_OK = 0x0000,
    ST_NOT_FOUND = 0x0001,
    ST_EXISTS = 0x0002,
    ST_TOO_LARGE = 0x0003,
    ST_INVALID = 0x0004,
    ST_NOT_STORED = 0x0005,
    ST_NON_NUMERIC = 0x0006,
    ST_AUTH_ERROR = 0x0020,
    ST_AUTH_CONTINUE = 0x0021,
    ST_UNKNOWN_COMMAND = 0x0081,
    ST_NO_MEMORY = 0x0082
};

#define HEADER 24
/* A body claiming more is refused as corrupt before anything waits for it
 * (memcached's item limit is at most 1 GiB, -I). */
#define MAX_BODY ((uint32_t)1 << 30)

/* What libmemcached's settings in memcached.c give the blocking path. */
#define CONNECT_TIMEOUT 1.0
#define IO_TIMEOUT 1.0

cache_co *mcco_of(const mc_backend *b)
{
    return cache_co_of(&b->base);
}

/* The last transport failure of this thread's run (for mc_fail's message)
 * and the cas of the last hit handed to a callback. */
static _Thread_local char last_why[CACHE_ERRMSG_MAX];
static _Thread_local uint64_t last_cas;

uint64_t mcco_last_cas(void)
{
    return last_cas;
}

/* ---- bytes ------------------------------------------------------------------ */

static void be16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void be32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static void be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) << 32 | rd32(p + 4);
}

static int put_req(cache_buf *b, uint8_t op, const char *key, size_t klen,
                   const unsigned char *extras, size_t elen, const char *val,
                   size_t vlen, uint32_t opaque, uint64_t cas)
{
    if (klen > 0xffff || elen > 0xff || vlen > MAX_BODY)
        return -1;
    unsigned char h[HEADER] = {0};
    h[0] = 0x80;
    h[1] = op;
    be16(h + 2, (uint16_t)klen);
    h[4] = (unsigned char)elen;
    be32(h + 8, (uint32_t)(elen + klen + vlen));
    be32(h + 12, opaque);
    be64(h + 16, cas);
    if (cache_buf_append(b, h, HEADER) ||
        (elen && cache_buf_append(b, extras, elen)) ||
        (klen && cache_buf_append(b, key, klen)) ||
        (vlen && cache_buf_append(b, val, vlen)))
        return -1;
    return 0;
}

typedef struct resp {
    uint8_t op;
    uint16_t status;
    uint32_t opaque;
    uint64_t cas;
    const unsigned char *extras;
    size_t elen;
    const char *val;
    size_t vlen;
} resp;

/* 1 and *used: a whole response at p; 0: more bytes needed; -1: no
 * binary-protocol response. */
static int parse_resp(const char *p, size_t n, resp *r, size_t *used)
{
    if (n < HEADER)
        return n > 0 && (unsigned char)p[0] != 0x81 ? -1 : 0;
    const unsigned char *h = (const unsigned char *)p;
    if (h[0] != 0x81)
        return -1;
    size_t klen = (size_t)h[2] << 8 | h[3], elen = h[4];
    uint32_t body = rd32(h + 8);
    if (body > MAX_BODY || elen + klen > body)
        return -1;
    if (n - HEADER < body)
        return 0;
    r->op = h[1];
    r->status = (uint16_t)((uint16_t)h[6] << 8 | h[7]);
    r->opaque = rd32(h + 12);
    r->cas = rd64(h + 16);
    r->extras = h + HEADER;
    r->elen = elen;
    r->val = p + HEADER + elen + klen;
    r->vlen = body - elen - klen;
    *used = HEADER + body;
    return 1;
}

/* ---- framing ------------------------------------------------------------------ */

typedef struct frame_state {
    size_t off;     /* parsed so far (phase 1: of io->reply) */
    cache_buf auth; /* phase 0: the SASL reply */
} frame_state;

static void frame_end(cache_co_io *io)
{
    frame_state *f = io->fstate;
    if (f) {
        cache_buf_free(&f->auth);
        free(f);
    }
    io->fstate = NULL;
}

static int frame_begin(cache_co_io *io, int phase, cache_err *err)
{
    frame_state *f = io->fstate;
    if (!f) {
        if (!(f = io->fstate = calloc(1, sizeof *f)))
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        cache_buf_init(&f->auth);
    }
    f->off = 0;
    f->auth.len = 0;
    return CACHE_OK;
}

/* Phase 0 waits for the SASL reply; phase 1 for the answer to the last
 * request, whose opaque is io->nreplies. */
static int frame_feed(cache_co_io *io, int phase, const char *p, size_t n,
                      cache_err *err)
{
    frame_state *f = io->fstate;
    cache_buf *b = &io->reply;
    if (phase == 0) {
        if (cache_buf_append(&f->auth, p, n))
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        b = &f->auth;
    }
    for (;;) {
        resp r;
        size_t used;
        int got = parse_resp(b->data + f->off, b->len - f->off, &r, &used);
        if (got < 0)
            return cache_fail(err, CACHE_FAIL, "protocol error: not a binary "
                                               "protocol response");
        if (got == 0)
            return 0;
        f->off += used;
        int last = phase == 0 ? 1 : r.opaque == (uint32_t)io->nreplies;
        if (!last)
            continue;
        if (f->off != b->len)
            return cache_fail(err, CACHE_FAIL, "unexpected data after the replies");
        if (phase == 0 && r.status != ST_OK)
            return cache_fail(err, CACHE_FAIL,
                              "SASL authentication failed: %.*s",
                              (int)(r.vlen < 100 ? r.vlen : 100), r.val);
        return 1;
    }
}

static const cache_co_frame binary_frame = {
    .begin = frame_begin,
    .feed = frame_feed,
    .end = frame_end,
    .eof_ends = 0,
};

/* ---- servers and exchanges ------------------------------------------------------ */

typedef struct server {
    const char *name;
    int port; /* 0: a unix socket path */
    char label[300];
} server;

static void server_at(const mc_backend *b, uint32_t i, server *s)
{
    const memcached_instance_st *in = memcached_server_instance_by_position(b->m, i);
    s->name = in ? memcached_server_name(in) : "?";
    s->port = in ? memcached_server_port(in) : 0;
    if (!s->name)
        s->name = "?";
    if (s->name[0] == '/' || s->port == 0)
        snprintf(s->label, sizeof s->label, "memcached %s", s->name);
    else if (strchr(s->name, ':'))
        snprintf(s->label, sizeof s->label, "memcached [%s]:%d", s->name, s->port);
    else
        snprintf(s->label, sizeof s->label, "memcached %s:%d", s->name, s->port);
}

/* The pool: the server, the user and a digest of the password. */
static void pool_name(const mc_backend *b, const server *s, char *out,
                      size_t size)
{
    char auth[17] = "-";
    if (b->pass) {
        const void *parts[1] = {b->pass};
        size_t lens[1] = {strlen(b->pass)};
        unsigned char d[CACHE_DIGEST_MAX];
        char hex[2 * CACHE_DIGEST_MAX + 1];
        if (cache_digest(CACHE_SHA256, 1, parts, lens, d)) {
            cache_hex(d, 8, hex);
            memcpy(auth, hex, 16);
            auth[16] = '\0';
        }
    }
    snprintf(out, size, "cache %s user=%s auth=%s", s->label,
             b->user ? b->user : "-", auth);
}

/* SASL PLAIN, as libmemcached authenticates a TCP connection it opens. */
static int sasl_bytes(const mc_backend *b, const server *s, cache_co_io *io)
{
    if (!b->user || !b->pass || s->port == 0)
        return 0;
    size_t ul = strlen(b->user), pl = strlen(b->pass);
    char *v = malloc(ul + pl + 2);
    if (!v)
        return -1;
    v[0] = '\0';
    memcpy(v + 1, b->user, ul);
    v[1 + ul] = '\0';
    memcpy(v + 2 + ul, b->pass, pl);
    int rc = put_req(&io->setup, OP_SASL_AUTH, "PLAIN", 5, NULL, 0, v,
                     ul + pl + 2, 0, 0);
    memset(v, 0, ul + pl + 2);
    free(v);
    io->nsetup = 1;
    return rc;
}

/* The exchange of req with server si (last: the opaque of its last
 * request). Returns 1 and *io when done (its outcome in io->rc), 0 when
 * recorded for the driver, or a failure. */
static int exchange(mc_backend *b, cache_co *co, uint32_t si,
                    const cache_buf *req, uint32_t last, int batch,
                    cache_co_io **out, cache_err *err)
{
    server s;
    server_at(b, si, &s);
    char pool[600];
    pool_name(b, &s, pool, sizeof pool);
    cache_str bytes = {req->data, req->len};
    cache_co_io *io;
    int got = batch ? cache_co_next_batch(co, pool, bytes, &io, err)
                    : cache_co_next(co, pool, bytes, &io, err);
    if (got == 1) {
        *out = io;
        return 1;
    }
    if (got != 0)
        return got;
    const char *host = s.port ? s.name : NULL;
    if (host && strcmp(host, "localhost") == 0)
        host = "127.0.0.1"; /* no nginx resolver needed for it */
    int rc = cache_co_io_set(io, host, s.port, s.port ? NULL : s.name, s.label,
                             err);
    if (rc == CACHE_OK && sasl_bytes(b, &s, io))
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
    if (rc != CACHE_OK) {
        io->rc = rc;
        if (err)
            io->err = *err;
        io->done = 1;
        *out = io;
        return 1;
    }
    io->connect_timeout = CONNECT_TIMEOUT;
    io->timeout = IO_TIMEOUT;
    io->nreplies = last;
    io->frame = &binary_frame;
    return 0;
}

/* An exchange's transport failure: its message (without the label, which
 * fail_on puts back) kept for mc_fail. */
static memcached_return_t transport_failed(const cache_co_io *io)
{
    const char *m = io->err.msg;
    size_t ll = io->label ? strlen(io->label) : 0;
    if (ll && strncmp(m, io->label, ll) == 0 && m[ll] == ':')
        m += ll + 2;
    snprintf(last_why, sizeof last_why, "%s", m);
    return MEMCACHED_CONNECTION_FAILURE;
}

static memcached_return_t from_status(uint16_t st)
{
    last_why[0] = '\0';
    switch (st) {
    case ST_OK: return MEMCACHED_SUCCESS;
    case ST_NOT_FOUND: return MEMCACHED_NOTFOUND;
    case ST_EXISTS: return MEMCACHED_DATA_EXISTS;
    case ST_TOO_LARGE: return MEMCACHED_E2BIG;
    case ST_NOT_STORED: return MEMCACHED_NOTSTORED;
    case ST_NON_NUMERIC: return MEMCACHED_CLIENT_ERROR;
    case ST_AUTH_ERROR:
    case ST_AUTH_CONTINUE: return MEMCACHED_AUTH_FAILURE;
    case ST_UNKNOWN_COMMAND: return MEMCACHED_NOT_SUPPORTED;
    case ST_NO_MEMORY: return MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE;
    default: return MEMCACHED_PROTOCOL_ERROR;
    }
}

/* One request to the key's server, its one answer in *r (pointing into the
 * exchange's reply). */
static memcached_return_t single(mc_backend *b, const mc_key *k, cache_buf *req,
                                 resp *r)
{
    cache_co *co = mcco_of(b);
    cache_co_io *io;
    cache_err e = {0, ""};
    int got = exchange(b, co, mc_server_of(b, k), req, 0, 0, &io, &e);
    cache_buf_free(req);
    if (got == CACHE_PENDING || got == 0)
        return MCCO_PENDING;
    if (got < 0) {
        snprintf(last_why, sizeof last_why, "%s", e.msg);
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    if (io->rc != CACHE_OK)
        return transport_failed(io);
    size_t used;
    if (parse_resp(io->reply.data, io->reply.len, r, &used) != 1) {
        snprintf(last_why, sizeof last_why, "protocol error");
        return MEMCACHED_PROTOCOL_ERROR;
    }
    return from_status(r->status);
}

/* ---- single-key calls ---------------------------------------------------------------- */

memcached_return_t mcco_store(mc_backend *b, const mc_key *k, const char *v,
                              size_t n, time_t exp, uint32_t flags, int add,
                              uint64_t cas)
{
    unsigned char ex[8];
    be32(ex, flags);
    be32(ex + 4, (uint32_t)exp);
    cache_buf req;
    cache_buf_init(&req);
    if (put_req(&req, add ? OP_ADD : OP_SET, k->s, k->len, ex, 8, v, n, 0, cas)) {
        cache_buf_free(&req);
        return n > MAX_BODY ? MEMCACHED_E2BIG : MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    resp r;
    return single(b, k, &req, &r);
}

memcached_return_t mcco_delete(mc_backend *b, const mc_key *k)
{
    cache_buf req;
    cache_buf_init(&req);
    if (put_req(&req, OP_DELETE, k->s, k->len, NULL, 0, NULL, 0, 0, 0)) {
        cache_buf_free(&req);
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    resp r;
    return single(b, k, &req, &r);
}

/* As libmemcached's exist: an ADD of nothing with an expiry memcached reads
 * as a date in 1970, so a missing key stays missing and nothing is copied. */
memcached_return_t mcco_exist(mc_backend *b, const mc_key *k)
{
    memcached_return_t rc = mcco_store(b, k, NULL, 0, (time_t)2678400, 0, 1, 0);
    if (rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTSTORED)
        return MEMCACHED_SUCCESS;
    if (rc == MEMCACHED_SUCCESS)
        return MEMCACHED_NOTFOUND;
    return rc;
}

memcached_return_t mcco_get(mc_backend *b, const mc_key *k, cache_buf *out,
                            uint32_t *flags, uint64_t *cas)
{
    cache_buf req;
    cache_buf_init(&req);
    if (put_req(&req, OP_GETK, k->s, k->len, NULL, 0, NULL, 0, 0, 0)) {
        cache_buf_free(&req);
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    resp r;
    memcached_return_t rc = single(b, k, &req, &r);
    if (rc != MEMCACHED_SUCCESS)
        return rc;
    *flags = r.elen >= 4 ? rd32(r.extras) : 0;
    *cas = r.cas;
    if (cache_buf_append(out, r.val, r.vlen))
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    return MEMCACHED_SUCCESS;
}

memcached_return_t mcco_incr(mc_backend *b, const mc_key *k, uint64_t offset,
                             uint64_t *value)
{
    unsigned char ex[20];
    be64(ex, offset);
    be64(ex + 8, 0);
    be32(ex + 16, 0xffffffffu); /* never create: as libmemcached's increment */
    cache_buf req;
    cache_buf_init(&req);
    if (put_req(&req, OP_INCREMENT, k->s, k->len, ex, 20, NULL, 0, 0, 0)) {
        cache_buf_free(&req);
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    resp r;
    memcached_return_t rc = single(b, k, &req, &r);
    if (rc == MEMCACHED_SUCCESS) {
        if (r.vlen != 8)
            return MEMCACHED_PROTOCOL_ERROR;
        *value = rd64((const unsigned char *)r.val);
    }
    return rc;
}

/* ---- batches: one pipeline per server -------------------------------------------------- */

typedef struct batch {
    uint32_t nservers;
    cache_buf *req;  /* per server */
    uint32_t *last;  /* per server: the opaque of its last request */
    uint32_t *srv;   /* per key */
    cache_co_io **io;
} batch;

static void batch_free(batch *t)
{
    if (t->req)
        for (uint32_t s = 0; s < t->nservers; s++)
            cache_buf_free(&t->req[s]);
    free(t->req), free(t->last), free(t->srv), free(t->io);
}

static int batch_init(mc_backend *b, batch *t, size_t n)
{
    t->nservers = memcached_server_count(b->m);
    uint32_t ns = t->nservers ? t->nservers : 1;
    t->req = calloc(ns, sizeof *t->req);
    t->last = calloc(ns, sizeof *t->last);
    t->srv = calloc(n ? n : 1, sizeof *t->srv);
    t->io = calloc(ns, sizeof *t->io);
    return t->req && t->last && t->srv && t->io ? 0 : -1;
}

/* Every server's pipeline recorded (or replayed): 1 when all are done, or
 * CACHE_PENDING (the run stops until the driver made them), or a failure. */
static int batch_run(mc_backend *b, batch *t, cache_err *err)
{
    cache_co *co = mcco_of(b);
    int waiting = 0;
    for (uint32_t s = 0; s < t->nservers; s++) {
        if (!t->req[s].len)
            continue;
        int got = exchange(b, co, s, &t->req[s], t->last[s], 1, &t->io[s], err);
        if (got < 0)
            return got;
        if (got == 0)
            waiting = 1;
    }
    return waiting ? cache_co_block(co) : 1;
}

/* The responses of server s's exchange, in order: fn for each. */
static void batch_each(const batch *t, uint32_t s,
                       void (*fn)(void *ctx, const resp *r), void *ctx)
{
    const cache_co_io *io = t->io[s];
    size_t off = 0, used;
    resp r;
    while (off < io->reply.len &&
           parse_resp(io->reply.data + off, io->reply.len - off, &r, &used) == 1) {
        fn(ctx, &r);
        off += used;
    }
}

/* The servers whose exchange failed go into down (when given). */
static void mark_down(const batch *t, unsigned char *down)
{
    for (uint32_t s = 0; down && s < t->nservers; s++)
        if (t->io[s] && t->io[s]->rc != CACHE_OK)
            down[s] = 1;
}

typedef struct mget_ctx {
    size_t n;
    const mc_key *keys;
    mc_hit_fn hit;
    void *ctx;
    int *status;
    int hit_rc;
} mget_ctx;

static void mget_one(void *vctx, const resp *r)
{
    mget_ctx *m = vctx;
    if (r->op != OP_GETKQ || r->opaque >= m->n || r->status != ST_OK ||
        m->status[r->opaque] == CACHE_OK)
        return;
    last_cas = r->cas;
    uint32_t flags = r->elen >= 4 ? rd32(r->extras) : 0;
    int hr = m->hit(m->ctx, r->opaque, r->val, r->vlen, flags);
    if (hr < 0)
        m->hit_rc = hr;
    else
        m->status[r->opaque] = hr;
}

int mcco_mget(mc_backend *b, size_t n, const mc_key *keys, mc_hit_fn hit,
              void *ctx, int *status, unsigned char *down, cache_err *err)
{
    if (n == 0)
        return CACHE_OK;
    batch t = {0};
    int rc = CACHE_OK;
    if (batch_init(b, &t, n)) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto out;
    }
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        status[i] = CACHE_MISS;
        t.srv[i] = mc_server_of(b, &keys[i]);
        if (down && down[t.srv[i]]) {
            status[i] = CACHE_FAIL; /* err tells why already */
            failed++;
            continue;
        }
        if (put_req(&t.req[t.srv[i]], OP_GETKQ, keys[i].s, keys[i].len, NULL,
                    0, NULL, 0, (uint32_t)i, 0)) {
            rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
            goto out;
        }
    }
    for (uint32_t s = 0; s < t.nservers; s++)
        if (t.req[s].len) {
            t.last[s] = (uint32_t)n; /* the NOOP ends each server's answers */
            if (put_req(&t.req[s], OP_NOOP, NULL, 0, NULL, 0, NULL, 0,
                        (uint32_t)n, 0)) {
                rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
                goto out;
            }
        }
    rc = batch_run(b, &t, err);
    if (rc != 1)
        goto out;
    mget_ctx m = {n, keys, hit, ctx, status, CACHE_OK};
    int first_fail = -1;
    for (uint32_t s = 0; s < t.nservers; s++)
        if (t.io[s] && t.io[s]->rc == CACHE_OK)
            batch_each(&t, s, mget_one, &m);
    for (size_t i = 0; i < n; i++) {
        const cache_co_io *io = t.io[t.srv[i]];
        if (io && io->rc != CACHE_OK && status[i] != CACHE_FAIL) {
            status[i] = CACHE_FAIL;
            failed++;
            if (first_fail < 0) {
                first_fail = (int)i;
                transport_failed(io);
            }
        }
    }
    mark_down(&t, down);
    if (first_fail >= 0)
        mc_fail(b, &keys[first_fail], MEMCACHED_CONNECTION_FAILURE, err);
    rc = m.hit_rc < 0 ? m.hit_rc : failed == n ? CACHE_FAIL : CACHE_OK;
out:
    batch_free(&t);
    return rc;
}

/* rcs[i] of a key run_each did not send: its server is in down. */
#define MCCO_SKIPPED ((memcached_return_t)1001)

typedef struct status_ctx {
    size_t n;
    memcached_return_t *rcs;
} status_ctx;

static void note_status(void *vctx, const resp *r)
{
    status_ctx *c = vctx;
    if (r->opaque < c->n)
        c->rcs[r->opaque] = from_status(r->status);
}

/* Sends request i (built by make) for every key, in one pipeline per
 * server, and sets rcs[i] from each answer (or the exchange's failure). */
static int run_each(mc_backend *b, size_t n, const mc_key *keys,
                    int (*make)(cache_buf *req, size_t i, void *ctx), void *ctx,
                    memcached_return_t *rcs, unsigned char *down, cache_err *err)
{
    batch t = {0};
    int rc;
    if (batch_init(b, &t, n)) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        t.srv[i] = mc_server_of(b, &keys[i]);
        if (down && down[t.srv[i]]) {
            rcs[i] = MCCO_SKIPPED;
            continue;
        }
        t.last[t.srv[i]] = (uint32_t)i;
        rcs[i] = MEMCACHED_PROTOCOL_ERROR; /* unless an answer says */
        if (make(&t.req[t.srv[i]], i, ctx)) {
            rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
            goto out;
        }
    }
    rc = batch_run(b, &t, err);
    if (rc != 1)
        goto out;
    status_ctx c = {n, rcs};
    for (uint32_t s = 0; s < t.nservers; s++)
        if (t.io[s] && t.io[s]->rc == CACHE_OK)
            batch_each(&t, s, note_status, &c);
    for (size_t i = 0; i < n; i++) {
        const cache_co_io *io = t.io[t.srv[i]];
        if (io && io->rc != CACHE_OK && rcs[i] != MCCO_SKIPPED)
            rcs[i] = transport_failed(io);
    }
    mark_down(&t, down);
    rc = CACHE_OK;
out:
    batch_free(&t);
    return rc;
}

typedef struct store_ctx {
    const mc_key *keys;
    const cache_str *vals;
    const uint32_t *flags;
    time_t exp;
} store_ctx;

static int make_set(cache_buf *req, size_t i, void *vctx)
{
    store_ctx *c = vctx;
    unsigned char ex[8];
    be32(ex, c->flags[i]);
    be32(ex + 4, (uint32_t)c->exp);
    return put_req(req, OP_SET, c->keys[i].s, c->keys[i].len, ex, 8,
                   c->vals[i].ptr, c->vals[i].len, (uint32_t)i, 0);
}

/* status[i] from rcs[i]; the first failure's message in err. */
static int statuses(mc_backend *b, size_t n, const mc_key *keys,
                    const memcached_return_t *rcs, int deleting, int *status,
                    cache_err *err)
{
    int any_fail = 0, all_fail = 1;
    for (size_t i = 0; i < n; i++) {
        memcached_return_t rc = rcs[i];
        if (rc == MEMCACHED_SUCCESS || (deleting && rc == MEMCACHED_NOTFOUND)) {
            status[i] = CACHE_OK;
            all_fail = 0;
            continue;
        }
        status[i] = CACHE_FAIL;
        if (rc == MCCO_SKIPPED)
            continue; /* its server failed in an earlier step; err says so */
        if (!any_fail)
            mc_fail(b, &keys[i], rc, err);
        any_fail = 1;
    }
    return all_fail ? CACHE_FAIL : CACHE_OK;
}

int mcco_store_many(mc_backend *b, size_t n, const mc_key *keys,
                    const cache_str *vals, const uint32_t *flags, time_t exp,
                    int *status, cache_err *err)
{
    if (n == 0)
        return CACHE_OK;
    memcached_return_t *rcs = malloc(n * sizeof *rcs);
    if (!rcs)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    store_ctx c = {keys, vals, flags, exp};
    int rc = run_each(b, n, keys, make_set, &c, rcs, NULL, err);
    if (rc == CACHE_OK)
        rc = statuses(b, n, keys, rcs, 0, status, err);
    free(rcs);
    return rc;
}

static int make_delete(cache_buf *req, size_t i, void *vctx)
{
    const mc_key *keys = vctx;
    return put_req(req, OP_DELETE, keys[i].s, keys[i].len, NULL, 0, NULL, 0,
                   (uint32_t)i, 0);
}

/* A delete's own answer says it: gone (deleted, or there was none). */
int mcco_delete_many(mc_backend *b, size_t n, const mc_key *keys, int *status,
                     unsigned char *down, cache_err *err)
{
    if (n == 0)
        return CACHE_OK;
    memcached_return_t *rcs = malloc(n * sizeof *rcs);
    if (!rcs)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    int rc = run_each(b, n, keys, make_delete, (void *)keys, rcs, down, err);
    if (rc == CACHE_OK)
        rc = statuses(b, n, keys, rcs, 1, status, err);
    free(rcs);
    return rc;
}

/* FLUSH to every server, all at once. */
memcached_return_t mcco_flush(mc_backend *b)
{
    batch t = {0};
    cache_err e = {0, ""};
    memcached_return_t out = MEMCACHED_SUCCESS;
    if (batch_init(b, &t, 0)) {
        out = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
        goto done;
    }
    for (uint32_t s = 0; s < t.nservers; s++)
        if (put_req(&t.req[s], OP_FLUSH, NULL, 0, NULL, 0, NULL, 0, 0, 0)) {
            out = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
            goto done;
        }
    int rc = batch_run(b, &t, &e);
    if (rc == CACHE_PENDING) {
        out = MCCO_PENDING;
        goto done;
    }
    if (rc != 1) {
        snprintf(last_why, sizeof last_why, "%s", e.msg);
        out = MEMCACHED_FAILURE;
        goto done;
    }
    for (uint32_t s = 0; s < t.nservers && out == MEMCACHED_SUCCESS; s++) {
        const cache_co_io *io = t.io[s];
        resp r;
        size_t used;
        if (io->rc != CACHE_OK)
            out = transport_failed(io);
        else if (parse_resp(io->reply.data, io->reply.len, &r, &used) == 1)
            out = from_status(r.status);
    }
done:
    batch_free(&t);
    return out;
}

/* ---- messages ------------------------------------------------------------------------ */

const char *mcco_why(mc_backend *b, memcached_return_t rc)
{
    if (last_why[0])
        return last_why;
    return memcached_strerror(b->m, rc);
}
