/*
 * test_redis.c - the Redis protocol without sockets: request bytes of the
 * operations, replies fed to the reader in fixtures, split at every byte and
 * mutated at random (never a crash), slots and redirections, URLs and
 * addresses. The backends against real servers are the Lua specs', except
 * what Lua cannot show: a connection made before fork(), against the
 * server of CACHE_TEST_REDIS_PORT, else one started here with
 * spec/servers/redis.sh (skipped when redis-server is missing).
 */
#define _DEFAULT_SOURCE /* mkdtemp, popen */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "codec.h"
#include "ctest.h"
#include "../../backends/redis/redis_common.h"
#include "../../backends/redis/redis_proto.h"

static cache_str S(const char *s) { return (cache_str){s, strlen(s)}; }

static redis_proto P = {"p:", 2, "test"};

/* The request bytes, compared with the RESP text expected. */
static int bytes_are(const redis_req *q, const char *want)
{
    return q->bytes.len == strlen(want) && memcmp(q->bytes.data, want, q->bytes.len) == 0;
}

static void int_bytes(cache_buf *b, int64_t v)
{
    cache_writer w;
    b->len = 0;
    cache_writer_init(&w, b);
    cache_write_int(&w, v);
}

static void requests(void)
{
    redis_req q;
    cache_buf scratch, v;
    cache_err err;
    redis_req_init(&q);
    cache_buf_init(&scratch);
    cache_buf_init(&v);
    int_bytes(&v, 42);
    cache_str value = {v.data, v.len};

    CHECK(redis_op_get_build(&P, &q, S("k"), &err) == CACHE_OK);
    CHECK(bytes_are(&q, "*2\r\n$3\r\nGET\r\n$3\r\np:k\r\n"));
    redis_req_reset(&q);
    CHECK(redis_op_set_build(&P, &q, S("k"), value, 1.5, 0, &scratch, &err) == CACHE_OK);
    CHECK(bytes_are(&q, "*5\r\n$3\r\nSET\r\n$3\r\np:k\r\n$2\r\n42\r\n$2\r\nPX\r\n$4\r\n1500\r\n"));
    redis_req_reset(&q);
    CHECK(redis_op_set_build(&P, &q, S("k"), value, 0, 1, &scratch, &err) == CACHE_OK);
    CHECK(bytes_are(&q, "*4\r\n$3\r\nSET\r\n$3\r\np:k\r\n$2\r\n42\r\n$2\r\nNX\r\n"));
    redis_req_reset(&q);
    CHECK(redis_op_set_build(&P, &q, S("k"), value, -1, 0, &scratch, &err) == CACHE_OK);
    CHECK(bytes_are(&q, "*2\r\n$3\r\nDEL\r\n$3\r\np:k\r\n"));
    redis_req_reset(&q);
    /* a pipeline: two commands, one after the other */
    redis_op_has_build(&P, &q, S("a"), &err);
    redis_op_del_build(&P, &q, S("b\r\n"), &err);
    CHECK(q.ncmds == 2);
    CHECK(bytes_are(&q, "*2\r\n$6\r\nEXISTS\r\n$3\r\np:a\r\n*2\r\n$3\r\nDEL\r\n$5\r\np:b\r\n\r\n"));
    redis_req_reset(&q);
    cache_str keys[3] = {S("a"), S(""), S("c")};
    CHECK(redis_op_mget_build(&P, &q, 3, keys, &err) == CACHE_OK);
    CHECK(bytes_are(&q, "*4\r\n$4\r\nMGET\r\n$3\r\np:a\r\n$2\r\np:\r\n$3\r\np:c\r\n"));
    redis_req_free(&q);
    cache_buf_free(&scratch);
    cache_buf_free(&v);
}

static void ttl_and_glob(void)
{
    CHECK(redis_ttl_ms(0.3) == 300);
    CHECK(redis_ttl_ms(0.0001) == 1);
    CHECK(redis_ttl_ms(1.0005) == 1001);
    CHECK(redis_ttl_ms(1e300) == REDIS_MAX_PX);
    cache_buf b;
    cache_buf_init(&b);
    CHECK(redis_glob_prefix("a*b?[c]\\", 8, &b) == 0);
    CHECK(b.len == 14 && memcmp(b.data, "a\\*b\\?\\[c\\]\\\\*", 14) == 0);
    cache_buf_free(&b);
}

/* Feeds text to a fresh reader n bytes at a time; the first reply. */
static redisReply *read_reply(const char *text, size_t len, size_t step, int *rc)
{
    redisReader *r = redis_reader_new();
    redisReply *reply = NULL;
    cache_err err;
    *rc = 0;
    for (size_t at = 0; at < len && *rc == 0; at += step) {
        size_t n = len - at < step ? len - at : step;
        redisReaderFeed(r, text + at, n);
        *rc = redis_reader_next(r, &reply, &err);
    }
    redisReaderFree(r);
    return *rc == 1 ? reply : NULL;
}

static void replies_in_pieces(void)
{
    static const char text[] = "*3\r\n$3\r\nabc\r\n$-1\r\n:-12\r\n";
    for (size_t step = 1; step <= sizeof text; step++) {
        int rc;
        redisReply *r = read_reply(text, sizeof text - 1, step, &rc);
        CHECK(rc == 1);
        if (!r)
            continue;
        CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
        CHECK(r->element[2]->integer == -12);
        freeReplyObject(r);
    }
    int rc;
    CHECK(read_reply("?x\r\n", 4, 4, &rc) == NULL && rc == CACHE_FAIL);
    CHECK(read_reply("*2000000000\r\n", 13, 13, &rc) == NULL && rc == CACHE_FAIL);
    CHECK(read_reply("$5\r\nab", 6, 6, &rc) == NULL && rc == 0); /* incomplete */
}

static void finish(const char *reply_text, redis_req *q)
{
    int rc;
    redis_req_reset(q);
    q->ncmds = 1;
    redis_req_reserve_replies(q, NULL);
    q->replies[0] = read_reply(reply_text, strlen(reply_text), 64, &rc);
    q->nreplies = q->replies[0] ? 1 : 0;
}

static void replies_to_results(void)
{
    redis_req q;
    cache_buf out;
    cache_err err;
    int64_t n;
    redis_req_init(&q);
    cache_buf_init(&out);
    finish("$2\r\n42\r\n", &q);
    CHECK(redis_op_get_finish(&P, &q, 0, &out, &err) == CACHE_OK);
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &n) && n == 42);
    finish("$-1\r\n", &q);
    CHECK(redis_op_get_finish(&P, &q, 0, &out, &err) == CACHE_MISS);
    finish("$2\r\n!\xc1\r\n", &q); /* a marker and corrupt bytes: a miss */
    out.len = 0;
    CHECK(redis_op_get_finish(&P, &q, 0, &out, &err) == CACHE_MISS && out.len == 0);
    CHECK(err.code == CACHE_FAIL);
    finish(":1\r\n", &q);
    CHECK(redis_op_get_finish(&P, &q, 0, &out, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "unexpected integer reply") != NULL);
    finish("$-1\r\n", &q);
    CHECK(redis_op_set_finish(&P, &q, 0, 10, 1, &err) == CACHE_EXISTS);
    finish("+OK\r\n", &q);
    CHECK(redis_op_set_finish(&P, &q, 0, 10, 1, &err) == CACHE_OK);
    finish(":1\r\n", &q);
    CHECK(redis_op_set_finish(&P, &q, 0, -1, 1, &err) == CACHE_EXISTS);
    finish(":0\r\n", &q);
    CHECK(redis_op_del_finish(&P, &q, 0, &err) == CACHE_MISS);
    /* inc's script answers the stored text: exact over the whole int64 range */
    finish("$19\r\n9223372036854775807\r\n", &q);
    CHECK(redis_op_incr_finish(&P, &q, 0, &n, &err) == CACHE_OK && n == INT64_MAX);
    finish("$20\r\n-9223372036854775808\r\n", &q);
    CHECK(redis_op_incr_finish(&P, &q, 0, &n, &err) == CACHE_OK && n == INT64_MIN);
    finish("$19\r\n9223372036854775808\r\n", &q); /* out of range: untrusted bytes */
    CHECK(redis_op_incr_finish(&P, &q, 0, &n, &err) == CACHE_FAIL);
    finish("$3\r\n1.5\r\n", &q);
    CHECK(redis_op_incr_finish(&P, &q, 0, &n, &err) == CACHE_FAIL);
    finish(":5\r\n", &q);
    CHECK(redis_op_incr_finish(&P, &q, 0, &n, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "unexpected integer reply") != NULL);
    finish("-ERR value is not an integer or out of range\r\n", &q);
    CHECK(redis_op_incr_finish(&P, &q, 0, &n, &err) == CACHE_ENOTINT);
    finish("-READONLY You can't write against a read only replica.\r\n", &q);
    CHECK(redis_op_incr_finish(&P, &q, 0, &n, &err) == CACHE_FAIL);
    CHECK(redis_reply_is_error(q.replies[0], "READONLY"));
    finish("*2\r\n$1\r\n0\r\n*1\r\n$3\r\np:a\r\n", &q);
    char cursor[32];
    size_t clen;
    const redisReply *keys;
    CHECK(redis_op_scan_finish(&P, &q, 0, cursor, &clen, &keys, &err) == CACHE_OK);
    CHECK(clen == 1 && cursor[0] == '0' && keys->elements == 1);
    finish("*2\r\n:0\r\n*0\r\n", &q);
    CHECK(redis_op_scan_finish(&P, &q, 0, cursor, &clen, &keys, &err) == CACHE_FAIL);
    redis_req_free(&q);
    cache_buf_free(&out);
}

/* Random and mutated replies through the reader and every finish: any
 * outcome but a crash or a leak (run under the sanitizers by SANITIZE=1). */
static void fuzz_replies(void)
{
    static const char *seeds[] = {
        "*2\r\n$1\r\n0\r\n*1\r\n$3\r\np:a\r\n", "$3\r\n!\x01\x02\r\n", ":5\r\n",
        "*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n", "-MOVED 12 127.0.0.1:7000\r\n", "+OK\r\n",
    };
    srand(7);
    redis_req q;
    cache_buf out[4];
    int status[4];
    cache_err err;
    redis_req_init(&q);
    for (int i = 0; i < 4; i++)
        cache_buf_init(&out[i]);
    for (int round = 0; round < 20000; round++) {
        char buf[64];
        const char *seed = seeds[round % 6];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        for (int m = rand() % 4; m >= 0; m--)
            buf[rand() % len] = (char)(rand() % 256);
        buf[len] = '\0';
        int rc;
        redisReply *r = read_reply(buf, len, 1 + (size_t)rand() % 8, &rc);
        if (!r)
            continue;
        redis_req_reset(&q);
        q.ncmds = 1;
        redis_req_reserve_replies(&q, NULL);
        q.replies[0] = r;
        q.nreplies = 1;
        int64_t n;
        char cursor[32], host[64];
        size_t clen;
        const redisReply *keys;
        int ask, port;
        unsigned slot;
        for (int i = 0; i < 4; i++)
            out[i].len = 0;
        redis_op_get_finish(&P, &q, 0, &out[0], &err);
        redis_op_mget_finish(&P, &q, 0, 3, out, status, &err);
        redis_op_incr_finish(&P, &q, 0, &n, &err);
        redis_op_scan_finish(&P, &q, 0, cursor, &clen, &keys, &err);
        redis_op_set_finish(&P, &q, 0, 1, 1, &err);
        redis_redirect(r, &ask, &slot, host, sizeof host, &port);
    }
    redis_req_free(&q);
    for (int i = 0; i < 4; i++)
        cache_buf_free(&out[i]);
    CHECK(1);
}

static void slots_and_redirects(void)
{
    /* the cluster specification's test vector, and the recipe's MOVED */
    CHECK(redis_key_slot("123456789", 9) == (0x31C3 % 16384));
    CHECK(redis_key_slot("foo", 3) == 12182);
    CHECK(redis_key_slot("{user1}.a", 9) == redis_key_slot("user1", 5));
    CHECK(redis_key_slot("x{}y", 4) == redis_key_slot("x{}y", 4));
    CHECK(redis_key_slot("{}user1", 7) != redis_key_slot("user1", 5));
    redis_req q;
    redis_req_init(&q);
    int ask, port;
    unsigned slot;
    char host[64];
    finish("-MOVED 3999 127.0.0.1:6381\r\n", &q);
    CHECK(redis_redirect(q.replies[0], &ask, &slot, host, sizeof host, &port));
    CHECK(!ask && slot == 3999 && strcmp(host, "127.0.0.1") == 0 && port == 6381);
    finish("-ASK 1 :7000\r\n", &q);
    CHECK(redis_redirect(q.replies[0], &ask, &slot, host, sizeof host, &port));
    CHECK(ask && slot == 1 && host[0] == '\0' && port == 7000);
    finish("-MOVED 99999 h:1\r\n", &q);
    CHECK(!redis_redirect(q.replies[0], &ask, &slot, host, sizeof host, &port));
    finish("-ERR MOVED 1 h:1\r\n", &q);
    CHECK(!redis_redirect(q.replies[0], &ask, &slot, host, sizeof host, &port));
    redis_req_free(&q);
}

static void urls(void)
{
    redis_url u;
    cache_err err;
    const char *ok1 = "redis://alice:p%40ss@example.com:6380/3";
    CHECK(redis_url_parse(ok1, strlen(ok1), &u, &err) == CACHE_OK);
    CHECK(strcmp(u.host, "example.com") == 0 && u.port == 6380 && u.db == 3);
    CHECK(strcmp(u.username, "alice") == 0 && strcmp(u.password, "p@ss") == 0);
    redis_url_free(&u);
    const char *ok2 = "redis://:secret@[::1]";
    CHECK(redis_url_parse(ok2, strlen(ok2), &u, &err) == CACHE_OK);
    CHECK(strcmp(u.host, "::1") == 0 && u.port == -1 && u.db == -1 && !u.username);
    CHECK(strcmp(u.password, "secret") == 0);
    redis_url_free(&u);
    const char *ok3 = "unix:///run/redis.sock?db=2&password=x";
    CHECK(redis_url_parse(ok3, strlen(ok3), &u, &err) == CACHE_OK);
    CHECK(strcmp(u.path, "/run/redis.sock") == 0 && u.db == 2 && strcmp(u.password, "x") == 0);
    redis_url_free(&u);
    const char *bad[] = {"redis//h", "redis://h:0", "redis://h/-1", "redis://h?x=1",
                         "unix://rel", "redis://u:%0@h", "redis://u:%00@h", "redisss://h",
                         "redis://[::1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(redis_url_parse(bad[i], strlen(bad[i]), &u, &err) == CACHE_EINVAL);
}

/* Parent and child both use a connection opened before fork(): each must
 * get its own answers (the child reconnects). */
static const char *redis_port;

static void fork_safety(void)
{
    const char *port = redis_port;
    cache_opt items[3] = {
        {.name = "host", .type = CACHE_OPT_STR, .s = "127.0.0.1", .slen = 9},
        {.name = "port", .type = CACHE_OPT_INT, .i = atoi(port), .n = atoi(port)},
        {.name = "key_prefix", .type = CACHE_OPT_STR, .s = "ctest-fork:", .slen = 11},
    };
    cache_opts opts = {items, 3};
    cache_err err;
    cache_backend *b = cache_open("RedisCache", &opts, &err);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_buf v, out;
    cache_buf_init(&v);
    cache_buf_init(&out);
    int64_t n;
    for (int i = 0; i < 2; i++) {
        int_bytes(&v, i);
        char key[2] = {(char)('a' + i), 0};
        CHECK(cache_set(b, S(key), (cache_str){v.data, v.len}, 0, &err) == CACHE_OK);
    }
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        for (int r = 0; r < 2000; r++) {
            out.len = 0;
            if (cache_get(b, S("b"), &out, &err) != CACHE_OK ||
                !cache_value_as_int((cache_str){out.data, out.len}, &n) || n != 1)
                bad++;
        }
        _exit(bad ? 1 : 0);
    }
    int bad = 0;
    for (int r = 0; r < 2000; r++) {
        out.len = 0;
        if (cache_get(b, S("a"), &out, &err) != CACHE_OK ||
            !cache_value_as_int((cache_str){out.data, out.len}, &n) || n != 0)
            bad++;
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(bad == 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cache_clear(b, &err);
    cache_close(b);
    cache_buf_free(&v);
    cache_buf_free(&out);
}

/* A redis of our own when the suite has not started one (the C tests run
 * before the servers): spec/servers/redis.sh in a temporary folder. */
static char own_dir[64];
static char own_port[16];

static const char *start_own_redis(void)
{
    snprintf(own_dir, sizeof own_dir, "/tmp/test_redis.XXXXXX");
    if (!mkdtemp(own_dir))
        return NULL;
    char cmd[256], line[512];
    snprintf(cmd, sizeof cmd, "bash spec/servers/redis.sh start %s 2>/dev/null", own_dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "export CACHE_TEST_REDIS_PORT=%15[0-9]", own_port) == 1)
            break;
    while (fgets(line, sizeof line, p))
        ;
    pclose(p);
    return own_port[0] ? own_port : NULL;
}

static void stop_own_redis(void)
{
    char cmd[256];
    if (!own_dir[0])
        return;
    snprintf(cmd, sizeof cmd,
             "bash spec/servers/redis.sh stop %s >/dev/null 2>&1; rm -rf %s",
             own_dir, own_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not stop the redis of %s\n", own_dir);
}

int main(void)
{
    RUN(requests);
    RUN(ttl_and_glob);
    RUN(replies_in_pieces);
    RUN(replies_to_results);
    RUN(fuzz_replies);
    RUN(slots_and_redirects);
    RUN(urls);
    redis_port = getenv("CACHE_TEST_REDIS_PORT");
    if (!redis_port)
        redis_port = start_own_redis();
    if (redis_port)
        RUN(fork_safety);
    else
        SKIP(fork_safety, "no redis-server (spec/servers/redis.sh did not start)");
    stop_own_redis();
    CTEST_END();
}
