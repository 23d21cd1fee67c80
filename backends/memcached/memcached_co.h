/*
 * memcached_co.h - the memcached family's I/O on the cosocket path (see
 * engine/co.h): the binary protocol spoken from C, byte for byte what the
 * operations of memcached.c need, in place of libmemcached's calls while an
 * operation runs under the cosocket driver.
 *
 * Every decision stays in memcached.c and memcached_spread.c (they run as
 * they are, replayed); this file only answers their libmemcached calls with
 * the same return codes, from exchanges the driver makes:
 *   - the server of a key is the one libmemcached's own continuum on the
 *     backend's handle names (memcached_generate_hash), so both transports
 *     agree on every key;
 *   - a fresh connection to a server with credentials first authenticates
 *     (SASL PLAIN), as libmemcached does when it connects;
 *   - batches (multi-get, set_many, delete_many, flush) send one pipeline
 *     per server, every server's before any reply is read.
 */
#ifndef CACHE_BACKENDS_MEMCACHED_CO_H
#define CACHE_BACKENDS_MEMCACHED_CO_H

#include "co.h"
#include "memcached.h"

/* The operation running on b on the cosocket path, or NULL. */
cache_co *mcco_of(const mc_backend *b);

/* libmemcached's single-key calls (b->m's servers, continuum, expiry
 * already computed): the same return codes. CACHE_PENDING-worthy waits
 * come back as MCCO_PENDING. */
#define MCCO_PENDING ((memcached_return_t)1000)
memcached_return_t mcco_store(mc_backend *b, const mc_key *k, const char *v,
                              size_t n, time_t exp, uint32_t flags, int add,
                              uint64_t cas);
memcached_return_t mcco_delete(mc_backend *b, const mc_key *k);
memcached_return_t mcco_exist(mc_backend *b, const mc_key *k);
memcached_return_t mcco_flush(mc_backend *b);
/* GETK: on MEMCACHED_SUCCESS the value is appended to out (and *flags,
 * *cas set). */
memcached_return_t mcco_get(mc_backend *b, const mc_key *k, cache_buf *out,
                            uint32_t *flags, uint64_t *cas);
/* INCR that never creates the key (libmemcached's increment). */
memcached_return_t mcco_incr(mc_backend *b, const mc_key *k, uint64_t offset,
                             uint64_t *value);

/* What mget_on, mc_store_many and mc_delete_many_blind do, with the same
 * statuses: GETKQ + NOOP, SET, DELETE pipelines per server. down is theirs
 * (see mc_down_new): a key on a server in it gets CACHE_FAIL unsent, err
 * untouched for it, and a server whose exchange failed is added to it. */
int mcco_mget(mc_backend *b, size_t n, const mc_key *keys, mc_hit_fn hit,
              void *ctx, int *status, unsigned char *down, cache_err *err);
int mcco_store_many(mc_backend *b, size_t n, const mc_key *keys,
                    const cache_str *vals, const uint32_t *flags, time_t exp,
                    int *status, cache_err *err);
int mcco_delete_many(mc_backend *b, size_t n, const mc_key *keys, int *status,
                     unsigned char *down, cache_err *err);
/* The cas of the last hit mcco_mget handed to its callback. */
uint64_t mcco_last_cas(void);

/* Why rc, on the cosocket path (for mc_fail's "memcached HOST:PORT: why"):
 * the last exchange's transport failure, else libmemcached's text for rc. */
const char *mcco_why(mc_backend *b, memcached_return_t rc);

#endif
