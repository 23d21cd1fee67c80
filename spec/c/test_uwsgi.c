#define _GNU_SOURCE
/*
 * test_uwsgi.c - UWSGICache from C: the pure protocol (request bytes, reply
 * parsing on fixtures and on random and mutated bytes), then the backend
 * against a real uWSGI: CACHE_TEST_UWSGI / CACHE_TEST_UWSGI_SOCKET when the
 * suite started one, else one started here with spec/servers/uwsgi.sh
 * (skipped when uwsgi is not installed).
 */
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "ctest.h"
#include "../../backends/uwsgi/uwsgi_proto.h"

cache_backend *cache_uwsgi_create(cache_opts *opts, cache_err *err);

static cache_str S(const char *s) { return (cache_str){s, strlen(s)}; }
static cache_str SN(const char *s, size_t n) { return (cache_str){s, n}; }
static const cache_str NONE = {NULL, 0};

/* ---- the protocol without sockets ----------------------------------------- */

static void request_get_bytes(void)
{
    cache_buf b;
    cache_buf_init(&b);
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_GET, S("c"), S("k"), NONE, 0,
                              NULL) == CACHE_OK);
    static const char want[] = "\x6f\x1c\x00\x11"
                               "\x03\x00" "cmd" "\x03\x00" "get"
                               "\x03\x00" "key" "\x01\x00" "k"
                               "\x05\x00" "cache" "\x01\x00" "c";
    CHECK(b.len == sizeof want - 1);
    CHECK(memcmp(b.data, want, sizeof want - 1) == 0);
    cache_buf_free(&b);
}

static void request_update_bytes(void)
{
    cache_buf b;
    cache_buf_init(&b);
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_UPDATE, S("lazyc"), SN("a\0b", 3),
                              S("VAL"), 42, NULL) == CACHE_OK);
    static const char want[] = "\x6f\x00\x00\x11"
                               "\x03\x00" "cmd" "\x06\x00" "update"
                               "\x03\x00" "key" "\x03\x00" "a\0b"
                               "\x04\x00" "size" "\x01\x00" "3"
                               "\x07\x00" "expires" "\x02\x00" "42"
                               "\x05\x00" "cache" "\x05\x00" "lazyc"
                               "VAL";
    size_t vars = sizeof want - 1 - 4 - 3;
    CHECK(b.len == sizeof want - 1);
    CHECK((unsigned char)b.data[1] == vars && b.data[2] == 0);
    CHECK(memcmp(b.data + 4, want + 4, sizeof want - 1 - 4) == 0);
    cache_buf_free(&b);
}

static void request_clear_default_cache(void)
{
    cache_buf b;
    cache_buf_init(&b);
    /* No key var for clear, no cache var for an empty name, no expires var
     * for 0. */
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_CLEAR, NONE, NONE, NONE, 0,
                              NULL) == CACHE_OK);
    CHECK(b.len == 4 + 2 + 3 + 2 + 5);
    CHECK(memcmp(b.data + 4, "\x03\x00" "cmd" "\x05\x00" "clear", 12) == 0);
    b.len = 0;
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_UPDATE, NONE, S("k"), S("v"), 0,
                              NULL) == CACHE_OK);
    CHECK(memmem(b.data, b.len, "expires", 7) == NULL);
    cache_buf_free(&b);
}

static void request_limits(void)
{
    cache_buf b;
    cache_buf_init(&b);
    cache_err err = {0, ""};
    char *big = malloc(UWSGI_KEY_MAX + 1);
    memset(big, 'k', UWSGI_KEY_MAX + 1);
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_UPDATE, NONE, S("k"), NONE, 0,
                              &err) == CACHE_EINVAL);
    CHECK(strstr(err.msg, "zero-length") != NULL);
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_GET, NONE, SN(big, UWSGI_KEY_MAX + 1),
                              NONE, 0, &err) == CACHE_EINVAL);
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_GET, NONE, NONE, NONE, 0, &err) ==
          CACHE_EINVAL);
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_GET, SN(big, UWSGI_NAME_MAX + 1),
                              S("k"), NONE, 0, &err) == CACHE_EINVAL);
    CHECK(b.len == 0);
    /* The largest legal request stays within uWSGI's 4096-byte buffer. */
    CHECK(uwsgi_proto_request(&b, UWSGI_CMD_UPDATE, SN(big, UWSGI_NAME_MAX),
                              SN(big, UWSGI_KEY_MAX), S("v"), 10000000000ULL,
                              &err) == CACHE_OK);
    size_t pkt = (unsigned char)b.data[1] | ((unsigned char)b.data[2] << 8);
    CHECK(pkt == b.len - 4 - 1);
    CHECK(pkt <= 4096);
    free(big);
    cache_buf_free(&b);
}

static void key_mapping(void)
{
    char buf[UWSGI_DIGEST_KEY_LEN + 1];
    cache_str m;
    CHECK(uwsgi_proto_map_key(S("plain"), buf, &m) == 0);
    CHECK(m.len == 5 && memcmp(m.ptr, "plain", 5) == 0);
    /* sha256("") */
    CHECK(uwsgi_proto_map_key(SN("", 0), buf, &m) == 0);
    CHECK(m.len == 65 && memcmp(m.ptr, "#e3b0c44298fc1c149afbf4c8996fb924"
                                       "27ae41e4649b934ca495991b7852b855",
                                65) == 0);
    char *k = malloc(3000);
    memset(k, 'x', 3000);
    CHECK(uwsgi_proto_map_key(SN(k, UWSGI_KEY_MAX), buf, &m) == 0);
    CHECK(m.ptr == k && m.len == UWSGI_KEY_MAX);
    CHECK(uwsgi_proto_map_key(SN(k, UWSGI_KEY_MAX + 1), buf, &m) == 0);
    CHECK(m.len == 65 && m.ptr[0] == '#');
    char first[66];
    memcpy(first, m.ptr, 65);
    CHECK(uwsgi_proto_map_key(SN(k, 3000), buf, &m) == 0);
    CHECK(memcmp(first, m.ptr, 65) != 0); /* different keys, different forms */
    CHECK(uwsgi_proto_map_key(SN(k, UWSGI_KEY_MAX + 1), buf, &m) == 0);
    CHECK(memcmp(first, m.ptr, 65) == 0); /* deterministic */
    free(k);
    /* A key starting with '#' is mapped too, so the digest form of the
     * empty key, sent as a key, does not reach the empty key's entry. */
    char lookalike[66];
    CHECK(uwsgi_proto_map_key(SN("", 0), buf, &m) == 0);
    memcpy(lookalike, m.ptr, 65);
    CHECK(uwsgi_proto_map_key(SN(lookalike, 65), buf, &m) == 0);
    CHECK(m.len == 65 && m.ptr == buf && memcmp(m.ptr, lookalike, 65) != 0);
    CHECK(uwsgi_proto_map_key(S("#"), buf, &m) == 0 && m.ptr == buf);
    CHECK(uwsgi_proto_map_key(S("a#"), buf, &m) == 0 && m.len == 2);
}

static void expires_rounding(void)
{
    CHECK(uwsgi_proto_expires(0, 100) == 0);
    CHECK(uwsgi_proto_expires(-1, 100) == 0);
    CHECK(uwsgi_proto_expires(NAN, 100) == 0);
    CHECK(uwsgi_proto_expires(1, 100.0) == 1);
    CHECK(uwsgi_proto_expires(1, 100.95) == 2);  /* deadline 101.95 -> 102 */
    CHECK(uwsgi_proto_expires(0.2, 100.0) == 1);
    CHECK(uwsgi_proto_expires(0.2, 100.9) == 2); /* 101.1 -> 102 */
    CHECK(uwsgi_proto_expires(300, 1700000000.5) == 301);
    CHECK(uwsgi_proto_expires(1e300, 1700000000.5) == 10000000000ULL);
    CHECK(uwsgi_proto_expires(INFINITY, 1.0) == 10000000000ULL);
}

/* An increment sends back what is left of the deadline a get reported. */
static void keep_expires(void)
{
    uint64_t e = 99;
    CHECK(uwsgi_proto_keep_expires(0, 100.5, &e) == 0 && e == 0); /* none */
    CHECK(uwsgi_proto_keep_expires(102, 100.0, &e) == 0 && e == 2);
    /* the server adds floor(its clock): 100 + 2 = 102 again */
    CHECK(uwsgi_proto_keep_expires(102, 100.99, &e) == 0 && e == 2);
    CHECK(uwsgi_proto_keep_expires(101, 100.5, &e) == 0 && e == 1);
    CHECK(uwsgi_proto_keep_expires(100, 100.5, &e) == -1); /* expired */
    CHECK(uwsgi_proto_keep_expires(7, 100.5, &e) == -1);
    CHECK(uwsgi_proto_keep_expires(UINT64_MAX, 100.5, &e) == 0 &&
          e == 10000000000ULL);
}

/* A reply packet: vars from pairs, then a body. */
static size_t reply(unsigned char *out, const char *const *kv, size_t n,
                    const char *body, size_t blen)
{
    size_t i = 4;
    for (size_t j = 0; j < n; j++) {
        size_t l = strlen(kv[j]);
        out[i] = l & 0xff;
        out[i + 1] = l >> 8;
        memcpy(out + i + 2, kv[j], l);
        i += 2 + l;
    }
    out[0] = 111;
    out[1] = (i - 4) & 0xff;
    out[2] = (i - 4) >> 8;
    out[3] = 17;
    memcpy(out + i, body, blen);
    return i + blen;
}

static void parse_fixtures(void)
{
    unsigned char b[512];
    uwsgi_reply r;
    cache_err err = {0, ""};
    size_t n, need;

    CHECK(uwsgi_proto_parse_reply("", 0, &r, &err) == CACHE_MISS);

    const char *ok[] = {"status", "ok"};
    n = reply(b, ok, 2, "", 0);
    CHECK(n == 16);
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_OK);
    CHECK(!r.has_value);

    const char *hit[] = {"status", "ok", "size", "11", "expires", "1795318214"};
    n = reply(b, hit, 6, "hello\0world", 11);
    CHECK(uwsgi_proto_reply_need(b, 3, &need, &err) == CACHE_OK && need == 4);
    CHECK(uwsgi_proto_reply_need(b, 4, &need, &err) == CACHE_OK &&
          need == n - 11);
    CHECK(uwsgi_proto_reply_need(b, n - 11, &need, &err) == CACHE_OK &&
          need == n);
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_OK);
    CHECK(r.has_value && r.value_len == 11 &&
          memcmp(r.value, "hello\0world", 11) == 0);
    CHECK(r.expires == 1795318214ULL);
    /* trailing bytes are ignored */
    memcpy(b + n, "junk", 4);
    CHECK(uwsgi_proto_parse_reply(b, n + 4, &r, &err) == CACHE_OK &&
          r.value_len == 11);
    /* truncated anywhere */
    for (size_t cut = 1; cut < n; cut++)
        CHECK(uwsgi_proto_parse_reply(b, cut, &r, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "truncated") != NULL);

    const char *nf[] = {"status", "notfound"};
    n = reply(b, nf, 2, "", 0);
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_MISS);
    const char *weird[] = {"status", "maybe"};
    n = reply(b, weird, 2, "", 0);
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_FAIL);
    const char *nostatus[] = {"size", "1"};
    n = reply(b, nostatus, 2, "x", 1);
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_FAIL);
    const char *badsize[] = {"status", "ok", "size", "1x"};
    n = reply(b, badsize, 4, "x", 1);
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_FAIL);
    const char *hugesize[] = {"status", "ok", "size", "99999999999999999999"};
    n = reply(b, hugesize, 4, "x", 1);
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_FAIL);
    const char *toolarge[] = {"status", "ok", "size", "1000000000"};
    n = reply(b, toolarge, 4, "x", 1);
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "too large") != NULL);

    /* not a cache reply: an HTTP answer, other modifiers */
    CHECK(uwsgi_proto_parse_reply("HTTP/1.0 404", 12, &r, &err) == CACHE_FAIL);
    n = reply(b, ok, 2, "", 0);
    b[3] = 0;
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_FAIL);
    /* a var running past the block */
    n = reply(b, ok, 2, "", 0);
    b[4] = 200;
    CHECK(uwsgi_proto_parse_reply(b, n, &r, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "broken vars") != NULL);
    /* a dangling single byte */
    unsigned char odd[5] = {111, 1, 0, 17, 6};
    CHECK(uwsgi_proto_parse_reply(odd, 5, &r, &err) == CACHE_FAIL);
}

static unsigned long long rng_state = 88172645463325252ULL;
static unsigned rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state >> 11);
}

/* Whatever the bytes, parsing answers and a value lies inside them. */
static int parse_is_total(const unsigned char *p, size_t n)
{
    uwsgi_reply r;
    cache_err err = {0, ""};
    size_t need = 0;
    int rc = uwsgi_proto_reply_need(p, n, &need, &err);
    if (rc != CACHE_OK && rc != CACHE_FAIL)
        return 0;
    rc = uwsgi_proto_parse_reply(p, n, &r, &err);
    if (rc != CACHE_OK && rc != CACHE_MISS && rc != CACHE_FAIL)
        return 0;
    if (rc == CACHE_OK && r.has_value &&
        (r.value < (const char *)p ||
         r.value + r.value_len > (const char *)p + n))
        return 0;
    return 1;
}

static void parse_random_and_mutated(void)
{
    unsigned char b[600];
    int bad = 0, oks = 0;
    for (int i = 0; i < 200000; i++) {
        size_t n = rnd() % 300;
        for (size_t j = 0; j < n; j++)
            b[j] = (unsigned char)rnd();
        if (n >= 4 && i % 2) { /* mostly plausible headers */
            b[0] = 111;
            b[3] = 17;
            b[2] = 0;
            b[1] = (unsigned char)(rnd() % (n - 3));
        }
        bad += !parse_is_total(b, n);
    }
    const char *hit[] = {"status", "ok", "size", "5", "expires", "12"};
    unsigned char base[128];
    size_t bn = reply(base, hit, 6, "abcde", 5);
    for (int i = 0; i < 200000; i++) {
        memcpy(b, base, bn);
        size_t n = bn;
        int flips = 1 + rnd() % 4;
        for (int f = 0; f < flips; f++)
            b[rnd() % bn] = (unsigned char)rnd();
        if (rnd() % 3 == 0)
            n = rnd() % (bn + 1);
        bad += !parse_is_total(b, n);
        uwsgi_reply r;
        oks += uwsgi_proto_parse_reply(b, n, &r, NULL) == CACHE_OK;
    }
    printf("  fuzz: 400000 inputs, %d mutated replies still parsed ok\n", oks);
    CHECK(bad == 0);
}

/* ---- the backend against a server ------------------------------------------ */

static cache_backend *open_uwsgi(const char *spec, double timeout,
                                 cache_err *err)
{
    cache_opt items[2];
    memset(items, 0, sizeof items);
    items[0].name = "cache";
    items[0].type = CACHE_OPT_STR;
    items[0].s = spec;
    items[0].slen = strlen(spec);
    items[1].name = "timeout";
    items[1].type = CACHE_OPT_NUM;
    items[1].n = timeout;
    cache_opts o = {items, 2};
    return cache_uwsgi_create(&o, err);
}

static int bget(cache_backend *b, cache_str k, cache_buf *out, cache_err *e)
{
    out->len = 0;
    return b->vt->get(b, k, out, e);
}

static char addr_tcp[256], addr_unix[512];

static void options_and_errors(void)
{
    cache_err err = {0, ""};
    CHECK(open_uwsgi("mycache", 1, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL);
    CHECK(strcmp(err.msg, "option 'cache': 'mycache' has no address; "
                          "outside uWSGI give 'name@host:port'") == 0);
    CHECK(open_uwsgi("", 1, &err) == NULL);
    CHECK(open_uwsgi("c@localhost", 1, &err) == NULL);
    CHECK(strstr(err.msg, "host:port or /path/to.sock") != NULL);
    CHECK(open_uwsgi("c@h:99999", 1, &err) == NULL);
    CHECK(open_uwsgi("c@:80", 1, &err) == NULL);
    CHECK(open_uwsgi("c@[::1", 1, &err) == NULL);
    cache_backend *b = open_uwsgi("c@[::1]:3031", 1, &err);
    CHECK(b != NULL);
    cache_close(b);
    b = open_uwsgi("c@/tmp/x.sock", 1, &err);
    CHECK(b != NULL);
    CHECK(b && b->vt->incr != NULL); /* get + update, keeping the expiry */
    cache_close(b);
}

static void server_down(void)
{
    cache_err err = {0, ""};
    /* A port that was free a moment ago, and a socket path that is not. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    char spec[64];
    snprintf(spec, sizeof spec, "lazyc@127.0.0.1:%d", ntohs(a.sin_port));
    cache_backend *b = open_uwsgi(spec, 1, &err);
    cache_buf out;
    cache_buf_init(&out);
    double t0 = cache_monotonic_now();
    CHECK(bget(b, S("k"), &out, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "Connection refused") != NULL);
    CHECK(b->vt->set(b, S("k"), S("v"), 0, 0, &err) == CACHE_FAIL);
    CHECK(b->vt->del(b, S("k"), &err) == CACHE_FAIL);
    CHECK(b->vt->has(b, S("k"), &err) == CACHE_FAIL);
    CHECK(b->vt->clear(b, &err) == CACHE_FAIL);
    CHECK(cache_monotonic_now() - t0 < 0.5);
    cache_close(b);
    b = open_uwsgi("lazyc@/nonexistent/uwsgi.sock", 1, &err);
    CHECK(bget(b, S("k"), &out, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "No such file") != NULL);
    cache_close(b);
    cache_buf_free(&out);
}

/* A listener that never answers: the call ends at its timeout. */
static void silent_server_times_out(void)
{
    cache_err err = {0, ""};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(s, 8) == 0);
    getsockname(s, (struct sockaddr *)&a, &al);
    char spec[64];
    snprintf(spec, sizeof spec, "c@127.0.0.1:%d", ntohs(a.sin_port));
    cache_backend *b = open_uwsgi(spec, 0.3, &err);
    cache_buf out;
    cache_buf_init(&out);
    double t0 = cache_monotonic_now();
    CHECK(bget(b, S("k"), &out, &err) == CACHE_FAIL);
    double dt = cache_monotonic_now() - t0;
    CHECK(strstr(err.msg, "timed out") != NULL);
    CHECK(dt >= 0.25 && dt < 1.0);
    cache_close(b);
    cache_buf_free(&out);
    close(s);
}

/* A server answering garbage (here an HTTP reply) gives a failure. */
static void garbage_server(void)
{
    cache_err err = {0, ""};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    listen(s, 8);
    getsockname(s, (struct sockaddr *)&a, &al);
    pid_t pid = fork();
    if (pid == 0) {
        int c = accept(s, NULL, NULL);
        char junk[256];
        (void)!read(c, junk, sizeof junk);
        (void)!write(c, "HTTP/1.0 404 Not Found\r\n\r\n", 26);
        close(c);
        _exit(0);
    }
    char spec[64];
    snprintf(spec, sizeof spec, "c@127.0.0.1:%d", ntohs(a.sin_port));
    cache_backend *b = open_uwsgi(spec, 1, &err);
    cache_buf out;
    cache_buf_init(&out);
    CHECK(bget(b, S("k"), &out, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "not a cache reply") != NULL);
    CHECK(out.len == 0);
    waitpid(pid, NULL, 0);
    cache_close(b);
    cache_buf_free(&out);
    close(s);
}

static void roundtrip_on(const char *addr)
{
    cache_err err = {0, ""};
    char spec[600];
    snprintf(spec, sizeof spec, "lazyc@%s", addr);
    cache_backend *b = open_uwsgi(spec, 1, &err);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_buf out;
    cache_buf_init(&out);
    CHECK(b->vt->clear(b, &err) == CACHE_OK);
    CHECK(bget(b, S("a"), &out, &err) == CACHE_MISS);
    CHECK(b->vt->set(b, S("a"), SN("x\0y", 3), 0, 0, &err) == CACHE_OK);
    CHECK(bget(b, S("a"), &out, &err) == CACHE_OK);
    CHECK(out.len == 3 && memcmp(out.data, "x\0y", 3) == 0);
    CHECK(b->vt->set(b, S("a"), S("second"), 0, 0, &err) == CACHE_OK);
    CHECK(bget(b, S("a"), &out, &err) == CACHE_OK && out.len == 6);
    CHECK(b->vt->has(b, S("a"), &err) == CACHE_OK);
    CHECK(b->vt->has(b, S("nope"), &err) == CACHE_MISS);
    /* add */
    CHECK(b->vt->set(b, S("a"), S("third"), 0, 1, &err) == CACHE_EXISTS);
    CHECK(bget(b, S("a"), &out, &err) == CACHE_OK && out.len == 6);
    CHECK(b->vt->set(b, S("b"), S("B"), 0, 1, &err) == CACHE_OK);
    CHECK(bget(b, S("b"), &out, &err) == CACHE_OK && out.len == 1);
    /* delete */
    CHECK(b->vt->del(b, S("a"), &err) == CACHE_OK);
    CHECK(b->vt->del(b, S("a"), &err) == CACHE_MISS);
    CHECK(bget(b, S("a"), &out, &err) == CACHE_MISS);
    /* negative ttl: gone; add with a negative ttl only checks */
    CHECK(b->vt->set(b, S("b"), S("B"), -1, 0, &err) == CACHE_OK);
    CHECK(b->vt->has(b, S("b"), &err) == CACHE_MISS);
    CHECK(b->vt->set(b, S("b"), S("B"), -1, 1, &err) == CACHE_OK);
    CHECK(b->vt->set(b, S("c"), S("C"), 0, 0, &err) == CACHE_OK);
    CHECK(b->vt->set(b, S("c"), S("C"), -1, 1, &err) == CACHE_EXISTS);
    /* clear */
    CHECK(b->vt->clear(b, &err) == CACHE_OK);
    CHECK(b->vt->has(b, S("c"), &err) == CACHE_MISS);
    cache_buf_free(&out);
    cache_close(b);
}

static void roundtrip_tcp(void) { roundtrip_on(addr_tcp); }
static void roundtrip_unix(void) { roundtrip_on(addr_unix); }

static void awkward_keys(void)
{
    cache_err err = {0, ""};
    char spec[300];
    snprintf(spec, sizeof spec, "lazyc@%s", addr_tcp);
    cache_backend *b = open_uwsgi(spec, 1, &err);
    cache_buf out;
    cache_buf_init(&out);
    char *k3000 = malloc(3000), *k2001 = malloc(2001);
    memset(k3000, 'k', 3000);
    memset(k2001, 'k', 2001);
    cache_str keys[] = {SN("a\r\nb", 4), SN("nul\0key", 7), S("with spaces"),
                        S("cmd"), SN("", 0), SN(k3000, 3000),
                        SN(k3000, UWSGI_KEY_MAX), SN(k2001, 2001)};
    size_t n = sizeof keys / sizeof *keys;
    for (size_t i = 0; i < n; i++) {
        char v[8];
        snprintf(v, sizeof v, "v%zu", i);
        CHECK(b->vt->set(b, keys[i], S(v), 0, 0, &err) == CACHE_OK);
    }
    for (size_t i = 0; i < n; i++) {
        char v[8];
        snprintf(v, sizeof v, "v%zu", i);
        CHECK(bget(b, keys[i], &out, &err) == CACHE_OK);
        CHECK(out.len == strlen(v) && memcmp(out.data, v, out.len) == 0);
    }
    /* neighbours untouched */
    CHECK(bget(b, S("a"), &out, &err) == CACHE_MISS);
    CHECK(bget(b, SN("nul", 3), &out, &err) == CACHE_MISS);
    for (size_t i = 0; i < n; i++)
        CHECK(b->vt->del(b, keys[i], &err) == CACHE_OK);
    free(k3000);
    free(k2001);
    cache_buf_free(&out);
    cache_close(b);
}

static void value_sizes(void)
{
    cache_err err = {0, ""};
    char spec[300];
    snprintf(spec, sizeof spec, "lazyc@%s", addr_tcp);
    cache_backend *b = open_uwsgi(spec, 1, &err);
    cache_buf out;
    cache_buf_init(&out);
    char *v = malloc(200000);
    for (int i = 0; i < 200000; i++)
        v[i] = (char)(i * 7);
    CHECK(b->vt->set(b, S("max"), SN(v, 65536), 0, 0, &err) == CACHE_OK);
    CHECK(bget(b, S("max"), &out, &err) == CACHE_OK);
    CHECK(out.len == 65536 && memcmp(out.data, v, 65536) == 0);
    CHECK(b->vt->set(b, S("over"), SN(v, 65537), 0, 0, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "value too large or server refused") != NULL);
    CHECK(b->vt->set(b, S("over"), SN(v, 200000), 0, 1, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "value too large or server refused") != NULL);
    CHECK(b->vt->set(b, S("max"), SN(v, 70000), 0, 1, &err) == CACHE_EXISTS);
    /* so large that the server resets the connection while we still send
     * (SIGPIPE is left deadly by main: MSG_NOSIGNAL must hold) */
    char *huge = calloc(1, 5000000);
    CHECK(b->vt->set(b, S("huge"), SN(huge, 5000000), 0, 0, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "value too large or server refused") != NULL);
    free(huge);
    CHECK(b->vt->set(b, S("zero"), SN(v, 0), 0, 0, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "zero-length") != NULL);
    /* the failed calls left the server fine */
    CHECK(bget(b, S("max"), &out, &err) == CACHE_OK && out.len == 65536);
    CHECK(b->vt->del(b, S("max"), &err) == CACHE_OK);
    free(v);
    cache_buf_free(&out);
    cache_close(b);
}

static void unknown_cache_name(void)
{
    cache_err err = {0, ""};
    char spec[300];
    snprintf(spec, sizeof spec, "nosuchcache@%s", addr_tcp);
    cache_backend *b = open_uwsgi(spec, 1, &err);
    cache_buf out;
    cache_buf_init(&out);
    CHECK(bget(b, S("k"), &out, &err) == CACHE_MISS);
    CHECK(b->vt->set(b, S("k"), S("v"), 0, 0, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "unknown cache name") != NULL);
    CHECK(b->vt->clear(b, &err) == CACHE_FAIL);
    cache_buf_free(&out);
    cache_close(b);
}

static void expiry(void)
{
    cache_err err = {0, ""};
    char spec[300];
    snprintf(spec, sizeof spec, "lazyc@%s", addr_tcp);
    cache_backend *b = open_uwsgi(spec, 1, &err);
    cache_buf out;
    cache_buf_init(&out);
    double t0 = cache_wall_now();
    CHECK(b->vt->set(b, S("t"), S("v"), 1, 0, &err) == CACHE_OK);
    CHECK(b->vt->set(b, S("forever"), S("v"), 0, 0, &err) == CACHE_OK);
    usleep(900000);
    /* never early: still there 0.9 s later */
    if (cache_wall_now() - t0 < 1.0)
        CHECK(bget(b, S("t"), &out, &err) == CACHE_OK);
    usleep(1200000);
    /* and gone within the following second */
    CHECK(bget(b, S("t"), &out, &err) == CACHE_MISS);
    CHECK(b->vt->has(b, S("t"), &err) == CACHE_MISS);
    CHECK(b->vt->set(b, S("t"), S("again"), 1, 1, &err) == CACHE_OK);
    CHECK(bget(b, S("forever"), &out, &err) == CACHE_OK);
    /* set resets the TTL: 0 means never */
    CHECK(b->vt->set(b, S("t"), S("v"), 0, 0, &err) == CACHE_OK);
    usleep(2100000);
    CHECK(bget(b, S("t"), &out, &err) == CACHE_OK);
    b->vt->del(b, S("t"), &err);
    b->vt->del(b, S("forever"), &err);
    cache_buf_free(&out);
    cache_close(b);
}

/* ---- a server of our own when the suite did not start one ------------------ */

static char own_dir[64];

static int start_own_server(void)
{
    strcpy(own_dir, "/tmp/test_uwsgi.XXXXXX");
    if (!mkdtemp(own_dir))
        return -1;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "bash spec/servers/uwsgi.sh start %s 2>/dev/null",
             own_dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[700];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        char *eq = strchr(line, '=');
        if (strncmp(line, "export ", 7) || !eq)
            continue;
        *eq = 0;
        setenv(line + 7, eq + 1, 1);
    }
    return pclose(p) == 0 ? 0 : -1;
}

static void stop_own_server(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "bash spec/servers/uwsgi.sh stop %s >/dev/null 2>&1; rm -rf %s",
             own_dir, own_dir);
    (void)!system(cmd);
}

int main(void)
{
    /* SIGPIPE left deadly, as in a plain Lua host: the backend must never
     * raise it (a server that closes early meets MSG_NOSIGNAL). */
    signal(SIGPIPE, SIG_DFL);
    RUN(request_get_bytes);
    RUN(request_update_bytes);
    RUN(request_clear_default_cache);
    RUN(request_limits);
    RUN(key_mapping);
    RUN(expires_rounding);
    RUN(keep_expires);
    RUN(parse_fixtures);
    RUN(parse_random_and_mutated);
    RUN(options_and_errors);
    RUN(server_down);
    RUN(silent_server_times_out);
    RUN(garbage_server);

    int own = 0;
    if (!getenv("CACHE_TEST_UWSGI") && system("command -v uwsgi >/dev/null") == 0) {
        own = start_own_server() == 0;
        if (!own)
            stop_own_server();
    }
    const char *tcp = getenv("CACHE_TEST_UWSGI");
    const char *unx = getenv("CACHE_TEST_UWSGI_SOCKET");
    if (tcp) {
        snprintf(addr_tcp, sizeof addr_tcp, "%s", tcp);
        RUN(roundtrip_tcp);
        RUN(awkward_keys);
        RUN(value_sizes);
        RUN(unknown_cache_name);
        RUN(expiry);
    } else {
        SKIP(roundtrip_tcp, "no uWSGI server (CACHE_TEST_UWSGI unset)");
    }
    if (unx) {
        snprintf(addr_unix, sizeof addr_unix, "%s", unx);
        RUN(roundtrip_unix);
    } else {
        SKIP(roundtrip_unix, "no uWSGI unix socket (CACHE_TEST_UWSGI_SOCKET unset)");
    }
    if (own)
        stop_own_server();
    CTEST_END();
}
