/*
 * test_co.c - the cosocket seam (engine/co.h) driven from C: the machine
 * alone (actions answered by hand: keepalive only after a clean finish,
 * close on a timeout or bytes past the replies, AUTH/SELECT only on fresh
 * connections, pool names per db and password), and a small blocking
 * driver with a pool of its own against the test Redis (the results equal
 * the blocking path's; a pooled connection the server dropped is retried
 * on a fresh one).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cache.h"
#include "co.h"
#include "codec.h"
#include "ctest.h"

static cache_str S(const char *s) { return (cache_str){s, strlen(s)}; }

/* A RedisCache on port with extra string options (name, value, ...). */
static cache_backend *redis_on(const char *port, int64_t db,
                               const char *password)
{
    cache_opt items[4];
    size_t n = 0;
    memset(items, 0, sizeof items);
    items[n].name = "port";
    items[n].type = CACHE_OPT_INT;
    items[n].i = atoi(port);
    items[n].n = (double)items[n].i;
    n++;
    items[n].name = "db";
    items[n].type = CACHE_OPT_INT;
    items[n].i = db;
    items[n].n = (double)db;
    n++;
    if (password) {
        items[n].name = "password";
        items[n].type = CACHE_OPT_STR;
        items[n].s = password;
        items[n].slen = strlen(password);
        n++;
    }
    items[n].name = "key_prefix";
    items[n].type = CACHE_OPT_STR;
    items[n].s = "test_co:";
    items[n].slen = 8;
    n++;
    cache_opts opts = {items, n};
    cache_err err = {0, ""};
    cache_backend *b = cache_open("RedisCache", &opts, &err);
    if (!b)
        printf("  cache_open: %s\n", err.msg);
    return b;
}

/* ---- the machine alone ---------------------------------------------------- */

/* Runs a get of key on b under co: returns 1 when it asked for an exchange. */
static int run_get(cache_co *co, cache_backend *b, const char *key,
                   cache_buf *out, int *rc, cache_err *err)
{
    out->len = 0;
    cache_co_begin_run(co);
    *rc = cache_get(b, S(key), out, err);
    return cache_co_end_run(co);
}

static void machine_by_hand(void)
{
    cache_backend *b = redis_on("6379", 3, "secret");
    CHECK(b != NULL);
    if (!b)
        return;
    cache_co *co = cache_co_new(b, NULL);
    cache_buf out;
    cache_buf_init(&out);
    cache_err err = {0, ""};
    int rc;
    CHECK(run_get(co, b, "k", &out, &rc, &err) == 1);
    CHECK(rc == CACHE_PENDING);
    cache_co_action a;
    cache_co_step(co, 0, 0, NULL, 0, &a);
    CHECK(a.kind == CACHE_CO_CONNECT);
    CHECK(strcmp(a.io->host, "127.0.0.1") == 0); /* localhost, no resolver */
    CHECK(strstr(a.io->pool, "db=3") != NULL);
    CHECK(strstr(a.io->pool, "secret") == NULL); /* a digest only */
    /* a fresh connection: AUTH and SELECT first */
    cache_co_step(co, 1, 0, NULL, 0, &a);
    CHECK(a.kind == CACHE_CO_SEND);
    CHECK(a.len > 0 && memmem(a.bytes ? a.bytes : "", a.len, "AUTH", 4) != NULL);
    CHECK(memmem(a.bytes ? a.bytes : "", a.len, "SELECT", 6) != NULL);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    CHECK(a.kind == CACHE_CO_RECV);
    cache_co_step(co, 1, 0, "+OK\r\n+OK\r\n", 10, &a);
    CHECK(a.kind == CACHE_CO_SEND);
    CHECK(memmem(a.bytes ? a.bytes : "", a.len, "GET", 3) != NULL);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    CHECK(a.kind == CACHE_CO_RECV);
    /* the reply in two pieces, then a clean finish: keepalive */
    cache_co_step(co, 1, 0, "$2\r\n4", 5, &a);
    CHECK(a.kind == CACHE_CO_RECV);
    cache_co_step(co, 1, 0, "2\r\n", 3, &a);
    CHECK(a.kind == CACHE_CO_KEEPALIVE);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    CHECK(a.kind == CACHE_CO_RUN);
    CHECK(run_get(co, b, "k", &out, &rc, &err) == 0);
    CHECK(rc == CACHE_OK);
    int64_t v = 0;
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &v) && v == 42);
    cache_co_free(co);

    /* a pooled connection: no AUTH / SELECT; bytes past the reply: close */
    co = cache_co_new(b, NULL);
    CHECK(run_get(co, b, "k", &out, &rc, &err) == 1);
    cache_co_step(co, 0, 0, NULL, 0, &a);
    cache_co_step(co, 1, 3, NULL, 0, &a); /* reused 3 times */
    CHECK(a.kind == CACHE_CO_SEND && memmem(a.bytes ? a.bytes : "", a.len, "AUTH", 4) == NULL);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    cache_co_step(co, 1, 0, "$-1\r\n+OK\r\n", 10, &a);
    CHECK(a.kind == CACHE_CO_CLOSE);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    CHECK(a.kind == CACHE_CO_RUN);
    CHECK(run_get(co, b, "k", &out, &rc, &err) == 0);
    CHECK(rc == CACHE_FAIL && strstr(err.msg, "unexpected data") != NULL);
    cache_co_free(co);

    /* a timeout: close (the late reply goes with the socket) */
    co = cache_co_new(b, NULL);
    run_get(co, b, "k", &out, &rc, &err);
    cache_co_step(co, 0, 0, NULL, 0, &a);
    cache_co_step(co, 1, 1, NULL, 0, &a);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    CHECK(a.kind == CACHE_CO_RECV);
    cache_co_step(co, 0, 0, "timeout", 7, &a);
    CHECK(a.kind == CACHE_CO_CLOSE);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    CHECK(run_get(co, b, "k", &out, &rc, &err) == 0);
    CHECK(rc == CACHE_FAIL && strstr(err.msg, "timed out") != NULL);
    cache_co_free(co);

    /* a pooled connection closed by the server before any byte: the
     * request goes again on another connection */
    co = cache_co_new(b, NULL);
    run_get(co, b, "k", &out, &rc, &err);
    cache_co_step(co, 0, 0, NULL, 0, &a);
    cache_co_step(co, 1, 5, NULL, 0, &a);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    cache_co_step(co, 0, 0, "closed", 6, &a);
    CHECK(a.kind == CACHE_CO_CLOSE);
    cache_co_step(co, 1, 0, NULL, 0, &a);
    CHECK(a.kind == CACHE_CO_CONNECT);
    cache_co_step(co, 1, 0, NULL, 0, &a); /* fresh: AUTH, SELECT */
    CHECK(a.kind == CACHE_CO_SEND && memmem(a.bytes ? a.bytes : "", a.len, "AUTH", 4) != NULL);
    cache_co_free(co); /* freed mid-way: nothing leaks */

    /* a refused connect: the failure, named */
    co = cache_co_new(b, NULL);
    run_get(co, b, "k", &out, &rc, &err);
    cache_co_step(co, 0, 0, NULL, 0, &a);
    cache_co_step(co, 0, 0, "connection refused", 18, &a);
    CHECK(a.kind == CACHE_CO_RUN);
    CHECK(run_get(co, b, "k", &out, &rc, &err) == 0);
    CHECK(rc == CACHE_FAIL &&
          strstr(err.msg, "redis localhost:6379: connect: connection refused"));
    cache_co_free(co);

    cache_buf_free(&out);
    cache_close(b);
}

static void pool_names(void)
{
    cache_backend *b0 = redis_on("6379", 0, NULL);
    cache_backend *b1 = redis_on("6379", 1, NULL);
    cache_backend *p1 = redis_on("6379", 0, "one");
    cache_backend *p2 = redis_on("6379", 0, "two");
    CHECK(b0 && b1 && p1 && p2);
    if (!(b0 && b1 && p1 && p2))
        return;
    cache_backend *all[4] = {b0, b1, p1, p2};
    char pools[4][512];
    for (int i = 0; i < 4; i++) {
        cache_co *co = cache_co_new(all[i], NULL);
        cache_buf out;
        cache_buf_init(&out);
        cache_err err;
        int rc;
        run_get(co, all[i], "k", &out, &rc, &err);
        cache_co_action a;
        cache_co_step(co, 0, 0, NULL, 0, &a);
        snprintf(pools[i], sizeof pools[i], "%s", a.io->pool);
        cache_co_free(co);
        cache_buf_free(&out);
    }
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            CHECK(strcmp(pools[i], pools[j]) != 0);
    for (int i = 0; i < 4; i++)
        cache_close(all[i]);
}

/* ---- a small driver with real sockets -------------------------------------- */

typedef struct pooled {
    char name[512];
    int fd;
    int reused;
} pooled;

static pooled pool[4];
static int connects;

static int tcp_connect(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    connects++;
    return fd;
}

/* Moves bytes as C says until it says "run". */
static void drive(cache_co *co)
{
    cache_co_action a;
    int fd = -1, ok = 0;
    int64_t value = 0;
    char buf[65536];
    const char *data = NULL;
    size_t len = 0;
    for (;;) {
        cache_co_step(co, ok, value, data, len, &a);
        ok = 1, value = 0, data = NULL, len = 0;
        switch (a.kind) {
        case CACHE_CO_CONNECT:
            fd = -1;
            for (int i = 0; i < 4; i++)
                if (pool[i].fd >= 0 && strcmp(pool[i].name, a.io->pool) == 0) {
                    fd = pool[i].fd;
                    value = ++pool[i].reused;
                    pool[i].fd = -1;
                    break;
                }
            if (fd < 0 && (fd = tcp_connect(a.io->host, a.io->port)) < 0)
                ok = 0, data = "connection refused";
            break;
        case CACHE_CO_SEND:
            if (send(fd, a.bytes, a.len, MSG_NOSIGNAL) != (ssize_t)a.len)
                ok = 0, data = "broken pipe";
            break;
        case CACHE_CO_RECV: {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                ok = 0, data = "closed";
            else
                data = buf, len = (size_t)n;
            break;
        }
        case CACHE_CO_KEEPALIVE:
            for (int i = 0; i < 4; i++)
                if (pool[i].fd < 0) {
                    snprintf(pool[i].name, sizeof pool[i].name, "%s",
                             a.io->pool);
                    pool[i].fd = fd;
                    break;
                }
            fd = -1;
            break;
        case CACHE_CO_CLOSE:
            close(fd);
            fd = -1;
            break;
        case CACHE_CO_RUN:
            if (fd >= 0)
                close(fd);
            return;
        }
    }
}

static const char *redis_port;

static void real_sockets(void)
{
    const char *port = redis_port;
    for (int i = 0; i < 4; i++)
        pool[i].fd = -1;
    cache_backend *b = redis_on(port, 0, NULL);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_err err = {0, ""};
    /* set through the machine, read through the blocking path */
    cache_co *co = cache_co_new(b, &err);
    cache_buf val, out;
    cache_buf_init(&val);
    cache_buf_init(&out);
    cache_writer w;
    cache_writer_init(&w, &val);
    cache_write_str(&w, "hello", 5);
    int rc = 0, runs = 0;
    for (;;) {
        runs++;
        cache_co_begin_run(co);
        rc = cache_set(b, S("x"), (cache_str){val.data, val.len}, 60, &err);
        if (!cache_co_end_run(co))
            break;
        drive(co);
    }
    cache_co_free(co);
    CHECK(rc == CACHE_OK);
    CHECK(runs == 2);
    CHECK(cache_get(b, S("x"), &out, &err) == CACHE_OK);
    CHECK(out.len == val.len && memcmp(out.data, val.data, val.len) == 0);
    /* and back: read through the machine; the pooled connection serves */
    for (int round = 0; round < 3; round++) {
        co = cache_co_new(b, &err);
        for (;;) {
            out.len = 0;
            cache_co_begin_run(co);
            rc = cache_get(b, S("x"), &out, &err);
            if (!cache_co_end_run(co))
                break;
            drive(co);
        }
        cache_co_free(co);
        CHECK(rc == CACHE_OK);
        CHECK(out.len == val.len && memcmp(out.data, val.data, val.len) == 0);
    }
    CHECK(connects == 1);
    /* the server drops the idle pooled connection: retried on a new one */
    for (int i = 0; i < 4; i++)
        if (pool[i].fd >= 0)
            shutdown(pool[i].fd, SHUT_RDWR);
    co = cache_co_new(b, &err);
    for (;;) {
        out.len = 0;
        cache_co_begin_run(co);
        rc = cache_get(b, S("x"), &out, &err);
        if (!cache_co_end_run(co))
            break;
        drive(co);
    }
    cache_co_free(co);
    CHECK(rc == CACHE_OK);
    CHECK(connects == 2);
    for (int i = 0; i < 4; i++)
        if (pool[i].fd >= 0)
            close(pool[i].fd);
    cache_buf_free(&val);
    cache_buf_free(&out);
    cache_close(b);
}

int main(void)
{
    RUN(machine_by_hand);
    RUN(pool_names);
    redis_port = getenv("CACHE_TEST_REDIS_PORT");
    if (redis_port)
        RUN(real_sockets);
    else
        SKIP(real_sockets, "CACHE_TEST_REDIS_PORT is not set");
    CTEST_END();
}
