/*
 * co.c - the cosocket seam (see co.h): the transcript of an operation's
 * exchanges, and the machine that drives one exchange over a connection
 * the Lua driver holds.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "co.h"

/* ---- options ------------------------------------------------------------------ */

static const char *const transport_names[] = {"auto", "cosocket", "blocking"};

const char *cache_co_transport_name(int transport)
{
    return transport >= 0 && transport <= 2 ? transport_names[transport] : "?";
}

int cache_co_take_opts(cache_opts *o, cache_co_opts *out, cache_err *err)
{
    out->transport = CACHE_TRANSPORT_AUTO;
    out->pool_size = 30; /* nginx's lua_socket_pool_size */
    out->backlog = -1;
    out->keepalive_timeout = 60; /* nginx's lua_socket_keepalive_timeout */
    const char *t;
    size_t tl;
    int got = cache_opt_str(o, "transport", &t, &tl, err);
    if (got < 0)
        return got;
    if (got) {
        int found = 0;
        for (int i = 0; i < 3 && !found; i++)
            if (strlen(transport_names[i]) == tl &&
                memcmp(transport_names[i], t, tl) == 0) {
                out->transport = i;
                found = 1;
            }
        if (!found)
            return cache_fail(err, CACHE_EINVAL,
                              "option 'transport': '%.*s' is not one of "
                              "auto, cosocket, blocking",
                              (int)(tl < 40 ? tl : 40), t);
    }
    if (cache_opt_int(o, "pool_size", 1, 100000, &out->pool_size, err) < 0 ||
        cache_opt_int(o, "backlog", 0, 100000, &out->backlog, err) < 0 ||
        cache_opt_num(o, "keepalive_timeout", 0, 86400,
                      &out->keepalive_timeout, err) < 0)
        return CACHE_EINVAL;
    return CACHE_OK;
}

/* ---- exchanges ---------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? cache_strndup(s, strlen(s)) : NULL;
}

/* host, path and label share one allocation (io->strs). */
int cache_co_io_set(cache_co_io *io, const char *host, int port,
                    const char *path, const char *label, cache_err *err)
{
    size_t hl = host ? strlen(host) + 1 : 0, pl = path ? strlen(path) + 1 : 0,
           ll = label ? strlen(label) + 1 : 0;
    free(io->strs);
    io->strs = malloc(hl + pl + ll + 1);
    if (!io->strs)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    char *p = io->strs;
    io->host = host ? memcpy(p, host, hl) : NULL;
    p += hl;
    io->path = path ? memcpy(p, path, pl) : NULL;
    p += pl;
    io->label = label ? memcpy(p, label, ll) : NULL;
    io->port = port;
    return CACHE_OK;
}

static void io_free(cache_co_io *io)
{
    if (io->frame && io->frame->end)
        io->frame->end(io);
    free(io->strs);
    free(io->pool);
    cache_buf_free(&io->setup);
    cache_buf_free(&io->request);
    cache_buf_free(&io->reply);
    free(io);
}

/* ---- the operation --------------------------------------------------------------- */

struct cache_co {
    cache_backend *b;
    cache_co_opts opts; /* a copy: the object may be closed meanwhile */
    cache_co_io **ios;  /* in the order the runs asked for them */
    size_t nios, cap;
    cache_co_io *few[2]; /* ios while there are no more */
    size_t next;      /* the next exchange of the current run */
    size_t first;     /* ios[first..nios) wait for the driver */
    int cur;          /* the one the last action was about, or -1 */
    int asked;        /* the current run waits for an exchange */
    cache_co *outer;  /* the run this one interrupted (a finalizer's) */
    double wall;      /* the wall clock its runs see */
    unsigned changes; /* runs that asked otherwise than the one before */
    cache_buf draws;  /* the random bytes its runs drew, in order */
    size_t drawn;     /* how many of them the current run used */
};

#define CO_MAX_CHANGES 32

/* The run under way in this thread (nginx workers have one thread; a
 * threaded Lua host has one per state). */
static _Thread_local cache_co *running;

cache_co *cache_co_new(cache_backend *b, cache_err *err)
{
    cache_co *co = calloc(1, sizeof *co);
    if (!co) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    co->b = b;
    cache_buf_init(&co->draws);
    co->ios = co->few;
    co->cap = sizeof co->few / sizeof co->few[0];
    co->cur = -1;
    co->wall = cache_wall_now();
    if (b->co)
        co->opts = *b->co;
    return co;
}

void cache_co_free(cache_co *co)
{
    if (!co)
        return;
    if (running == co)
        running = co->outer;
    for (size_t i = 0; i < co->nios; i++)
        io_free(co->ios[i]);
    if (co->ios != co->few)
        free(co->ios);
    cache_buf_free(&co->draws);
    free(co);
}

void cache_co_begin_run(cache_co *co)
{
    co->next = 0;
    co->drawn = 0;
    co->asked = 0;
    co->outer = running;
    running = co;
}

int cache_co_end_run(cache_co *co)
{
    if (running == co)
        running = co->outer;
    co->outer = NULL;
    return co->asked;
}

cache_co *cache_co_of(const cache_backend *b)
{
    cache_co *co = running;
    return co && co->b == b ? co : NULL;
}

double cache_co_wall(void)
{
    return running ? running->wall : 0;
}

int cache_co_random(void *out, size_t n)
{
    cache_co *co = running;
    if (!co)
        return 0;
    if (co->drawn + n > co->draws.len) {
        /* a draw the earlier runs did not make: from the system's source */
        size_t need = co->drawn + n - co->draws.len;
        if (cache_buf_reserve(&co->draws, need))
            return -1;
        cache_random_fresh(co->draws.data + co->draws.len, need);
        co->draws.len += need;
    }
    memcpy(out, co->draws.data + co->drawn, n);
    co->drawn += n;
    return 1;
}

static int same_ask(const cache_co_io *io, const char *pool, cache_str req)
{
    return io->request.len == req.len &&
           (req.len == 0 || memcmp(io->request.data, req.ptr, req.len) == 0) &&
           strcmp(io->pool ? io->pool : "", pool ? pool : "") == 0;
}

static int next_io(cache_co *co, const char *pool, cache_str request,
                   int batch, cache_co_io **io, cache_err *err)
{
    if (co->asked)
        return CACHE_PENDING;
    if (co->next < co->nios) {
        cache_co_io *x = co->ios[co->next];
        if (same_ask(x, pool, request)) {
            if (!x->done) { /* the one under way: this run reached it again */
                co->asked = 1;
                return CACHE_PENDING;
            }
            co->next++;
            *io = x;
            return 1;
        }
        /* this run went another way: what was recorded from here is moot */
        while (co->nios > co->next)
            io_free(co->ios[--co->nios]);
        /* shared state that keeps changing is followed a few times; an
         * operation that never asks the same twice would never end */
        if (++co->changes > CO_MAX_CHANGES)
            return cache_fail(err, CACHE_FAIL, "cosocket: the operation asked "
                                               "otherwise on every run");
    }
    if (co->nios == co->cap) {
        size_t cap = co->cap * 2;
        cache_co_io **n = malloc(cap * sizeof *n);
        if (!n)
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        memcpy(n, co->ios, co->nios * sizeof *n);
        if (co->ios != co->few)
            free(co->ios);
        co->ios = n;
        co->cap = cap;
    }
    cache_co_io *x = calloc(1, sizeof *x);
    if (!x)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    cache_buf_init(&x->setup);
    cache_buf_init(&x->request);
    cache_buf_init(&x->reply);
    x->pool = dup_or_null(pool);
    if ((pool && !x->pool) ||
        cache_buf_set(&x->request, request.ptr, request.len)) {
        io_free(x);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    if (co->first >= co->nios) /* none waits yet: the batch starts here */
        co->first = co->nios;
    co->ios[co->nios++] = x;
    co->next = co->nios;
    if (!batch)
        co->asked = 1;
    *io = x;
    return 0;
}

int cache_co_next(cache_co *co, const char *pool, cache_str request,
                  cache_co_io **io, cache_err *err)
{
    return next_io(co, pool, request, 0, io, err);
}

int cache_co_next_batch(cache_co *co, const char *pool, cache_str request,
                        cache_co_io **io, cache_err *err)
{
    return next_io(co, pool, request, 1, io, err);
}

int cache_co_block(cache_co *co)
{
    co->asked = 1;
    return CACHE_PENDING;
}

/* ---- the connection machine -------------------------------------------------------- */

enum {
    S_START = 0,
    S_CONNECTING,
    S_SETUP_SENDING,
    S_SETUP_READING,
    S_SENDING,
    S_READING,
    S_LEAVING, /* keepalive or close asked; then the exchange is done */
    S_RETRYING /* close asked; then connect again */
};

static void act(cache_co_action *a, cache_co_action_kind kind,
                const cache_co_io *io)
{
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->io = io;
}

static void pick(cache_co *co, cache_co_action *next);

/* The frame's state lives on with the exchange (io_free ends it): it may
 * hold what it parsed, for the replay. */
static void finished(cache_co *co, cache_co_io *io, cache_co_action *next)
{
    io->done = 1;
    pick(co, next);
}

/* The exchange fails with "<label>: <what>"; an open connection is closed
 * first (it may still carry a late reply). */
static void fail_with(cache_co *co, cache_co_io *io, int connected,
                      cache_co_action *next, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static void fail_with(cache_co *co, cache_co_io *io, int connected,
                      cache_co_action *next, const char *fmt, ...)
{
    char what[CACHE_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    io->rc = cache_fail(&io->err, CACHE_FAIL, "%s: %s", io->label, what);
    if (connected) {
        io->state = S_LEAVING;
        act(next, CACHE_CO_CLOSE, io);
        return;
    }
    finished(co, io, next);
}

static void send_phase(cache_co_io *io, int phase, cache_co_action *next)
{
    const cache_buf *b = phase == 0 ? &io->setup : &io->request;
    io->phase = phase;
    io->state = phase == 0 ? S_SETUP_SENDING : S_SENDING;
    act(next, CACHE_CO_SEND, io);
    next->bytes = b->data;
    next->len = b->len;
}

static void start_phase(cache_co *co, cache_co_io *io, int phase,
                        cache_co_action *next)
{
    cache_err e = {0, ""};
    if (io->frame->begin(io, phase, &e) != CACHE_OK) {
        fail_with(co, io, 1, next, "%s", e.msg);
        return;
    }
    send_phase(io, phase, next);
}

/* A pooled connection found closed before any reply byte (the server
 * restarted or dropped it while it sat idle): the request goes again on
 * another connection. A fresh one is not retried: its failure is real. */
static int may_retry(const cache_co *co, const cache_co_io *io)
{
    return io->reused > 0 && !io->got_bytes &&
           io->tries <= co->opts.pool_size;
}

static int is_closed(const char *e) { return strcmp(e, "closed") == 0; }
static int is_timeout(const char *e) { return strcmp(e, "timeout") == 0; }
static int is_reset(const char *e)
{
    return strstr(e, "reset") != NULL || strstr(e, "broken pipe") != NULL;
}

static void on_read(cache_co *co, cache_co_io *io, int ok, const char *data,
                    size_t len, cache_co_action *next)
{
    int phase = io->phase;
    if (!ok) {
        if (is_timeout(data)) {
            fail_with(co, io, 1, next, "timed out after %gs without a reply",
                      io->timeout);
            return;
        }
        if (io->frame->eof_ends && phase == 1 &&
            (is_closed(data) || (is_reset(data) && !io->got_bytes))) {
            io->reset_early = !is_closed(data);
            io->rc = io->reset_early ? CACHE_MISS : CACHE_OK;
            io->state = S_LEAVING;
            act(next, CACHE_CO_CLOSE, io);
            return;
        }
        if (may_retry(co, io) && (is_closed(data) || is_reset(data))) {
            io->state = S_RETRYING;
            act(next, CACHE_CO_CLOSE, io);
            return;
        }
        if (is_closed(data))
            fail_with(co, io, 1, next, "connection closed by the server");
        else
            fail_with(co, io, 1, next, "read: %s", data);
        return;
    }
    io->got_bytes = 1;
    if (phase == 1 && cache_buf_append(&io->reply, data, len)) {
        fail_with(co, io, 1, next, "out of memory reading a reply");
        return;
    }
    cache_err e = {0, ""};
    int got = io->frame->feed(io, phase, data, len, &e);
    if (got < 0) {
        fail_with(co, io, 1, next, "%s", e.msg);
        return;
    }
    if (!got) {
        act(next, CACHE_CO_RECV, io);
        return;
    }
    if (phase == 0) {
        start_phase(co, io, 1, next);
        return;
    }
    io->rc = CACHE_OK;
    io->state = S_LEAVING;
    if (io->pool && !io->frame->eof_ends) {
        act(next, CACHE_CO_KEEPALIVE, io);
        next->opts = &co->opts;
    } else {
        act(next, CACHE_CO_CLOSE, io);
    }
}

static void connect_now(cache_co *co, cache_co_io *io, cache_co_action *next)
{
    io->tries++;
    io->reused = 0;
    io->got_bytes = 0;
    io->state = S_CONNECTING;
    act(next, CACHE_CO_CONNECT, io);
    next->opts = &co->opts;
}

static void advance(cache_co *co, cache_co_io *io, int ok, int64_t value,
                    const char *data, size_t len, cache_co_action *next);

/* The next exchange to act on: those still to connect or send first, in
 * order, so that a batch has every request on its way before any reply is
 * read; then the readers, in order. None left: run the operation again. */
static void pick(cache_co *co, cache_co_action *next)
{
    int reader = -1;
    for (size_t i = co->first; i < co->nios; i++) {
        cache_co_io *io = co->ios[i];
        if (io->done)
            continue;
        if (io->state == S_START) {
            co->cur = (int)i;
            advance(co, io, 0, 0, NULL, 0, next);
            return;
        }
        if (reader < 0)
            reader = (int)i;
    }
    if (reader >= 0) {
        co->cur = reader;
        act(next, CACHE_CO_RECV, co->ios[reader]);
        return;
    }
    co->cur = -1;
    co->first = co->nios;
    act(next, CACHE_CO_RUN, NULL);
}

void cache_co_step(cache_co *co, int ok, int64_t value, const char *data,
                   size_t len, cache_co_action *next)
{
    if (co->cur < 0 || (size_t)co->cur >= co->nios ||
        co->ios[co->cur]->done)
        pick(co, next);
    else
        advance(co, co->ios[co->cur], ok, value, data, len, next);
    /* pick moves cur to the exchange the action is about */
    if (next->kind != CACHE_CO_RUN)
        next->slot = co->cur;
}

/* Applies what happened to io's last action (or starts it) and says the
 * next action; a sent request waits while others of the batch go out. */
static void advance(cache_co *co, cache_co_io *io, int ok, int64_t value,
                    const char *data, size_t len, cache_co_action *next)
{
    if (!data)
        data = "";
    switch (io->state) {
    case S_START:
        connect_now(co, io, next);
        return;
    case S_CONNECTING:
        if (!ok) {
            if (is_timeout(data))
                fail_with(co, io, 0, next, "connect timed out after %gs",
                          io->connect_timeout);
            else
                fail_with(co, io, 0, next, "connect: %s", data);
            return;
        }
        io->reused = value > 0 ? (int)(value > 1000000 ? 1000000 : value) : 0;
        if (!io->reused && io->setup.len)
            start_phase(co, io, 0, next);
        else
            start_phase(co, io, 1, next);
        return;
    case S_SETUP_SENDING:
    case S_SENDING:
        if (ok) {
            if (io->state == S_SENDING) {
                io->state = S_READING;
                pick(co, next); /* the batch's other requests go out first */
                return;
            }
            io->state = S_SETUP_READING;
            act(next, CACHE_CO_RECV, io);
            return;
        }
        if (io->frame->eof_ends && io->phase == 1 &&
            (is_closed(data) || is_reset(data))) {
            /* refused without reading it all (uWSGI) */
            io->reset_early = 1;
            io->rc = CACHE_MISS;
            io->state = S_LEAVING;
            act(next, CACHE_CO_CLOSE, io);
            return;
        }
        if (may_retry(co, io) && (is_closed(data) || is_reset(data))) {
            io->state = S_RETRYING;
            act(next, CACHE_CO_CLOSE, io);
            return;
        }
        if (is_timeout(data))
            fail_with(co, io, 1, next, "write stalled for %gs", io->timeout);
        else
            fail_with(co, io, 1, next, "write: %s", data);
        return;
    case S_SETUP_READING:
    case S_READING:
        on_read(co, io, ok, data, len, next);
        return;
    case S_RETRYING:
        if (io->frame->end)
            io->frame->end(io);
        io->reply.len = 0;
        connect_now(co, io, next);
        return;
    case S_LEAVING:
    default:
        finished(co, io, next);
        return;
    }
}
