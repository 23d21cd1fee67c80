/*
 * redis_proto.h - the Redis protocol of the cache operations, without
 * sockets: building the request bytes of an operation and turning the
 * replies read back into the engine's results.
 *
 * Bytes in, bytes out. Commands are formatted by hiredis's
 * redisFormatCommandArgv and replies parsed by hiredis's redisReader, with
 * no socket here: the blocking transport of redis_net.c and the fuzzer share
 * it, and any transport that moves bytes can.
 *
 * An operation is: redis_op_*_build() appends its command(s) to a request
 * (a pipeline: several commands written at once, one reply each), a
 * transport sends req->bytes and reads req->ncmds replies into req->replies,
 * then the matching redis_op_*_finish() maps those replies to results.
 *
 * How cache operations map to commands (keys are key_prefix + key):
 *   get       GET k                 bulk = hit, nil = miss
 *   has       EXISTS k              1 = hit
 *   del       DEL k                 1 = deleted, 0 = miss
 *   set       SET k v [PX ms]       ttl 0: no expiry; ttl < 0: DEL k (Redis
 *                                   refuses a negative expiry; an entry that
 *                                   is already expired is simply absent)
 *   add       SET k v NX [PX ms]    nil = the key exists; ttl < 0: EXISTS k
 *   incr      EVAL (script below)   INCRBY on an existing key (it keeps its
 *                                   TTL); a missing key is created at 0 with
 *                                   new_ttl first, atomically; the answer is
 *                                   the stored decimal text (exact int64)
 *   get_many  MGET k1 .. kn
 *   set_many  pipeline of SET k v [PX ms]; ttl < 0: DEL k1 .. kn
 *   del_many  pipeline of DEL k     (one round trip, exact status per key)
 *   clear     SCAN c MATCH <glob-escaped prefix>* COUNT 1000, then UNLINK of
 *             each batch; without a prefix FLUSHDB
 *
 * Values cross the wire in the external form of codec.h: an integer as its
 * decimal text (so INCRBY works and other clients can read it), anything
 * else as '!' + MessagePack.
 */
#ifndef CACHE_BACKENDS_REDIS_PROTO_H
#define CACHE_BACKENDS_REDIS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "cache.h"

/* An array reply claiming more elements than this is refused as a protocol
 * error before anything is allocated for it. */
#define REDIS_MAX_ELEMENTS (1 << 24)

/* SCAN's COUNT hint and the largest UNLINK clear sends at once. */
#define REDIS_CLEAR_BATCH 1000

/* ---- requests ------------------------------------------------------------ */

/* One argument of a command: head then tail, concatenated (a prefixed key is
 * {prefix, key}; a plain argument has an empty tail). */
typedef struct redis_arg {
    cache_str head, tail;
} redis_arg;

/* A pipeline: the bytes of ncmds commands, and once a transport has read
 * them, their replies (owned here until redis_req_reset). */
typedef struct redis_req {
    cache_buf bytes;
    size_t ncmds;
    redisReply **replies; /* ncmds of them after a successful exchange */
    size_t nreplies;      /* how many of replies[] are filled */
    size_t replies_cap;
    /* scratch for building one command */
    cache_buf argbuf;
    const char **argv;
    size_t *argvlen;
    size_t argv_cap;
} redis_req;

void redis_req_init(redis_req *q);
/* Forgets the commands and frees the replies; keeps the memory. */
void redis_req_reset(redis_req *q);
void redis_req_free(redis_req *q);
/* Appends one command. CACHE_OK or CACHE_ENOMEM (with err set). */
int redis_req_add(redis_req *q, size_t argc, const redis_arg *args,
                  cache_err *err);
/* The same for plain C strings (setup commands: AUTH, SELECT, ...). */
int redis_req_addz(redis_req *q, cache_err *err, size_t argc, ...);
/* Room for ncmds replies (transports call this before reading). */
int redis_req_reserve_replies(redis_req *q, cache_err *err);
/* Drops the replies read so far (after a failed exchange). */
void redis_req_drop_replies(redis_req *q);

/* ---- replies ------------------------------------------------------------- */

/* A hiredis reader that refuses arrays over REDIS_MAX_ELEMENTS. */
redisReader *redis_reader_new(void);
/* 1 and *out set: one complete reply (the caller frees it with
 * freeReplyObject); 0: more bytes needed; CACHE_FAIL: the stream is not
 * RESP (err says why; the connection must be dropped). */
int redis_reader_next(redisReader *r, redisReply **out, cache_err *err);
/* True when the reader holds bytes beyond the replies taken from it: the
 * server sent more than was asked for, so the stream is out of step. */
int redis_reader_has_leftover(const redisReader *r);

/* Checks that a reply is not an error; an error reply becomes CACHE_FAIL
 * (CACHE_ENOTINT for "not an integer" / overflow) with "<label>: <text>". */
int redis_reply_check(const redisReply *r, const char *label, cache_err *err);
/* An error reply whose text starts with word ("MOVED", "READONLY", ...). */
int redis_reply_is_error(const redisReply *r, const char *word);
/* CACHE_OK for +OK (or any status reply), else a failure. */
int redis_reply_ok(const redisReply *r, const char *label, cache_err *err);

/* ---- the per-object part: prefix, and what ops share ---------------------- */
typedef struct redis_proto {
    char *prefix; /* key_prefix, may be empty */
    size_t plen;
    const char *label; /* for messages: "redis 127.0.0.1:6379" (borrowed) */
} redis_proto;

/* Milliseconds for PX from a positive ttl in seconds: rounded up, at least 1,
 * at most REDIS_MAX_PX (a far future Redis accepts). */
#define REDIS_MAX_PX INT64_C(1000000000000000)
int64_t redis_ttl_ms(double ttl);

/* The glob pattern matching every key that starts with prefix: the prefix
 * with *?[]\ escaped, then '*'. */
int redis_glob_prefix(const char *prefix, size_t plen, cache_buf *out);

/* ---- operations ------------------------------------------------------------
 * Each build appends to q; each finish reads the replies from q starting at
 * index `at` (so several operations can share one pipeline) and returns the
 * operation's status (or a failure with err set). */
int redis_op_get_build(const redis_proto *p, redis_req *q, cache_str key,
                       cache_err *err);
/* A hit appends the value's codec bytes to out; a value whose marker is
 * there but whose bytes are corrupt is CACHE_MISS with err->code CACHE_FAIL. */
int redis_op_get_finish(const redis_proto *p, const redis_req *q, size_t at,
                        cache_buf *out, cache_err *err);

int redis_op_has_build(const redis_proto *p, redis_req *q, cache_str key,
                       cache_err *err);
int redis_op_has_finish(const redis_proto *p, const redis_req *q, size_t at,
                        cache_err *err);

int redis_op_del_build(const redis_proto *p, redis_req *q, cache_str key,
                       cache_err *err);
int redis_op_del_finish(const redis_proto *p, const redis_req *q, size_t at,
                        cache_err *err);

/* scratch: a buffer for the external form of the value (reused). */
int redis_op_set_build(const redis_proto *p, redis_req *q, cache_str key,
                       cache_str value, double ttl, int only_if_absent,
                       cache_buf *scratch, cache_err *err);
int redis_op_set_finish(const redis_proto *p, const redis_req *q, size_t at,
                        double ttl, int only_if_absent, cache_err *err);

int redis_op_incr_build(const redis_proto *p, redis_req *q, cache_str key,
                        int64_t delta, double new_ttl, cache_err *err);
int redis_op_incr_finish(const redis_proto *p, const redis_req *q, size_t at,
                         int64_t *result, cache_err *err);

/* One MGET of n keys. */
int redis_op_mget_build(const redis_proto *p, redis_req *q, size_t n,
                        const cache_str *keys, cache_err *err);
int redis_op_mget_finish(const redis_proto *p, const redis_req *q, size_t at,
                         size_t n, cache_buf *out, int *status,
                         cache_err *err);

/* One DEL of n keys (set_many with a negative ttl). */
int redis_op_mdel_build(const redis_proto *p, redis_req *q, size_t n,
                        const cache_str *keys, cache_err *err);

/* ---- Redis Cluster ---------------------------------------------------------- */
#define REDIS_SLOTS 16384

/* The hash slot of a full (prefixed) key: CRC16 (XMODEM) mod 16384 of the
 * key, or of its hash tag: the bytes between the first '{' and the first
 * '}' after it, when there is at least one. */
unsigned redis_key_slot(const char *key, size_t len);

/* A MOVED or ASK error reply: 1 with *ask, *slot, host (copied into buf,
 * empty when the server left it out: same host as the one asked) and
 * *port; 0 for any other reply. */
int redis_redirect(const redisReply *r, int *ask, unsigned *slot, char *host,
                   size_t host_size, int *port);

/* ---- clear ------------------------------------------------------------------ */
/* SCAN cursor MATCH pattern COUNT REDIS_CLEAR_BATCH. */
int redis_op_scan_build(redis_req *q, const char *cursor, size_t cursor_len,
                        const cache_buf *pattern, cache_err *err);
/* Reads a SCAN reply: the next cursor (copied into cursor, at most 31
 * digits) and the array of keys (borrowed from the reply). */
int redis_op_scan_finish(const redis_proto *p, const redis_req *q, size_t at,
                         char *cursor, size_t *cursor_len,
                         const redisReply **keys, cache_err *err);

#endif
