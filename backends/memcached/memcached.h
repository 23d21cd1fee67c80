/*
 * memcached.h - what memcached.c (MemcachedCache, SASLMemcachedCache) shares
 * with memcached_spread.c (SpreadSASLMemcachedCache): the connection, the key
 * mapping, the stored form of values and the pipelined batch primitives, all
 * on libmemcached with the binary protocol.
 */
#ifndef CACHE_BACKENDS_MEMCACHED_H
#define CACHE_BACKENDS_MEMCACHED_H

#include <stdint.h>
#include <sys/types.h>

#include <libmemcached/memcached.h>

#include "cache.h"
#include "co.h"

/* Item flags, the stored form of a value (documented in the README):
 *   MC_FLAG_INT    the integer as decimal text; negative integers as their
 *                  64-bit two's complement (2^64 - |n|), so that memcached's
 *                  unsigned, wrapping incr does signed arithmetic. 2 is the
 *                  integer flag of pylibmc and python-memcached.
 *   MC_FLAG_CODEC  the engine's MessagePack bytes of any other value.
 *   MC_FLAG_SPREAD_HEAD / MC_FLAG_SPREAD_PART  chunks of a spread value
 *                  (memcached_spread.c).
 * Any other flags: a foreign value, read as an integer when it is decimal
 * text, as the engine's external form when it starts with '!', else as a
 * string. */
#define MC_FLAG_INT 2u
#define MC_FLAG_CODEC 0x100u
#define MC_FLAG_SPREAD_HEAD 0x200u
#define MC_FLAG_SPREAD_PART 0x400u

#define MC_MAX_KEY 250

typedef struct mc_key {
    size_t len;
    char s[MC_MAX_KEY + 1];
} mc_key;

/* One server of the pool as configured: host and port, or (port 0) the
 * path of a unix socket. */
typedef struct mc_server {
    char *host;
    in_port_t port;
} mc_server;

typedef struct mc_backend {
    cache_backend base;
    /* What every libmemcached handle of this object is made from (see
     * new_handle in memcached.c), so that all of them place each key on
     * the same server. */
    mc_server *servers;
    size_t nservers;
    char *user, *pass; /* SASL credentials, or NULL */
    memcached_st *m;
    char *prefix;
    size_t prefix_len;
    /* Why the last server failed, kept so that "disabled until retry" can
     * say what disabled it (e.g. an authentication failure). */
    char last_cause[100];
    memcached_result_st result;
    int result_ready;
    pid_t pid; /* the process the handles belong to (see fork_guard) */
    /* batches of deletes (see mc_delete_many_blind), opened on first use */
    memcached_st *del_m;
    memcached_result_st del_result;
    cache_co_opts co; /* the cosocket path (memcached_co.c) */
} mc_backend;

/* Opens the connection from the options servers, key_prefix and, when
 * sasl is non-zero, username and password: both (SASL), or neither (no
 * SASL, as pylibmc and Flask-Caching). CACHE_OK or an error (CACHE_EINVAL
 * for options). */
int mc_open(mc_backend *b, cache_opts *opts, int sasl, cache_err *err);
void mc_close(mc_backend *b);

/* The memcached key of prefix + key + suffix: itself when it is 1-250
 * printable ASCII bytes without space and key + suffix does not start with
 * '#', else (a printable prefix, when it is short enough) + the digest form
 * of prefix + key + suffix, "#" + hex sha256 (digest.h): one-to-one. */
void mc_key_make(const mc_backend *b, cache_str key, const char *suffix,
                 size_t suffix_len, mc_key *out);

/* A failure of operation rc on the server of k (or of the last server that
 * failed, when k is NULL), recorded in err: "memcached HOST:PORT: why". */
int mc_fail(mc_backend *b, const mc_key *k, memcached_return_t rc,
            cache_err *err);

/* Expiry for memcached from a ttl: 0 never, relative seconds rounded up,
 * absolute unix time beyond 30 days. Returns 1 when the ttl is negative
 * (the entry is born expired), else 0. */
int mc_expiry(double ttl, time_t *out);

/* The stored form of encoded value bytes: *payload / *flags. An integer is
 * written as text into text_buf (which must outlive the payload). */
void mc_encode(cache_str value, char text_buf[24], cache_str *payload,
               uint32_t *flags);
/* Appends the codec bytes of a stored item to out: CACHE_OK, or
 * CACHE_MISS with err set (a '!' value whose bytes are corrupt), or
 * CACHE_ENOMEM. */
int mc_decode(const char *p, size_t n, uint32_t flags, cache_buf *out,
              cache_err *err);

/* Single-key operations on mapped keys. */
int mc_get_raw(mc_backend *b, const mc_key *k, cache_buf *out, uint32_t *flags,
               cache_err *err);
int mc_store(mc_backend *b, const mc_key *k, const char *v, size_t n,
             uint32_t flags, double ttl, int only_if_absent, cache_err *err);
int mc_delete(mc_backend *b, const mc_key *k, cache_err *err);
int mc_exists(mc_backend *b, const mc_key *k, cache_err *err);
int mc_flush(mc_backend *b, cache_err *err);
int mc_incr(mc_backend *b, const mc_key *k, int64_t delta, double new_ttl,
            int64_t *result, cache_err *err);

/* The position of k's server in the pool (the same on every handle). */
uint32_t mc_server_of(mc_backend *b, const mc_key *k);

/* A batch that takes several steps shares one "down" array (one flag per
 * server, from mc_down_new, freed by the caller) between them: a server
 * that failed in one step is not asked again in the next, so that the
 * batch waits for a stalled server at most once. Its keys get CACHE_FAIL,
 * and err keeps the reason the first step gave. NULL: a call of one step. */
unsigned char *mc_down_new(mc_backend *b);

/* One multi-get of n mapped keys. hit(ctx, i, value, len, flags) is called
 * for every key found (once per index, duplicates included); status[i] is
 * CACHE_OK for a hit, CACHE_MISS, or CACHE_FAIL when its server failed
 * during this call (or is in down). Returns CACHE_OK, or a failure when no
 * key could be read. */
typedef int (*mc_hit_fn)(void *ctx, size_t i, const char *v, size_t len,
                         uint32_t flags);
int mc_mget(mc_backend *b, size_t n, const mc_key *keys, mc_hit_fn hit,
            void *ctx, int *status, unsigned char *down, cache_err *err);

/* The same for one key (faster than mc_mget of one): hit's status, or a
 * failure. */
int mc_get_one(mc_backend *b, const mc_key *k, mc_hit_fn hit, void *ctx,
               cache_err *err);

/* A key given again in one batch: every occurrence after the first whose
 * status[] is CACHE_OK becomes CACHE_MISS, as the first occurrence deletes
 * the key and a later one finds nothing. CACHE_OK, or CACHE_ENOMEM. */
int mc_first_only(size_t n, const mc_key *keys, int *status, cache_err *err);

/* Pipelined sets: quiet (noreply) sets, except the last key of each server,
 * whose reply comes after the server has processed all of them, and values
 * larger than 256 KiB, which are sent with a reply; once a server failed,
 * its later keys fail unsent. status[i] per key; the return is CACHE_OK
 * when every key was stored, else a failure with the first failed key's
 * reason in err. */
int mc_store_many(mc_backend *b, size_t n, const mc_key *keys,
                  const cache_str *vals, const uint32_t *flags, double ttl,
                  int *status, cache_err *err);
/* Pipelined deletes: buffered deletes (on a second handle of the same
 * servers) and their replies read, one round trip. status[i] is CACHE_OK
 * when the key is gone (deleted, or not there), CACHE_FAIL when its server
 * failed (or is in down); the return is CACHE_OK when every key is gone,
 * else a failure. */
int mc_delete_many_blind(mc_backend *b, size_t n, const mc_key *keys,
                         int *status, unsigned char *down, cache_err *err);

#endif
