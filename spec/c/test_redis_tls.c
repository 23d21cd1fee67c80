/*
 * test_redis_tls.c - TLS under the Redis transport, from plain C: rediss://
 * URLs and their ssl_* parameters, the TLS options' checks, and a TLS
 * connection opened before fork() used by parent and child (the child's
 * copy is dropped without a byte written, or the parent's session would
 * break). The server is spec/servers/redis_tls.sh's (CACHE_TEST_TLS_PORT,
 * CACHE_TEST_TLS_CERTS); without it the network tests are skipped.
 */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../backends/redis/redis_common.h"
#include "cache.h"
#include "codec.h"
#include "ctest.h"

#define S(lit) ((cache_str){(lit), sizeof(lit) - 1})

static void rediss_urls(void)
{
    redis_url u;
    cache_err err;
    const char *plain = "redis://h";
    CHECK(redis_url_parse(plain, strlen(plain), &u, &err) == CACHE_OK);
    CHECK(u.tls.ssl == -1 && u.tls.verify == -1 && !u.tls.ca_certs);
    redis_url_free(&u);
    const char *tls = "rediss://u:p@h:6380/2?ssl_ca_certs=%2Fetc%2Fca%20x.pem"
                      "&ssl_cert_reqs=none&ssl_check_hostname=FALSE"
                      "&ssl_certfile=/c.pem&ssl_keyfile=/k.pem";
    CHECK(redis_url_parse(tls, strlen(tls), &u, &err) == CACHE_OK);
    CHECK(u.tls.ssl == 1 && u.tls.verify == 0 && u.tls.check_hostname == 0);
    CHECK(u.tls.ca_certs && strcmp(u.tls.ca_certs, "/etc/ca x.pem") == 0);
    CHECK(u.tls.certfile && strcmp(u.tls.certfile, "/c.pem") == 0);
    CHECK(u.tls.keyfile && strcmp(u.tls.keyfile, "/k.pem") == 0);
    CHECK(strcmp(u.host, "h") == 0 && u.port == 6380 && u.db == 2);
    redis_url_free(&u);
    const char *upper = "REDISS://h?ssl_cert_reqs=required&ssl_check_hostname=1";
    CHECK(redis_url_parse(upper, strlen(upper), &u, &err) == CACHE_OK);
    CHECK(u.tls.ssl == 1 && u.tls.verify == 1 && u.tls.check_hostname == 1);
    redis_url_free(&u);
    const char *bad[] = {"rediss://h?ssl_cert_reqs=optional",
                         "rediss://h?ssl_check_hostname=maybe",
                         "rediss://h?ssl_ca_certs=%00", "rediss://h?ssl_nope=1",
                         "redisss://h"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(redis_url_parse(bad[i], strlen(bad[i]), &u, &err) == CACHE_EINVAL);
}

static void option_checks(void)
{
    cache_err err;
    redis_tls *t = NULL;
    redis_tls_opts o;
    redis_tls_opts_init(&o);
    /* nothing asks for TLS: no context */
    CHECK(redis_tls_setup(&o, 0, &t, &err) == CACHE_OK && t == NULL);
    /* files without TLS would be ignored: refused */
    o.ca_certs = strdup("/nonexistent");
    CHECK(redis_tls_setup(&o, 0, &t, &err) == CACHE_EINVAL && t == NULL);
    CHECK(strstr(err.msg, "ssl_ca_certs") != NULL);
    /* asked for, the missing file is named */
    o.ssl = 1;
    CHECK(redis_tls_setup(&o, 0, &t, &err) == CACHE_EINVAL && t == NULL);
    CHECK(strstr(err.msg, "/nonexistent") != NULL);
    redis_tls_opts_free(&o);
    /* sentinel_ssl alone makes a context */
    o.verify = 0;
    CHECK(redis_tls_setup(&o, 1, &t, &err) == CACHE_OK && t != NULL);
    redis_tls_unref(t);
    /* a name check on an unverified certificate means nothing: refused */
    o.check_hostname = 1;
    CHECK(redis_tls_setup(&o, 1, &t, &err) == CACHE_EINVAL && t == NULL);
    CHECK(strstr(err.msg, "ssl_check_hostname") != NULL);
    redis_tls_opts_free(&o);
}

static const char *tls_port, *tls_certs;

static void int_bytes(cache_buf *b, int64_t v)
{
    cache_writer w;
    b->len = 0;
    cache_writer_init(&w, b);
    cache_write_int(&w, v);
}

static void fork_safety(void)
{
    char ca[512];
    snprintf(ca, sizeof ca, "%s/ca.crt", tls_certs);
    cache_opt items[5] = {
        {.name = "host", .type = CACHE_OPT_STR, .s = "127.0.0.1", .slen = 9},
        {.name = "port", .type = CACHE_OPT_INT, .i = atoi(tls_port), .n = atoi(tls_port)},
        {.name = "key_prefix", .type = CACHE_OPT_STR, .s = "ctest-tls-fork:", .slen = 15},
        {.name = "ssl", .type = CACHE_OPT_BOOL, .b = 1},
        {.name = "ssl_ca_certs", .type = CACHE_OPT_STR, .s = ca, .slen = strlen(ca)},
    };
    cache_opts opts = {items, 5};
    cache_err err;
    cache_backend *b = cache_open("RedisCache", &opts, &err);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_buf out, v;
    cache_buf_init(&out);
    cache_buf_init(&v);
    for (int i = 0; i < 2; i++) {
        int_bytes(&v, i);
        cache_str key = {i == 0 ? "a" : "b", 1};
        CHECK(cache_set(b, key, (cache_str){v.data, v.len}, 0, &err) == CACHE_OK);
    }
    int64_t n;
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        for (int r = 0; r < 500; r++) {
            out.len = 0;
            if (cache_get(b, S("b"), &out, &err) != CACHE_OK ||
                !cache_value_as_int((cache_str){out.data, out.len}, &n) || n != 1)
                bad++;
        }
        _exit(bad ? 1 : 0);
    }
    int bad = 0;
    for (int r = 0; r < 500; r++) {
        out.len = 0;
        if (cache_get(b, S("a"), &out, &err) != CACHE_OK ||
            !cache_value_as_int((cache_str){out.data, out.len}, &n) || n != 0)
            bad++;
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(bad == 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* the parent's session still works after the child's exit */
    out.len = 0;
    CHECK(cache_get(b, S("b"), &out, &err) == CACHE_OK);
    CHECK(cache_clear(b, &err) == CACHE_OK);
    cache_close(b);
    cache_buf_free(&out);
    cache_buf_free(&v);
}

int main(void)
{
    RUN(rediss_urls);
    RUN(option_checks);
    tls_port = getenv("CACHE_TEST_TLS_PORT");
    tls_certs = getenv("CACHE_TEST_TLS_CERTS");
    if (tls_port && tls_certs)
        RUN(fork_safety);
    else
        SKIP(fork_safety, "no TLS redis (spec/servers/redis_tls.sh)");
    CTEST_END();
}
