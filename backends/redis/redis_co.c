/*
 * redis_co.c - Redis exchanges on the cosocket path (see redis_co.h).
 *
 * A connection is pooled by the driver under a name that says everything
 * the session depends on: the server (host and port, or socket path), the
 * database, the user and a digest of the password. Two objects that differ
 * in any of them never share a connection; AUTH and SELECT are sent only on
 * a fresh one, exactly as the blocking transport sends them after
 * connecting (redis_net.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "redis_co.h"

/* ---- framing: complete RESP replies ------------------------------------- */

/* A reader that finished cleanly (no reply half read, nothing left over)
 * waits here for the next exchange of this thread instead of being freed:
 * one allocation less per operation. */
static _Thread_local redisReader *spare_reader;

static redisReader *take_reader(void)
{
    redisReader *r = spare_reader;
    spare_reader = NULL;
    return r ? r : redis_reader_new();
}

static void give_reader(redisReader *r, int clean)
{
    if (!r)
        return;
    if (clean && !spare_reader && r->err == 0 && r->ridx == -1 &&
        !redis_reader_has_leftover(r))
        spare_reader = r;
    else
        redisReaderFree(r);
}

/* The replies of phase 1 are kept as parsed, for the run that replays the
 * exchange next (redis_co_exchange moves them into its request). */
typedef struct frame_state {
    redisReader *reader;
    size_t want, got;
    redisReply **replies; /* phase 1: want of them */
} frame_state;

static void drop_replies(frame_state *f)
{
    if (f->replies) {
        for (size_t i = 0; i < f->got; i++)
            if (f->replies[i])
                freeReplyObject(f->replies[i]);
        free(f->replies);
    }
    f->replies = NULL;
    f->got = 0;
}

static void frame_end(cache_co_io *io)
{
    frame_state *f = io->fstate;
    if (f) {
        give_reader(f->reader, 0);
        drop_replies(f);
        free(f);
    }
    io->fstate = NULL;
}

static int frame_begin(cache_co_io *io, int phase, cache_err *err)
{
    frame_state *f = io->fstate;
    if (!f && !(f = io->fstate = calloc(1, sizeof *f)))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    drop_replies(f);
    give_reader(f->reader, 0); /* a reader cut short: its state is unknown */
    f->reader = take_reader();
    f->want = phase == 0 ? io->nsetup : io->nreplies;
    if (phase == 1 && f->want &&
        !(f->replies = calloc(f->want, sizeof *f->replies)))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    if (!f->reader)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    return CACHE_OK;
}

/* Setup replies (AUTH, SELECT) must be status replies, as redis_net.c's
 * setup_session requires. */
static int check_setup(const cache_co_io *io, size_t i, const redisReply *r,
                       cache_err *err)
{
    if (r->type == REDIS_REPLY_STATUS)
        return CACHE_OK;
    /* AUTH comes first when there is a password (see setup_bytes) */
    int auth_first = io->setup.len > 12 &&
                     memcmp(io->setup.data + 4, "$4\r\nAUTH", 8) == 0;
    const char *what = i == 0 && auth_first ? "AUTH" : "SELECT";
    if (r->type == REDIS_REPLY_ERROR)
        return cache_fail(err, CACHE_FAIL, "%s failed: %.*s", what,
                          (int)(r->len < 150 ? r->len : 150), r->str);
    return cache_fail(err, CACHE_FAIL, "%s failed: unexpected reply", what);
}

static int frame_feed(cache_co_io *io, int phase, const char *p, size_t n,
                      cache_err *err)
{
    frame_state *f = io->fstate;
    if (redisReaderFeed(f->reader, p, n) != REDIS_OK)
        return cache_fail(err, CACHE_ENOMEM, "out of memory reading a reply");
    while (f->got < f->want) {
        redisReply *r;
        int got = redis_reader_next(f->reader, &r, err);
        if (got < 0)
            return got;
        if (!got)
            return 0;
        if (phase == 0) {
            int rc = check_setup(io, f->got, r, err);
            freeReplyObject(r);
            if (rc != CACHE_OK)
                return rc;
        } else {
            f->replies[f->got] = r;
        }
        f->got++;
    }
    /* Bytes beyond what was asked for: the server and we disagree on where
     * replies start; the connection must not be reused. */
    if (redis_reader_has_leftover(f->reader))
        return cache_fail(err, CACHE_FAIL, "unexpected data after the replies");
    give_reader(f->reader, 1);
    f->reader = NULL;
    return 1;
}

static const cache_co_frame redis_frame = {
    .begin = frame_begin,
    .feed = frame_feed,
    .end = frame_end,
    .eof_ends = 0,
};

/* ---- recording an exchange -------------------------------------------------- */

/* AUTH [user] password and SELECT db, as redis_net.c sends them. */
static int setup_bytes(const redis_conn *c, cache_co_io *io, cache_err *err)
{
    redis_req q;
    redis_req_init(&q);
    char db[24];
    int rc = CACHE_OK;
    if (c->password && c->username)
        rc = redis_req_addz(&q, err, 3, "AUTH", c->username, c->password);
    else if (c->password)
        rc = redis_req_addz(&q, err, 2, "AUTH", c->password);
    if (rc == CACHE_OK && c->db != 0) {
        snprintf(db, sizeof db, "%lld", (long long)c->db);
        rc = redis_req_addz(&q, err, 2, "SELECT", db);
    }
    if (rc == CACHE_OK && q.ncmds &&
        cache_buf_set(&io->setup, q.bytes.data, q.bytes.len))
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
    io->nsetup = q.ncmds;
    redis_req_free(&q);
    return rc;
}

/* The last pool name made in this thread and what it was made of: every
 * run of an operation asks again, and a digest per run would be waste. It
 * is reused only for the very same label, db, user and password. */
static _Thread_local struct {
    char label[sizeof(((redis_conn *)0)->label)];
    long long db;
    char *user, *pass; /* copies */
    char pool[512];
} last_pool;

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static char *dup_opt(const char *s)
{
    return s ? cache_strndup(s, strlen(s)) : NULL;
}

static int make_pool_name(const redis_conn *c, char *out, size_t size);

/* "<label> db=N user=U auth=<16 hex digits of SHA-256 of the password>". */
static int pool_name(const redis_conn *c, char *out, size_t size)
{
    if (last_pool.pool[0] && last_pool.db == (long long)c->db &&
        strcmp(last_pool.label, c->label) == 0 &&
        same_str(last_pool.user, c->username) &&
        same_str(last_pool.pass, c->password)) {
        snprintf(out, size, "%s", last_pool.pool);
        return 0;
    }
    if (make_pool_name(c, out, size))
        return -1;
    free(last_pool.user);
    if (last_pool.pass)
        memset(last_pool.pass, 0, strlen(last_pool.pass));
    free(last_pool.pass);
    last_pool.user = dup_opt(c->username);
    last_pool.pass = dup_opt(c->password);
    if ((c->username && !last_pool.user) || (c->password && !last_pool.pass) ||
        strlen(out) >= sizeof last_pool.pool) {
        last_pool.pool[0] = '\0';
        return 0;
    }
    memcpy(last_pool.label, c->label, sizeof last_pool.label);
    last_pool.db = (long long)c->db;
    memcpy(last_pool.pool, out, strlen(out) + 1);
    return 0;
}

static int make_pool_name(const redis_conn *c, char *out, size_t size)
{
    char auth[17] = "-";
    if (c->password) {
        const void *parts[1] = {c->password};
        size_t lens[1] = {strlen(c->password)};
        unsigned char d[CACHE_DIGEST_MAX];
        char hex[2 * CACHE_DIGEST_MAX + 1];
        if (cache_digest(CACHE_SHA256, 1, parts, lens, d) == 0)
            return -1;
        cache_hex(d, 8, hex);
        memcpy(auth, hex, 16);
        auth[16] = '\0';
    }
    int n = snprintf(out, size, "cache %s db=%lld user=%s auth=%s", c->label,
                     (long long)c->db, c->username ? c->username : "-", auth);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static int record(const redis_conn *c, const redis_req *q, cache_co_io *io,
                  cache_err *err)
{
    /* nginx resolves names only with its `resolver` directive: localhost
     * is spelled as the address it stands for, so it needs none */
    const char *host = c->host;
    if (host && strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    int rc = cache_co_io_set(io, c->path ? NULL : host, c->port, c->path,
                             c->label, err);
    if (rc != CACHE_OK)
        return rc;
    io->connect_timeout = c->connect_timeout;
    io->timeout = c->timeout;
    if ((rc = setup_bytes(c, io, err)) != CACHE_OK)
        return rc;
    io->nreplies = q->ncmds;
    io->frame = &redis_frame;
    return CACHE_OK;
}

/* ---- replaying one ------------------------------------------------------------ */

static int replay(cache_co_io *io, redis_req *q, cache_err *err)
{
    if (io->rc != CACHE_OK) {
        if (err)
            *err = io->err;
        return io->rc;
    }
    if (io->nreplies != q->ncmds)
        return cache_fail(err, CACHE_FAIL,
                          "%s: the operation asked differently when run again",
                          io->label);
    int rc = redis_req_reserve_replies(q, err);
    if (rc != CACHE_OK)
        return rc;
    /* The first replay takes the replies as the frame parsed them; a later
     * one (an operation of several exchanges) parses the bytes again. */
    frame_state *f = io->fstate;
    if (f && f->replies && f->got == q->ncmds) {
        for (size_t i = 0; i < f->got; i++)
            q->replies[q->nreplies++] = f->replies[i];
        free(f->replies);
        f->replies = NULL;
        f->got = 0;
        return CACHE_OK;
    }
    redisReader *r = take_reader();
    if (!r || redisReaderFeed(r, io->reply.data, io->reply.len) != REDIS_OK) {
        if (r)
            redisReaderFree(r);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    while (q->nreplies < q->ncmds) {
        redisReply *reply;
        int got = redis_reader_next(r, &reply, err);
        if (got <= 0) {
            give_reader(r, 0);
            redis_req_drop_replies(q);
            return got < 0 ? got
                           : cache_fail(err, CACHE_FAIL,
                                        "%s: reply cut short", io->label);
        }
        q->replies[q->nreplies++] = reply;
    }
    give_reader(r, 1);
    return CACHE_OK;
}

static int co_exchange(cache_co *co, const redis_conn *c, redis_req *q,
                       int batch, cache_err *err)
{
    redis_req_drop_replies(q);
    char pool[512];
    if (pool_name(c, pool, sizeof pool))
        return cache_fail(err, CACHE_FAIL, "%s: cannot name the pool",
                          c->label);
    cache_co_io *io;
    cache_str req = {q->bytes.data, q->bytes.len};
    int got = batch ? cache_co_next_batch(co, pool, req, &io, err)
                    : cache_co_next(co, pool, req, &io, err);
    if (got == 1)
        return replay(io, q, err);
    if (got == 0) {
        int rc = record(c, q, io, err);
        if (rc != CACHE_OK) { /* a failure of this exchange: replayed as such */
            io->rc = rc;
            if (err)
                io->err = *err;
            io->done = 1;
        }
        if (rc != CACHE_OK)
            return rc;
        /* a batch's request is on its way: the run goes on to the next */
        return batch ? CACHE_OK : CACHE_PENDING;
    }
    return got;
}

int redis_co_exchange(cache_co *co, const redis_conn *c, redis_req *q,
                      cache_err *err)
{
    return co_exchange(co, c, q, 0, err);
}

int redis_exchange_on(const cache_backend *b, redis_conn *c, redis_req *q,
                      cache_err *err)
{
    cache_co *co = cache_co_of(b);
    if (co)
        return redis_co_exchange(co, c, q, err);
    return redis_conn_exchange(c, q, err);
}

/* The halves on the cosocket path: the send records the exchange as part
 * of a batch (or, in a later run, hands its replies to q at once); the
 * receive finds them there, or ends the run until the driver has them. */
int redis_send_on(const cache_backend *b, redis_conn *c, redis_req *q,
                  cache_err *err)
{
    cache_co *co = cache_co_of(b);
    if (co)
        return co_exchange(co, c, q, 1, err);
    return redis_conn_send(c, q, err);
}

int redis_recv_on(const cache_backend *b, redis_conn *c, redis_req *q,
                  cache_err *err)
{
    cache_co *co = cache_co_of(b);
    if (!co)
        return redis_conn_recv(c, q, err);
    if (q->nreplies == q->ncmds && q->ncmds > 0)
        return CACHE_OK;
    return cache_co_block(co);
}

int redis_co_attach(cache_backend *b, const cache_co_opts *co, int tls,
                    cache_err *err)
{
    if (!tls) {
        b->co = co;
        return CACHE_OK;
    }
    b->co = NULL;
    if (co->transport == CACHE_TRANSPORT_COSOCKET)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'transport': 'cosocket' is not available "
                          "with TLS (the ssl options): use 'auto' or "
                          "'blocking'");
    return CACHE_OK;
}
