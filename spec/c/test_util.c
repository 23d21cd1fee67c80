/* test_util.c - the engine's shared helpers: server addresses
 * (hostport.h), random bytes, the codec bytes of an integer, and the
 * MessagePack writer against msgpack-c's packer, byte for byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"
#include "ctest.h"
#include "hostport.h"

/* Parses text with flags; 1 when it parsed to host/path and port. */
static int parses(const char *text, unsigned flags, int dflt, const char *host,
                  const char *path, int port)
{
    cache_hostport hp;
    cache_err err;
    if (cache_hostport_parse(text, strlen(text), flags, dflt, &hp, "x", &err) !=
        CACHE_OK) {
        printf("  '%s': %s\n", text, err.msg);
        return 0;
    }
    int ok = hp.port == port &&
             (host ? hp.host && strcmp(hp.host, host) == 0 : !hp.host) &&
             (path ? hp.path && strcmp(hp.path, path) == 0 : !hp.path);
    if (!ok)
        printf("  '%s': got host '%s' path '%s' port %d\n", text,
               hp.host ? hp.host : "(null)", hp.path ? hp.path : "(null)",
               hp.port);
    cache_hostport_free(&hp);
    return ok;
}

/* 1 when text is refused with CACHE_EINVAL and a message holding part. */
static int refused(const char *text, unsigned flags, const char *part)
{
    cache_hostport hp;
    cache_err err;
    int rc = cache_hostport_parse(text, strlen(text), flags, 1, &hp,
                                  "option 'servers'", &err);
    if (rc == CACHE_OK) {
        cache_hostport_free(&hp);
        printf("  '%s' was accepted\n", text);
        return 0;
    }
    int ok = rc == CACHE_EINVAL && !hp.host && !hp.path &&
             strncmp(err.msg, "option 'servers': ", 18) == 0 &&
             strstr(err.msg, part) != NULL;
    if (!ok)
        printf("  '%s': %s\n", text, err.msg);
    return ok;
}

static void test_host_and_port(void)
{
    CHECK(parses(" 10.0.0.1:26379 ", 0, 0, "10.0.0.1", NULL, 26379));
    CHECK(parses("cache.example:1", 0, 0, "cache.example", NULL, 1));
    CHECK(parses("h:65535", 0, 0, "h", NULL, 65535));
    CHECK(refused("host", 0, "'host' is not host:port"));
    CHECK(refused(":1", 0, "no host"));
    CHECK(refused("", 0, "is not host:port"));
    CHECK(refused("h:0", 0, "1 to 65535"));
    CHECK(refused("h:65536", 0, "1 to 65535"));
    CHECK(refused("h:123456", 0, "1 to 65535"));
    CHECK(refused("h:x", 0, "1 to 65535"));
    CHECK(refused("h:", 0, "1 to 65535"));
    CHECK(refused("h:+1", 0, "1 to 65535"));
    static const char nul[] = "h\0x:1";
    cache_hostport hp;
    cache_err err;
    CHECK(cache_hostport_parse(nul, sizeof nul - 1, 0, 0, &hp, "x", &err) ==
          CACHE_EINVAL);
}

static void test_ipv6(void)
{
    CHECK(parses("[::1]:1", 0, 0, "::1", NULL, 1));
    CHECK(parses("[fe80::1%eth0]:6379", 0, 0, "fe80::1%eth0", NULL, 6379));
    /* A required port: the last colon splits (what Redis writes in MOVED). */
    CHECK(parses("::1:6379", 0, 0, "::1", NULL, 6379));
    CHECK(parses("[::1]", CACHE_HP_PORT_OPTIONAL, 11211, "::1", NULL, 11211));
    CHECK(parses("[::1]:5", CACHE_HP_PORT_OPTIONAL, 11211, "::1", NULL, 5));
    CHECK(refused("::1:11211", CACHE_HP_PORT_OPTIONAL, "[addr]:port"));
    CHECK(refused("fe80::1", CACHE_HP_PORT_OPTIONAL, "[addr]:port"));
    CHECK(refused("[::1", 0, "unclosed '['"));
    CHECK(refused("[::1]x", CACHE_HP_PORT_OPTIONAL, "junk after ']'"));
    CHECK(refused("[::1]", 0, "is not host:port"));
    CHECK(refused("[]:1", 0, "no host"));
}

static void test_optional_port_and_empty_host(void)
{
    CHECK(parses("h", CACHE_HP_PORT_OPTIONAL, 11211, "h", NULL, 11211));
    CHECK(parses("h:7", CACHE_HP_PORT_OPTIONAL, 11211, "h", NULL, 7));
    CHECK(refused("", CACHE_HP_PORT_OPTIONAL, "no host"));
    unsigned url = CACHE_HP_PORT_OPTIONAL | CACHE_HP_EMPTY_HOST;
    CHECK(parses("", url, -1, NULL, NULL, -1));
    CHECK(parses(":6380", url, -1, NULL, NULL, 6380));
    CHECK(parses(":6380", CACHE_HP_EMPTY_HOST, 0, NULL, NULL, 6380));
}

static void test_unix_paths(void)
{
    unsigned f = CACHE_HP_UNIX | CACHE_HP_PORT_OPTIONAL;
    CHECK(parses("/run/mc.sock", f, 11211, NULL, "/run/mc.sock", 0));
    CHECK(parses(" ./rel.sock ", CACHE_HP_UNIX, 0, NULL, "./rel.sock", 0));
    CHECK(cache_hostport_is_path(" /x", 3) && !cache_hostport_is_path("x/y", 3));
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    CHECK(refused(longp, f, "unix socket path of 199 bytes is too long"));
    /* Without CACHE_HP_UNIX a path is just a bad address. */
    CHECK(refused("/run/x.sock", 0, "is not host:port"));
}

static void test_format_reads_back(void)
{
    char out[64];
    CHECK(cache_hostport_format(out, sizeof out, "h", 1) == 3 &&
          strcmp(out, "h:1") == 0);
    CHECK(cache_hostport_format(out, sizeof out, "::1", 11211) == 11 &&
          strcmp(out, "[::1]:11211") == 0);
    CHECK(parses(out, CACHE_HP_PORT_OPTIONAL, 0, "::1", NULL, 11211));
    CHECK(cache_hostport_format(out, sizeof out, "[::1]", 2) > 0 &&
          strcmp(out, "[::1]:2") == 0);
    CHECK(cache_hostport_format(out, sizeof out, "/run/x.sock", 0) > 0 &&
          strcmp(out, "/run/x.sock") == 0);
    CHECK(cache_host_needs_brackets("fe80::1") &&
          !cache_host_needs_brackets("example.com") &&
          !cache_host_needs_brackets("[::1]"));
    /* snprintf's contract: the length it needed, the text cut. */
    CHECK(cache_hostport_format(out, 4, "::1", 11211) == 11 &&
          strcmp(out, "[::") == 0);
}

static void test_random_bytes(void)
{
    unsigned char a[33], b[33], zero[33] = {0};
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    cache_random_bytes(a, sizeof a);
    cache_random_bytes(b, sizeof b);
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK(memcmp(a, zero, sizeof a) != 0);
    /* Every byte is written, odd lengths included. */
    unsigned char c[3] = {0xAA, 0xAA, 0xAA};
    int same = 1;
    for (int i = 0; i < 8 && same; i++) {
        cache_random_bytes(c, 2);
        same = c[0] == 0xAA && c[1] == 0xAA;
    }
    CHECK(!same && c[2] == 0xAA);
    cache_random_bytes(c, 0);
}

/* 1 when cache_encode_int appends exactly the n bytes want. */
static int encodes(int64_t i, const char *want, size_t n)
{
    cache_buf b;
    cache_err err;
    cache_buf_init(&b);
    cache_buf_append(&b, "x", 1);
    int ok = cache_encode_int(i, &b, &err) == CACHE_OK && b.len == n + 1 &&
             b.data[0] == 'x' && memcmp(b.data + 1, want, n) == 0;
    cache_buf_free(&b);
    return ok;
}

static void test_encode_int(void)
{
    CHECK(encodes(0, "\x00", 1));
    CHECK(encodes(127, "\x7f", 1));
    CHECK(encodes(128, "\xcc\x80", 2));
    CHECK(encodes(-1, "\xff", 1));
    CHECK(encodes(-33, "\xd0\xdf", 2));
    CHECK(encodes(65536, "\xce\x00\x01\x00\x00", 5));
    CHECK(encodes(INT64_MIN, "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9));
}

/* msgpack-c's packer into a buffer, for comparison. */
static int sbuf_write(void *data, const char *p, size_t n)
{
    return cache_buf_append(data, p, n);
}

/* Writes the same item through our writer (kind selects it) and
 * through msgpack-c; 1 when the bytes agree. */
static int same_as_msgpack_c(int kind, int64_t i, double d, size_t n)
{
    cache_buf ours, theirs;
    cache_buf_init(&ours);
    cache_buf_init(&theirs);
    char *body = calloc(n ? n : 1, 1);
    cache_writer w;
    cache_writer_init(&w, &ours);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &theirs, sbuf_write);
    switch (kind) {
    case 0: cache_write_int(&w, i); msgpack_pack_int64(&pk, i); break;
    case 1: cache_write_float(&w, d); msgpack_pack_double(&pk, d); break;
    case 2:
        cache_write_str(&w, body, n);
        msgpack_pack_str(&pk, n);
        msgpack_pack_str_body(&pk, body, n);
        break;
    case 3: cache_write_array(&w, n); msgpack_pack_array(&pk, n); break;
    case 4: cache_write_map(&w, n); msgpack_pack_map(&pk, n); break;
    case 5:
        cache_write_nil(&w), cache_write_bool(&w, 1), cache_write_bool(&w, 0);
        msgpack_pack_nil(&pk), msgpack_pack_true(&pk), msgpack_pack_false(&pk);
        break;
    }
    int ok = !w.failed && ours.len == theirs.len &&
             memcmp(ours.data, theirs.data, ours.len) == 0;
    if (!ok)
        printf("  kind %d i %lld d %g n %zu differs\n", kind, (long long)i, d, n);
    free(body);
    cache_buf_free(&ours);
    cache_buf_free(&theirs);
    return ok;
}

static void test_writer_matches_msgpack_c(void)
{
    static const int64_t edges[] = {0, 31, 32, 127, 128, 255, 256, 65535, 65536,
                                    4294967295LL, 4294967296LL, INT64_MAX};
    for (size_t e = 0; e < sizeof edges / sizeof *edges; e++)
        for (int64_t delta = -1; delta <= 1; delta++) {
            if ((edges[e] == INT64_MAX && delta > 0) || (edges[e] == 0 && delta < 0))
                continue;
            int64_t v = edges[e] + delta;
            CHECK(same_as_msgpack_c(0, v, 0, 0));
            CHECK(same_as_msgpack_c(0, -v - 1, 0, 0));
        }
    static const double ds[] = {0.0, -0.0, 0.5, -1.25, 1e300, 3.141592653589793};
    for (size_t k = 0; k < sizeof ds / sizeof *ds; k++)
        CHECK(same_as_msgpack_c(1, 0, ds[k], 0));
    static const size_t ns[] = {0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
        for (int kind = 2; kind <= 4; kind++)
            CHECK(same_as_msgpack_c(kind, 0, 0, ns[k]));
    CHECK(same_as_msgpack_c(5, 0, 0, 0));
}

int main(void)
{
    RUN(test_host_and_port);
    RUN(test_ipv6);
    RUN(test_optional_port_and_empty_host);
    RUN(test_unix_paths);
    RUN(test_format_reads_back);
    RUN(test_random_bytes);
    RUN(test_encode_int);
    RUN(test_writer_matches_msgpack_c);
    CTEST_END();
}
