/*
 * fetch.h - the parts of c:fetch that touch a backend: reading an entry and
 * judging its freshness (XFetch included), storing a value in its envelope,
 * and the single-flight lock. The call flow (the callback, waiting, timers)
 * belongs to the binding's side (lua/cache/fetch.lua), which calls these
 * one step at a time, so that nothing here calls back into the caller.
 *
 * Every object fetch runs on keeps its counters in b->stats: these steps
 * count reads and writes (hits, misses, sets, errors) and the fresh levels;
 * cache_fetch_note counts what only the flow knows.
 */
#ifndef CACHE_ENGINE_FETCH_H
#define CACHE_ENGINE_FETCH_H

#include "cache.h"

typedef enum {
    CACHE_FETCH_MISS,  /* nothing usable under the key */
    CACHE_FETCH_FRESH, /* serve it */
    CACHE_FETCH_EARLY, /* fresh, and this reader drew an early refresh */
    CACHE_FETCH_STALE  /* past its freshness, still stored */
} cache_fetch_state;

typedef struct cache_fetch_entry {
    cache_fetch_state state;
    int level;       /* where it was found: 1 the in-process tier, 2 the
                        backend (or a TieredCache's shared tier) */
    cache_str value; /* the value's codec bytes, inside the out buffer */
} cache_fetch_entry;

/* Reads key. A plain value (stored by set, not by fetch) is fresh for as
 * long as it is stored. beta > 0 enables XFetch on envelopes: a fresh entry
 * is EARLY when now + delta * beta * -log(U) >= fresh_until, U uniform in
 * (0, 1]. On a TieredCache a fresh l1 entry is level 1; otherwise l2 is
 * read and a fresh entry there is promoted to l1 and is level 2. A fresh
 * (or early) result counts one hit and its level, anything else one miss.
 * CACHE_OK with e filled (MISS included), or a backend failure. */
int cache_fetch_read(cache_backend *b, cache_str key, double beta,
                     cache_buf *out, cache_fetch_entry *e, cache_err *err);

/* Stores value (codec bytes) under key in its envelope: fresh for timeout
 * seconds (0: while stored), kept stale_timeout seconds longer, delta the
 * seconds the callback took. A negative timeout stores nothing (CACHE_OK).
 * scratch is emptied and used for the envelope. Counts as one set. */
int cache_fetch_store(cache_backend *b, cache_str key, cache_str value,
                      double timeout, double stale_timeout, double delta,
                      cache_buf *scratch, cache_err *err);

/* ---- the lock ------------------------------------------------------------
 * One entry per key, "<key>.fetch-lock" in the backend that every process
 * shares (a TieredCache's l2), written with the backend's own atomic add
 * and a random owner token, for ttl seconds: whoever adds it runs the
 * callback; a dead owner's lock expires after ttl. */
#define CACHE_FETCH_TOKEN_LEN 32

/* CACHE_OK: taken, token filled (NUL-terminated); CACHE_EXISTS: another
 * owner holds it; or a backend failure. */
int cache_fetch_lock(cache_backend *b, cache_str key, double ttl,
                     char token[CACHE_FETCH_TOKEN_LEN + 1], cache_err *err);
/* Releases the lock if token still owns it: CACHE_OK released, CACHE_MISS
 * not (no longer) ours, or a failure. Atomic where the backend has a
 * compare-and-delete (vt->del_if: Redis runs a script); elsewhere a read,
 * a compare and a delete, which can delete a successor's lock if this one
 * expired in between (lock_ttl should exceed the callback's time). */
int cache_fetch_unlock(cache_backend *b, cache_str key, const char *token,
                       cache_err *err);

/* What the flow counts (cache_stats). */
typedef enum {
    CACHE_NOTE_LEVEL1,       /* a result by level, for those the flow */
    CACHE_NOTE_LEVEL2,       /* decides (cache_fetch_read counts fresh */
    CACHE_NOTE_COMPUTED,     /* reads itself): 1, 2, 3 the callback, */
    CACHE_NOTE_STALE,        /* 4 stale (stale_served too) */
    CACHE_NOTE_RUN,          /* the callback ran */
    CACHE_NOTE_RUN_FAILED,   /* it raised or returned nil, err */
    CACHE_NOTE_WAIT,         /* a caller waited for another's lock */
    CACHE_NOTE_LOCK_TIMEOUT  /* a waiter gave up */
} cache_fetch_note_kind;

void cache_fetch_note(cache_backend *b, cache_fetch_note_kind what);

/* A uniform double in (0, 1], from a fast generator seeded per process
 * (again after a fork) by cache_random_bytes. */
double cache_random01(void);

#endif
