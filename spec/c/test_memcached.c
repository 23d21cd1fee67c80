#define _POSIX_C_SOURCE 200809L
/*
 * test_memcached.c - the memcached backends' pure parts from C (key mapping,
 * expiry, the stored form of values) and, when CACHE_TEST_MEMCACHED names a
 * server (spec/servers/memcached.sh), a few calls through cache_open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../backends/memcached/memcached.h"
#include "codec.h"
#include "ctest.h"
#include "digest.h"

static mc_backend with_prefix(const char *p)
{
    mc_backend b;
    memset(&b, 0, sizeof b);
    b.prefix = (char *)p;
    b.prefix_len = strlen(p);
    return b;
}

static cache_str S(const char *s) { return (cache_str){s, strlen(s)}; }

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

static void keys_valid_are_kept(void)
{
    mc_backend b = with_prefix("app:");
    mc_key k;
    mc_key_make(&b, S("user:1"), NULL, 0, &k);
    CHECK(k.len == 10 && memcmp(k.s, "app:user:1", 10) == 0);
    mc_key_make(&b, S("big"), ".3", 2, &k);
    CHECK(k.len == 9 && memcmp(k.s, "app:big.3", 9) == 0);
    char long_ok[251];
    memset(long_ok, 'x', 246);
    long_ok[246] = '\0';
    mc_key_make(&b, S(long_ok), NULL, 0, &k); /* 4 + 246 = 250 */
    CHECK(k.len == 250 && memcmp(k.s + 4, long_ok, 246) == 0);
}

static void keys_invalid_are_hashed(void)
{
    mc_backend b = with_prefix("app:");
    const char *bad[] = {"a b", "x\r\nset evil 0 0 1\r\nZ", "tab\t", "\x7f", "\xff\xfe"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mc_key k;
        mc_key_make(&b, S(bad[i]), NULL, 0, &k);
        CHECK(k.len == 4 + 1 + 64);
        CHECK(memcmp(k.s, "app:#", 5) == 0);
        CHECK(is_hex(k.s + 5, 64));
        /* the digest is sha256 of prefix + key */
        unsigned char d[CACHE_DIGEST_MAX];
        const void *parts[2] = {"app:", bad[i]};
        size_t lens[2] = {4, strlen(bad[i])};
        char hex[65];
        CHECK(cache_digest(CACHE_SHA256, 2, parts, lens, d) == 32);
        cache_hex(d, 32, hex);
        CHECK(memcmp(k.s + 5, hex, 64) == 0);
    }
    /* NUL inside, 251 bytes, empty: hashed too, and all different */
    mc_key k1, k2, k3;
    mc_key_make(&b, (cache_str){"a\0b", 3}, NULL, 0, &k1);
    mc_key_make(&b, (cache_str){"a\0c", 3}, NULL, 0, &k2);
    mc_key_make(&b, S(""), NULL, 0, &k3);
    CHECK(k1.len == 69 && k2.len == 69);
    CHECK(memcmp(k1.s, k2.s, 69) != 0);
    CHECK(k3.len == 4 && memcmp(k3.s, "app:", 4) == 0); /* "app:" + "" is valid */
    mc_backend none = with_prefix("");
    mc_key_make(&none, S(""), NULL, 0, &k3);
    CHECK(k3.len == 65 && k3.s[0] == '#');
    char long_bad[252];
    memset(long_bad, 'x', 247);
    long_bad[247] = '\0';
    mc_key_make(&b, S(long_bad), NULL, 0, &k1); /* 251 bytes */
    CHECK(k1.len == 69);
    /* a prefix that is itself invalid is not kept in front */
    mc_backend sp = with_prefix("my app:");
    mc_key_make(&sp, S("k"), NULL, 0, &k1);
    CHECK(k1.len == 65 && k1.s[0] == '#');
    /* deterministic */
    mc_key_make(&b, S("a b"), NULL, 0, &k1);
    mc_key_make(&b, S("a b"), NULL, 0, &k2);
    CHECK(k1.len == k2.len && memcmp(k1.s, k2.s, k1.len) == 0);
    /* one-to-one: a key that looks like a mapped one ('#' after the
     * prefix) is mapped too, and differs from the key it imitates */
    char lookalike[70];
    memcpy(lookalike, k1.s + 4, 65);
    lookalike[65] = '\0';
    mc_key_make(&b, S(lookalike), NULL, 0, &k2);
    CHECK(k2.len == 69 && memcmp(k2.s, "app:#", 5) == 0);
    CHECK(memcmp(k1.s, k2.s, 69) != 0);
    mc_key_make(&none, S("#x"), NULL, 0, &k2);
    CHECK(k2.len == 65 && k2.s[0] == '#');
    mc_key_make(&b, S("#"), ".0", 2, &k2);
    CHECK(k2.len == 69);
    mc_key_make(&b, S("x#y"), ".0", 2, &k2); /* '#' elsewhere: kept */
    CHECK(k2.len == 9 && memcmp(k2.s, "app:x#y.0", 9) == 0);
}

static void expiry_rules(void)
{
    time_t e;
    CHECK(mc_expiry(0, &e) == 0 && e == 0);
    CHECK(mc_expiry(0.2, &e) == 0 && e == 1);
    CHECK(mc_expiry(1, &e) == 0 && e == 1);
    CHECK(mc_expiry(1.0001, &e) == 0 && e == 2);
    CHECK(mc_expiry(2592000, &e) == 0 && e == 2592000);
    double now = cache_wall_now();
    CHECK(mc_expiry(2592001, &e) == 0);
    CHECK(e >= (time_t)now + 2592000 && e <= (time_t)now + 2592002);
    CHECK(mc_expiry(1e15, &e) == 0 && e == (time_t)4294967295u);
    CHECK(mc_expiry(-1, &e) == 1);
    CHECK(mc_expiry(-0.001, &e) == 1);
}

static void int_codec(int64_t i, cache_buf *out)
{
    cache_writer w;
    out->len = 0;
    cache_writer_init(&w, out);
    cache_write_int(&w, i);
}

static void stored_form(void)
{
    cache_buf v, out;
    cache_buf_init(&v);
    cache_buf_init(&out);
    char text[24];
    cache_str payload;
    uint32_t flags;
    int64_t got;

    int_codec(42, &v);
    mc_encode((cache_str){v.data, v.len}, text, &payload, &flags);
    CHECK(flags == MC_FLAG_INT && payload.len == 2 && memcmp(payload.ptr, "42", 2) == 0);
    int_codec(-7, &v);
    mc_encode((cache_str){v.data, v.len}, text, &payload, &flags);
    CHECK(flags == MC_FLAG_INT && strcmp(text, "18446744073709551609") == 0);
    CHECK(mc_decode(payload.ptr, payload.len, flags, &out, NULL) == CACHE_OK);
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &got) && got == -7);
    int_codec(INT64_MIN, &v);
    mc_encode((cache_str){v.data, v.len}, text, &payload, &flags);
    out.len = 0;
    CHECK(mc_decode(payload.ptr, payload.len, flags, &out, NULL) == CACHE_OK);
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &got) && got == INT64_MIN);

    /* memcached pads a shrinking incr/decr result with spaces */
    out.len = 0;
    CHECK(mc_decode("29      ", 8, MC_FLAG_INT, &out, NULL) == CACHE_OK);
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &got) && got == 29);

    /* other values: the codec bytes, flag 256, as they are */
    cache_writer w;
    v.len = 0;
    cache_writer_init(&w, &v);
    cache_write_str(&w, "hi", 2);
    mc_encode((cache_str){v.data, v.len}, text, &payload, &flags);
    CHECK(flags == MC_FLAG_CODEC && payload.ptr == v.data && payload.len == 3);

    /* foreign values */
    out.len = 0;
    CHECK(mc_decode("123", 3, 0, &out, NULL) == CACHE_OK);
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &got) && got == 123);
    out.len = 0;
    CHECK(mc_decode("18446744073709551609", 20, 0, &out, NULL) == CACHE_OK);
    CHECK(!cache_value_as_int((cache_str){out.data, out.len}, &got)); /* a string */
    out.len = 0;
    CHECK(mc_decode("hello", 5, 0, &out, NULL) == CACHE_OK);
    CHECK(out.len == 6 && memcmp(out.data + 1, "hello", 5) == 0);
    char marked[8] = "!";
    memcpy(marked + 1, v.data, v.len);
    out.len = 0;
    CHECK(mc_decode(marked, 1 + v.len, 0, &out, NULL) == CACHE_OK);
    CHECK(out.len == v.len && memcmp(out.data, v.data, v.len) == 0);
    out.len = 0;
    cache_err err = {0, ""};
    CHECK(mc_decode("!\xc1", 2, 0, &out, &err) == CACHE_MISS && out.len == 0);
    cache_buf_free(&v);
    cache_buf_free(&out);
}

/* ---- against a server ----------------------------------------------------------- */

/* CACHE_TEST_MEMCACHED (and CACHE_TEST_MEMCACHED2 for a pool of two), or
 * else memcached servers of this test's own on free ports (spec/run.sh runs
 * the C tests before it starts the servers). */
static pid_t own_pid[2];
static char own_addr[2][32];

static int can_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    socklen_t len = sizeof a;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Server number slot (0 or 1): the environment's, or one started here. */
static const char *server_n(int slot, const char *env_name)
{
    const char *env = getenv(env_name);
    if (env)
        return env;
    if (own_addr[slot][0])
        return own_addr[slot];
    int port = free_port();
    if (port == 0)
        return NULL;
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(127);
        if (geteuid() == 0)
            execlp("memcached", "memcached", "-l", "127.0.0.1", "-p", port_s, "-U", "0",
                   "-m", "16", "-u", "root", (char *)NULL);
        else
            execlp("memcached", "memcached", "-l", "127.0.0.1", "-p", port_s, "-U", "0",
                   "-m", "16", (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return NULL;
    own_pid[slot] = pid;
    for (int i = 0; i < 100; i++) { /* at most 5 s */
        if (can_connect(port)) {
            snprintf(own_addr[slot], sizeof own_addr[slot], "127.0.0.1:%d", port);
            return own_addr[slot];
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            own_pid[slot] = 0;
            return NULL; /* not installed, or the port was taken */
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static const char *server_addr(void) { return server_n(0, "CACHE_TEST_MEMCACHED"); }
static const char *server2_addr(void) { return server_n(1, "CACHE_TEST_MEMCACHED2"); }

static void stop_own(void)
{
    for (int i = 0; i < 2; i++)
        if (own_pid[i] > 0) {
            kill(own_pid[i], SIGTERM);
            waitpid(own_pid[i], NULL, 0);
            own_pid[i] = 0;
        }
}

static cache_backend *open_mc(const char *server, const char *prefix)
{
    cache_opt o[2] = {
        {.name = "servers", .type = CACHE_OPT_STR, .s = server, .slen = strlen(server)},
        {.name = "key_prefix", .type = CACHE_OPT_STR, .s = prefix, .slen = strlen(prefix)},
    };
    cache_opts opts = {o, 2};
    cache_err err = {0, ""};
    cache_backend *b = cache_open("MemcachedCache", &opts, &err);
    if (!b)
        printf("  open: %s\n", err.msg);
    return b;
}

static void server_roundtrip(void)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "ctest:%ld:", (long)cache_wall_now());
    cache_backend *b = open_mc(server_addr(), prefix);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_err err = {0, ""};
    cache_buf v, out;
    cache_buf_init(&v);
    cache_buf_init(&out);
    int_codec(5, &v);
    CHECK(cache_set(b, S("n"), (cache_str){v.data, v.len}, 0, &err) == CACHE_OK);
    int64_t r = 0;
    CHECK(cache_incr(b, S("n"), -10, 300, &r, &err) == CACHE_OK && r == -5);
    CHECK(cache_incr(b, S("new"), -3, 300, &r, &err) == CACHE_OK && r == -3);
    CHECK(cache_get(b, S("n"), &out, &err) == CACHE_OK);
    int64_t got;
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &got) && got == -5);
    CHECK(cache_del(b, S("n"), &err) == CACHE_OK);
    CHECK(cache_del(b, S("n"), &err) == CACHE_MISS);
    CHECK(cache_has(b, S("new"), &err) == CACHE_OK);
    cache_close(b);
    cache_buf_free(&v);
    cache_buf_free(&out);
}

/* A backend used before fork() and then in both processes at once: each
 * must get its own answers (the child gets connections of its own). */
static int hammer(cache_backend *b, const char *who, int rounds)
{
    cache_err err = {0, ""};
    cache_buf v, out;
    cache_buf_init(&v);
    cache_buf_init(&out);
    int bad = 0;
    for (int i = 0; i < rounds; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s:%d", who, i % 50);
        int_codec(i, &v);
        if (cache_set(b, S(key), (cache_str){v.data, v.len}, 0, &err) != CACHE_OK)
            bad++;
        out.len = 0;
        int64_t got = -1;
        if (cache_get(b, S(key), &out, &err) != CACHE_OK ||
            !cache_value_as_int((cache_str){out.data, out.len}, &got) || got != i)
            bad++;
    }
    cache_buf_free(&v);
    cache_buf_free(&out);
    return bad;
}

static void server_fork(void)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "fork:%ld:", (long)cache_wall_now());
    cache_backend *b = open_mc(server_addr(), prefix);
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK(hammer(b, "before", 20) == 0); /* connected before fork */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = hammer(b, "child", 3000);
        cache_close(b); /* must not close the parent's connection */
        _exit(bad ? 1 : 0);
    }
    int bad = hammer(b, "parent", 3000);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(bad == 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(hammer(b, "after", 20) == 0); /* the child's close left us alone */
    cache_close(b);
}

/* keys name0 .. name19 set to 0 .. 19 through b: how many failed */
static int put20(cache_backend *b, const char *name)
{
    cache_err err = {0, ""};
    cache_buf v;
    cache_buf_init(&v);
    int bad = 0;
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s%d", name, i);
        int_codec(i, &v);
        if (cache_set(b, S(key), (cache_str){v.data, v.len}, 0, &err) != CACHE_OK)
            bad++;
    }
    cache_buf_free(&v);
    return bad;
}

/* how many of name0 .. name19 b does not read back as 0 .. 19 */
static int missing20(cache_backend *b, const char *name)
{
    cache_err err = {0, ""};
    cache_buf out;
    cache_buf_init(&out);
    int missing = 0;
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s%d", name, i);
        out.len = 0;
        int64_t got = -1;
        if (cache_get(b, S(key), &out, &err) != CACHE_OK ||
            !cache_value_as_int((cache_str){out.data, out.len}, &got) || got != i)
            missing++;
    }
    cache_buf_free(&out);
    return missing;
}

/* A pool of two used before fork(): the child's own handle must place
 * every key on the server the parent's does, both ways. */
static void server_pool_fork(void)
{
    char servers[80], prefix[64];
    snprintf(servers, sizeof servers, "%s,%s", server_addr(), server2_addr());
    snprintf(prefix, sizeof prefix, "poolfork:%ld:", (long)cache_wall_now());
    cache_backend *b = open_mc(servers, prefix);
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK(put20(b, "parent") == 0); /* connected before fork */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int missed = missing20(b, "parent");
        if (missed)
            printf("  child: %d of 20 parent keys missed\n", missed);
        int bad = put20(b, "child");
        cache_close(b);
        fflush(stdout);
        _exit(missed || bad ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int unseen = missing20(b, "child");
    cache_backend *fresh = open_mc(servers, prefix);
    int unseen_fresh = fresh ? missing20(fresh, "child") : 20;
    if (unseen || unseen_fresh)
        printf("  child keys unseen: %d by the parent, %d by a new object\n",
               unseen, unseen_fresh);
    CHECK(unseen == 0 && unseen_fresh == 0);
    if (fresh)
        cache_close(fresh);
    cache_close(b);
}

static void server_down(void)
{
    /* port 1 on loopback: nothing listens, the connection is refused */
    cache_backend *b = open_mc("127.0.0.1:1", "down:");
    CHECK(b != NULL);
    if (!b)
        return;
    cache_err err = {0, ""};
    cache_buf out;
    cache_buf_init(&out);
    CHECK(cache_get(b, S("k"), &out, &err) == CACHE_FAIL);
    CHECK(strstr(err.msg, "memcached 127.0.0.1:1") != NULL);
    int64_t r;
    CHECK(cache_incr(b, S("k"), 1, 0, &r, &err) == CACHE_FAIL);
    cache_close(b);
    cache_buf_free(&out);
}

int main(void)
{
    RUN(keys_valid_are_kept);
    RUN(keys_invalid_are_hashed);
    RUN(expiry_rules);
    RUN(stored_form);
    RUN(server_down);
    if (server_addr()) {
        RUN(server_roundtrip);
        RUN(server_fork);
        if (server2_addr())
            RUN(server_pool_fork);
        else
            SKIP(server_pool_fork, "no second memcached");
    } else {
        SKIP(server_roundtrip, "no memcached (CACHE_TEST_MEMCACHED unset, none could be started)");
        SKIP(server_fork, "no memcached");
    }
    stop_own();
    CTEST_END();
}
