/*
 * cache.h - the engine's contract: status codes, byte buffers, backend options,
 * the backend vtable and the dispatch functions every binding calls.
 *
 * Pure C11. Nothing here knows about Lua: a backend stores and returns opaque
 * value bytes (produced by codec.h) under opaque key bytes.
 */
#ifndef CACHE_ENGINE_CACHE_H
#define CACHE_ENGINE_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* ---- status codes -------------------------------------------------------
 * Every backend operation returns one of these. Negative values are failures
 * and come with a message in cache_err. */
enum {
    CACHE_OK = 0,       /* done; for get/has: hit; for del: it existed */
    CACHE_MISS = 1,     /* no such live entry (get/has/del) */
    CACHE_EXISTS = 2,   /* add refused: a live entry is there */
    CACHE_FAIL = -1,    /* the backend failed (I/O, network, server error) */
    CACHE_EINVAL = -2,  /* a caller error: bad option, bad argument */
    CACHE_ENOTINT = -3, /* inc/dec on a value that is not an integer */
    CACHE_ENOMEM = -4   /* out of memory */
};

#define CACHE_ERRMSG_MAX 256

typedef struct cache_err {
    int code;
    char msg[CACHE_ERRMSG_MAX];
} cache_err;

/* Records a failure in err (if not NULL) and returns code, so that backends
 * can write `return cache_fail(err, CACHE_FAIL, "connect: %s", why);`. */
int cache_fail(cache_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- growable byte buffer ----------------------------------------------- */
typedef struct cache_buf {
    char *data;
    size_t len, cap;
} cache_buf;

void cache_buf_init(cache_buf *b);
void cache_buf_free(cache_buf *b);
/* Each returns 0, or -1 when memory runs out (the buffer is left as it was). */
int cache_buf_reserve(cache_buf *b, size_t extra);
int cache_buf_append(cache_buf *b, const void *p, size_t n);
int cache_buf_set(cache_buf *b, const void *p, size_t n); /* replace contents */

/* A borrowed byte string (key or value). */
typedef struct cache_str {
    const char *ptr;
    size_t len;
} cache_str;

/* ---- backend options ----------------------------------------------------
 * A binding turns the user's options table into this list; each backend
 * takes the options it knows with the cache_opt_* getters and the engine
 * then rejects whatever no one took ("unknown option"). */
typedef enum {
    CACHE_OPT_BOOL,
    CACHE_OPT_INT,
    CACHE_OPT_NUM,
    CACHE_OPT_STR,
    CACHE_OPT_LIST /* a list of strings (numbers are given as text) */
} cache_opt_type;

typedef struct cache_opt {
    const char *name;
    cache_opt_type type;
    int used; /* set by the getters */
    int b;
    int64_t i;
    double n; /* also set for CACHE_OPT_INT */
    const char *s;
    size_t slen;
    const char *const *list; /* CACHE_OPT_LIST: count strings */
    const size_t *list_lens;
    size_t count;
} cache_opt;

typedef struct cache_opts {
    cache_opt *items;
    size_t count;
} cache_opts;

/* Getters: each returns 1 when the option was given (and stores it), 0 when
 * it was absent (out untouched), or CACHE_EINVAL with a message naming the
 * option when it has the wrong type or range. */
int cache_opt_bool(cache_opts *o, const char *name, int *out, cache_err *err);
int cache_opt_int(cache_opts *o, const char *name, int64_t min, int64_t max,
                  int64_t *out, cache_err *err);
int cache_opt_num(cache_opts *o, const char *name, double min, double max,
                  double *out, cache_err *err);
/* The string stays owned by the options: copy it (cache_strndup). */
int cache_opt_str(cache_opts *o, const char *name, const char **out,
                  size_t *len, cache_err *err);
/* A list option; a single string is accepted as a list of one. */
int cache_opt_list(cache_opts *o, const char *name, const cache_opt **out,
                   cache_err *err);
/* CACHE_EINVAL naming the first option nobody took, else CACHE_OK. */
int cache_opts_check_unused(const cache_opts *o, const char *backend,
                            cache_err *err);

char *cache_strndup(const char *s, size_t n);

/* Fills n bytes: the kernel's random bytes, or (no getrandom and no
 * /dev/urandom) a mix of clock, pid and an atomic counter that still
 * differs between calls. Thread-safe; never blocks, never fails. While an
 * operation runs on the cosocket path, the bytes its earlier runs drew
 * (co.h: every run must ask the same). */
void cache_random_bytes(void *out, size_t n);
/* The same, always fresh. */
void cache_random_fresh(void *out, size_t n);

/* ---- timeouts ------------------------------------------------------------
 * A ttl handed to a backend is relative seconds, already resolved by the
 * binding (nil -> default_timeout):
 *   ttl == 0  never expires
 *   ttl  > 0  expires ttl seconds from now (fractions allowed)
 *   ttl  < 0  stored already expired
 * Helpers turn it into the clock a backend keeps. */
double cache_monotonic_now(void);   /* seconds, CLOCK_MONOTONIC */
double cache_wall_now(void);        /* seconds since the epoch */
/* Absolute deadline on the given clock; 0 means never. An already expired
 * entry gets a deadline in the past (never 0). */
double cache_deadline(double ttl, double now);

/* ---- the backend vtable -------------------------------------------------- */
typedef struct cache_backend cache_backend;

typedef struct cache_vtable {
    const char *name; /* "SimpleCache", ... */

    /* 1 when get/get_many only ever return bytes known to decode: checked
     * by the backend as it read them (FileSystemCache, the external form of
     * Redis), or held in this process as given to set, whose value must be
     * codec output (SimpleCache). 0: the dispatcher validates every hit,
     * which bytes read from a server need. */
    int values_checked;

    /* Value bytes of a live entry appended to out (CACHE_OK), CACHE_MISS, or
     * a failure. */
    int (*get)(cache_backend *, cache_str key, cache_buf *out, cache_err *);
    /* only_if_absent: add semantics (CACHE_EXISTS when a live entry is there) */
    int (*set)(cache_backend *, cache_str key, cache_str value, double ttl,
               int only_if_absent, cache_err *);
    /* CACHE_OK if the key existed and was deleted, CACHE_MISS if absent */
    int (*del)(cache_backend *, cache_str key, cache_err *);
    int (*has)(cache_backend *, cache_str key, cache_err *);
    int (*clear)(cache_backend *, cache_err *);

    /* Optional. Add delta to an integer entry (atomically where the backend
     * can, see README per backend); a missing entry
     * starts at 0 and is stored with new_ttl; an existing one keeps its
     * expiry. NULL: the engine falls back to get + decode + set, which
     * writes an existing entry back with new_ttl too (it cannot read an
     * expiry), so a backend whose entries expire provides it. */
    int (*incr)(cache_backend *, cache_str key, int64_t delta, double new_ttl,
                int64_t *result, cache_err *);

    /* Optional batch calls; NULL: the engine loops over the single calls.
     * status[i] receives the per-key code; the return value is CACHE_OK or a
     * failure that hit the whole batch. get_many appends each hit's bytes to
     * out[i]. */
    int (*get_many)(cache_backend *, size_t n, const cache_str *keys,
                    cache_buf *out, int *status, cache_err *);
    int (*set_many)(cache_backend *, size_t n, const cache_str *keys,
                    const cache_str *values, double ttl, int *status,
                    cache_err *);
    int (*del_many)(cache_backend *, size_t n, const cache_str *keys,
                    int *status, cache_err *);

    void (*destroy)(cache_backend *);
} cache_vtable;

/* Every backend struct starts with this. */
struct cache_backend {
    const cache_vtable *vt;
    double default_timeout; /* option default_timeout (common to all) */
    int ignore_errors;      /* option ignore_errors: delete_many goes on
                               past failures (common to all) */
    /* The options of its cosocket path (co.h), or NULL: the backend has
     * none (the binding then always calls it directly). */
    const struct cache_co_opts *co;
};

/* A backend constructor: validates and takes its options, returns the new
 * backend or NULL with err set (CACHE_EINVAL for option errors). */
typedef cache_backend *(*cache_backend_ctor)(cache_opts *opts, cache_err *err);

typedef struct cache_backend_type {
    const char *name;        /* class name, "SimpleCache" */
    cache_backend_ctor create;
} cache_backend_type;

/* The registry (registry.c): NULL when unknown. */
const cache_backend_type *cache_backend_find(const char *name);
/* The list, ended by a row whose name is NULL. */
const cache_backend_type *cache_backend_types(void);

/* Opens a backend of the named type: takes the common options
 * (default_timeout = 300, ignore_errors = false) itself, hands the rest to the
 * backend's constructor and rejects whatever is left unknown. */
cache_backend *cache_open(const char *type, cache_opts *opts, cache_err *err);
void cache_close(cache_backend *b);
/* The default_timeout option as cache_open takes it (a getter as above):
 * also the check of a value assigned to an open object's default_timeout. */
int cache_opt_default_timeout(cache_opts *opts, double *out, cache_err *err);

/* ---- dispatch ------------------------------------------------------------
 * What bindings call: they add the engine's generic fallbacks (batch loops,
 * non-atomic incr) and validate value bytes read back (a corrupt entry is a
 * miss: CACHE_MISS with err->code set to CACHE_FAIL and a message). */
int cache_get(cache_backend *, cache_str key, cache_buf *out, cache_err *);
/* value must be bytes the codec produced (cache_writer): backends that keep
 * values in this process trust them when they are read back. */
int cache_set(cache_backend *, cache_str key, cache_str value, double ttl,
              cache_err *);
int cache_add(cache_backend *, cache_str key, cache_str value, double ttl,
              cache_err *);
int cache_del(cache_backend *, cache_str key, cache_err *);
int cache_has(cache_backend *, cache_str key, cache_err *);
int cache_clear(cache_backend *, cache_err *);
int cache_incr(cache_backend *, cache_str key, int64_t delta, double new_ttl,
               int64_t *result, cache_err *);
int cache_get_many(cache_backend *, size_t n, const cache_str *keys,
                   cache_buf *out, int *status, cache_err *);
int cache_set_many(cache_backend *, size_t n, const cache_str *keys,
                   const cache_str *values, double ttl, int *status,
                   cache_err *);
int cache_del_many(cache_backend *, size_t n, const cache_str *keys,
                   int *status, cache_err *);

#endif
