/*
 * fuzz_redis_reply.c - libFuzzer target for the Redis backends' reply
 * handling (backends/redis/redis_proto.c): bytes a server sends are fed through
 * hiredis's reader (redis_reader_new: arrays bounded) in chunks, as a
 * socket would deliver them, and every complete reply is handed to every
 * operation's finish function, as if it were the answer to that command.
 *
 * Checked: the reader never crashes or over-allocates on any stream and a
 * refused stream says why; each finish returns one of the codes its
 * operation may return, a failure always carries a message, a get hit
 * yields codec bytes that validate, an MGET yields one status per key, a
 * SCAN cursor is NUL-terminated within its buffer, and a MOVED/ASK parse
 * gives a port in 1..65535, a slot below 16384 and a host that fits.
 *
 * Input layout: byte 0 picks the chunk size (1..16, or all at once), the
 * rest is the stream. Build and run: `make fuzz-redis_reply FUZZ_SECONDS=60`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "redis/redis_proto.h"

#define CHECK(c)                                                             \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "fuzz_redis_reply: check failed at line %d: %s\n", \
                    __LINE__, #c);                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define MAX_REPLIES 64

static int is_code(int rc)
{
    return rc == CACHE_OK || rc == CACHE_MISS || rc == CACHE_EXISTS ||
           rc == CACHE_FAIL || rc == CACHE_EINVAL || rc == CACHE_ENOTINT ||
           rc == CACHE_ENOMEM;
}

/* A failure (negative code) must say why. */
static void check_rc(int rc, const cache_err *err)
{
    CHECK(is_code(rc));
    if (rc < 0)
        CHECK(err->msg[0] != '\0');
}

static void finish_all(const redis_proto *p, const redis_req *q, size_t at)
{
    const redisReply *r = q->replies[at];
    cache_err err;

    cache_buf out;
    cache_buf_init(&out);
    err = (cache_err){0, ""};
    int rc = redis_op_get_finish(p, q, at, &out, &err);
    check_rc(rc, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_MISS || rc < 0);
    if (rc == CACHE_OK)
        CHECK(cache_validate(out.data, out.len, NULL) == CACHE_OK);
    else
        CHECK(out.len == 0);
    cache_buf_free(&out);

    err = (cache_err){0, ""};
    rc = redis_op_has_finish(p, q, at, &err);
    check_rc(rc, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_MISS || rc < 0);
    err = (cache_err){0, ""};
    rc = redis_op_del_finish(p, q, at, &err);
    check_rc(rc, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_MISS || rc < 0);

    static const double ttls[] = {-1, 0, 2.5};
    for (int t = 0; t < 3; t++)
        for (int add = 0; add <= 1; add++) {
            err = (cache_err){0, ""};
            rc = redis_op_set_finish(p, q, at, ttls[t], add, &err);
            check_rc(rc, &err);
            CHECK(rc == CACHE_OK || (add && rc == CACHE_EXISTS) || rc < 0);
        }

    int64_t result;
    err = (cache_err){0, ""};
    rc = redis_op_incr_finish(p, q, at, &result, &err);
    check_rc(rc, &err);
    CHECK(rc == CACHE_OK || rc < 0);

    /* MGET of as many keys as the array has, and of one key more. */
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 1;
    for (size_t k = n; k <= n + 1; k++) {
        cache_buf *outs = calloc(k ? k : 1, sizeof *outs);
        int *status = calloc(k ? k : 1, sizeof *status);
        CHECK(outs && status);
        err = (cache_err){0, ""};
        rc = redis_op_mget_finish(p, q, at, k, outs, status, &err);
        check_rc(rc, &err);
        if (rc == CACHE_OK)
            for (size_t i = 0; i < k; i++) {
                CHECK(status[i] == CACHE_OK || status[i] == CACHE_MISS);
                if (status[i] == CACHE_OK)
                    CHECK(cache_validate(outs[i].data, outs[i].len, NULL) ==
                          CACHE_OK);
            }
        for (size_t i = 0; i < k; i++)
            cache_buf_free(&outs[i]);
        free(outs);
        free(status);
    }

    char cursor[32];
    size_t cursor_len = 0;
    const redisReply *keys = NULL;
    memset(cursor, 'x', sizeof cursor);
    err = (cache_err){0, ""};
    rc = redis_op_scan_finish(p, q, at, cursor, &cursor_len, &keys, &err);
    check_rc(rc, &err);
    if (rc == CACHE_OK) {
        CHECK(cursor_len >= 1 && cursor_len < sizeof cursor);
        CHECK(cursor[cursor_len] == '\0');
        CHECK(keys && keys->type == REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < keys->elements; i++)
            CHECK(keys->element[i]->type == REDIS_REPLY_STRING);
    }

    int ask = -1, port = 0;
    unsigned slot = REDIS_SLOTS;
    char host[64];
    if (redis_redirect(r, &ask, &slot, host, sizeof host, &port)) {
        CHECK(ask == 0 || ask == 1);
        CHECK(slot < REDIS_SLOTS);
        CHECK(port >= 1 && port <= 65535);
        CHECK(strlen(host) < sizeof host);
    }

    err = (cache_err){0, ""};
    check_rc(redis_reply_check(r, "fuzz", &err), &err);
    err = (cache_err){0, ""};
    check_rc(redis_reply_ok(r, "fuzz", &err), &err);
    (void)redis_reply_is_error(r, "MOVED");
    if (r->type == REDIS_REPLY_STRING)
        (void)redis_key_slot(r->str, r->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = data[0] % 17; /* 0: everything at once */
    data++;
    size--;
    /* An exact-size copy, so a read past the end is caught by ASan. */
    char *p = malloc(size ? size : 1);
    CHECK(p != NULL);
    memcpy(p, data, size);

    redis_proto proto = {(char *)"pfx:", 4, "redis fuzz"};
    redis_req q;
    redis_req_init(&q);
    q.ncmds = MAX_REPLIES;
    cache_err err = {0, ""};
    CHECK(redis_req_reserve_replies(&q, &err) == CACHE_OK);

    redisReader *rd = redis_reader_new();
    CHECK(rd != NULL);
    int broken = 0;
    for (size_t off = 0; off < size && !broken && q.nreplies < MAX_REPLIES;) {
        size_t n = chunk == 0 || size - off < chunk ? size - off : chunk;
        CHECK(redisReaderFeed(rd, p + off, n) == REDIS_OK);
        off += n;
        while (q.nreplies < MAX_REPLIES) {
            redisReply *reply = NULL;
            err = (cache_err){0, ""};
            int rc = redis_reader_next(rd, &reply, &err);
            if (rc == 0)
                break;
            if (rc != 1) {
                CHECK(rc == CACHE_FAIL && err.msg[0] != '\0');
                broken = 1;
                break;
            }
            CHECK(reply != NULL);
            q.replies[q.nreplies++] = reply;
        }
    }
    if (!broken)
        (void)redis_reader_has_leftover(rd);
    redisReaderFree(rd);

    for (size_t i = 0; i < q.nreplies; i++)
        finish_all(&proto, &q, i);
    redis_req_free(&q);
    free(p);
    return 0;
}
