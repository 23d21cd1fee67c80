/*
 * co.h - the cosocket seam: network operations run without a socket, so
 * that OpenResty's Lua cosockets can move their bytes and a request yields
 * instead of blocking its nginx worker.
 *
 * The operation is the backend's own blocking code, run again and again
 * (a replay). Each run, the transport of the backend asks this file for the
 * exchanges it makes, in order, through cache_co_next():
 *   - an exchange done in an earlier run is handed back with its outcome
 *     (the reply bytes, or the failure), so the run takes the same decisions
 *     as the blocking path took with the same replies;
 *   - the first exchange not done yet is recorded (where to, which bytes,
 *     how its reply is framed) and the transport returns CACHE_PENDING,
 *     which every caller passes up unchanged: the run ends there.
 * Then cache_co_step() drives that one exchange as a sans-I/O machine (it
 * says "connect to", "send these bytes", "receive", "keep the connection",
 * "close", and is told what happened), records its outcome, and the binding
 * runs the operation again. A run that asks for nothing new is the final
 * one: its results are the operation's. The decisions (retries, failover,
 * redirects) are the blocking path's by construction; the only ones made
 * here are the connection's: AUTH-like setup on fresh connections only, a
 * second try when a pooled connection turns out dead before any reply byte,
 * and keepalive only after a clean finish with nothing unread.
 *
 * Every operation owns its transcript and buffers: operations suspended at
 * once on one worker share nothing. A run is one C call from start to end
 * (no Lua code that yields runs inside it).
 */
#ifndef CACHE_ENGINE_CO_H
#define CACHE_ENGINE_CO_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"

/* A transport's answer while its exchange waits for the cosocket driver: a
 * failure code that no backend otherwise returns. Everything between the
 * transport and the binding returns it as it is, without acting on it. */
#define CACHE_PENDING (-100)

/* ---- options (backends with a cosocket path take them) --------------------- */
enum {
    CACHE_TRANSPORT_AUTO = 0, /* cosockets where the nginx phase allows them */
    CACHE_TRANSPORT_COSOCKET, /* always; a phase without them is an error */
    CACHE_TRANSPORT_BLOCKING  /* never */
};

typedef struct cache_co_opts {
    int transport;
    int64_t pool_size;        /* connections kept per server per worker */
    int64_t backlog;          /* -1: none (nginx: connects beyond the pool) */
    double keepalive_timeout; /* seconds an idle pooled connection lives;
                                 0: until the server closes it */
} cache_co_opts;

/* transport = "auto" | "cosocket" | "blocking", pool_size = 30 (1..100000),
 * backlog (0..100000, absent: none), keepalive_timeout = 60 (seconds, 0..
 * 86400, 0 = no limit). */
int cache_co_take_opts(cache_opts *o, cache_co_opts *out, cache_err *err);
const char *cache_co_transport_name(int transport);

/* ---- one exchange ------------------------------------------------------------ */
typedef struct cache_co_io cache_co_io;

/* How a reply is framed: the transport that records an exchange says. */
typedef struct cache_co_frame {
    /* Reading starts: phase 0 reads the replies to io->setup, phase 1 the
     * reply to io->request. CACHE_OK or a failure. */
    int (*begin)(cache_co_io *io, int phase, cache_err *err);
    /* n more bytes: 1 when the replies of the phase are complete (bytes past
     * them are a failure: the stream is out of step), 0 when more are
     * needed, or a failure (err set). Phase 1 bytes are also kept in
     * io->reply by the caller. */
    int (*feed)(cache_co_io *io, int phase, const char *p, size_t n,
                cache_err *err);
    /* Frees what begin made (called once the exchange is over). */
    void (*end)(cache_co_io *io);
    /* 1: the server closing the connection ends the reply (uWSGI: one
     * request per connection); 0: a close is a failure. */
    int eof_ends;
} cache_co_frame;

struct cache_co_io {
    /* what the transport fills in (strings are copied by cache_co_io_set) */
    char *host, *path; /* host and port, or a unix socket path */
    int port;
    char *pool;  /* pool name; NULL: a connection of its own, closed after */
    char *label; /* "redis 127.0.0.1:6379", for messages */
    char *strs;  /* the storage of host, path and label */
    double connect_timeout, timeout; /* seconds; 0 = no limit */
    cache_buf setup;   /* sent first on a fresh connection; may be empty */
    cache_buf request;
    const cache_co_frame *frame;
    void *fstate; /* the frame's */
    size_t nsetup, nreplies; /* for the frame */

    /* the outcome, once done */
    int done;
    int rc; /* CACHE_OK (reply holds the bytes) or a failure (err) */
    int reset_early; /* eof_ends: reset before any byte (uWSGI's "refused") */
    cache_err err;
    cache_buf reply;

    /* the connection machine (co.c) */
    int state, phase, reused, tries, got_bytes;
};

/* Copies where to and the label. CACHE_OK or CACHE_ENOMEM. */
int cache_co_io_set(cache_co_io *io, const char *host, int port,
                    const char *path, const char *label, cache_err *err);

/* ---- the operation --------------------------------------------------------- */
typedef struct cache_co cache_co;

/* A new operation on backend b, which must have a cosocket path (b->co). */
cache_co *cache_co_new(cache_backend *b, cache_err *err);
void cache_co_free(cache_co *co);

/* Around one run of the operation: sets the operation as the one running
 * on its backend in this thread, and back. */
void cache_co_begin_run(cache_co *co);
/* 1 when the run left an exchange to make (drive it with cache_co_step). */
int cache_co_end_run(cache_co *co);

/* For transports: the operation running on b in this thread, or NULL (the
 * blocking path). */
cache_co *cache_co_of(const cache_backend *b);

/* For transports: the next exchange of this run, which sends request to
 * the connections pooled as pool. Returns
 *   1: *io is done (use io->rc, io->err, io->reply as the exchange's
 *      outcome, as the blocking exchange would have returned them);
 *   0: *io is new, pool and request already copied in: fill in the rest
 *      (cache_co_io_set, frame, ...), then return CACHE_PENDING;
 *   CACHE_PENDING: the run already waits for an exchange (return it);
 *   CACHE_ENOMEM.
 * An earlier run's exchange is handed back only when this run asks the
 * same (same pool, same bytes): when state shared with other operations
 * changed meanwhile (a Sentinel's master, a Cluster's slot map), the run
 * takes another way, and the exchanges recorded from there on are dropped
 * and made anew. Runs see the wall clock stopped at the operation's start
 * (cache_wall_now), so what they ask does not drift between runs. */
int cache_co_next(cache_co *co, const char *pool, cache_str request,
                  cache_co_io **io, cache_err *err);

/* The same for one exchange of a batch that is sent to several servers
 * before any reply is read (Redis Cluster's get_many): a new exchange is
 * recorded (0) but the run goes on, so that the next ones of the batch are
 * recorded too; the driver then sends every request of the batch before it
 * reads any reply. The run stops where it first needs a reply that is not
 * there: cache_co_block. */
int cache_co_next_batch(cache_co *co, const char *pool, cache_str request,
                        cache_co_io **io, cache_err *err);
/* Ends the run at the first reply it needs that is not there yet; every
 * later cache_co_next of the run returns CACHE_PENDING. Returns it. */
int cache_co_block(cache_co *co);

/* The wall clock of the operation running in this thread, or 0 when none
 * runs (engine/util.c's cache_wall_now asks). */
double cache_co_wall(void);

/* Random bytes that every run of the operation sees alike (a run's k-th
 * call gets the same bytes as the k-th call of the runs before), for what
 * a backend draws into its requests (cache_random_bytes asks). 1 when an
 * operation runs in this thread and out is filled, 0 when none does (draw
 * as usual), -1 when out of memory. */
int cache_co_random(void *out, size_t n);

/* ---- driving the pending exchange ------------------------------------------------
 * What the driver must do next. */
typedef enum {
    CACHE_CO_CONNECT,   /* connect to io host:port (or path), pool name */
    CACHE_CO_SEND,      /* send the bytes */
    CACHE_CO_RECV,      /* receive what arrives (at most CACHE_CO_CHUNK) */
    CACHE_CO_KEEPALIVE, /* give the connection back to the pool */
    CACHE_CO_CLOSE,     /* close the connection */
    CACHE_CO_RUN        /* the exchange is done: run the operation again */
} cache_co_action_kind;

#define CACHE_CO_CHUNK 65536

typedef struct cache_co_action {
    cache_co_action_kind kind;
    int slot; /* which connection of the operation (one per exchange under
                 way: a batch has several) */
    const cache_co_io *io;       /* connect: where; timeouts */
    const char *bytes;           /* send */
    size_t len;
    const cache_co_opts *opts;   /* connect / keepalive: the pool */
} cache_co_action;

/* What happened to the action asked for last (ignored before the first):
 *   connect: ok, value = how many times the connection was reused (0: fresh)
 *   send:    ok
 *   recv:    ok with the bytes in data/len
 *   any:     !ok with the driver's error text ("timeout", "closed",
 *            "connection refused", ...) in data
 * then the next action. */
void cache_co_step(cache_co *co, int ok, int64_t value, const char *data,
                   size_t len, cache_co_action *next);

#endif
