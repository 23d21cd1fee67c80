/*
 * test_memo_keys.c - the decorator key machinery of engine/memo_keys.c, checked
 * against values computed by Flask-Caching / Python's hashlib.
 */
#include <string.h>

#include "ctest.h"
#include "memo_keys.h"

static cache_str S(const char *s)
{
    return (cache_str){s, strlen(s)};
}

/* Python: base64.b64encode(hashlib.md5(b"mymod.add(1, 2)OrderedDict()")
 * .digest())[:16] == b"oZADaW5PmoLfNWfu" (behaviour.md §6.4). */
static void memo_key_matches_flask_caching(void)
{
    const char *text = "mymod.add(1, 2)OrderedDict()";
    const void *parts[1] = {text};
    size_t lens[1] = {strlen(text)};
    cache_buf out;
    cache_buf_init(&out);
    CHECK(cache_memo_key(CACHE_MD5, 1, parts, lens, "abcdef", 6, &out) == CACHE_OK);
    CHECK(out.len == 22 && memcmp(out.data, "oZADaW5PmoLfNWfuabcdef", 22) == 0);
    CHECK(cache_memo_key(CACHE_SHA256, 1, parts, lens, "", 0, &out) == CACHE_OK);
    CHECK(out.len == 16 && memcmp(out.data, "GmTvYIQ1TjZLWrs9", 16) == 0);
    cache_buf_free(&out);
}

/* The text may come in parts (name, arguments, source): same digest. */
static void memo_key_parts_concatenate(void)
{
    const void *one[1] = {"mymod.add(1, 2)OrderedDict()"};
    size_t one_len[1] = {28};
    const void *three[3] = {"mymod.add", "(1, 2)", "OrderedDict()"};
    size_t three_len[3] = {9, 6, 13};
    cache_buf a, b;
    cache_buf_init(&a);
    cache_buf_init(&b);
    CHECK(cache_memo_key(CACHE_SHA1, 1, one, one_len, "v", 1, &a) == CACHE_OK);
    CHECK(cache_memo_key(CACHE_SHA1, 3, three, three_len, "v", 1, &b) == CACHE_OK);
    CHECK(a.len == 17 && b.len == 17 && memcmp(a.data, b.data, 17) == 0);
    cache_buf_free(&a);
    cache_buf_free(&b);
}

static void memo_head_of_short_digest(void)
{
    /* A user hash giving 3 bytes: its whole Base64, as Python would cut it. */
    char out[CACHE_MEMO_HEAD_LEN + 1];
    CHECK(cache_memo_head((const unsigned char *)"abc", 3, out) == 4);
    CHECK(strcmp(out, "YWJj") == 0);
    CHECK(cache_memo_head((const unsigned char *)"ab", 2, out) == 4);
    CHECK(strcmp(out, "YWI=") == 0);
    unsigned char d[64];
    memset(d, 0xff, sizeof d);
    CHECK(cache_memo_head(d, sizeof d, out) == 16);
    CHECK(strcmp(out, "////////////////") == 0);
}

static int in_base64_alphabet(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

static void versions_are_random_base64(void)
{
    char v[64][CACHE_VERSION_LEN + 1];
    int distinct = 1;
    for (int i = 0; i < 64; i++) {
        CHECK(cache_memo_version(v[i]) == 0);
        CHECK(strlen(v[i]) == CACHE_VERSION_LEN);
        for (int j = 0; j < CACHE_VERSION_LEN; j++)
            CHECK(in_base64_alphabet(v[i][j]));
        for (int j = 0; j < i; j++)
            if (strcmp(v[i], v[j]) == 0)
                distinct = 0;
    }
    /* 36 random bits each: a repeat among 64 is a broken random source. */
    CHECK(distinct);
}

static int text_is(cache_query_pair *p, size_t n, const char *want)
{
    cache_buf out;
    cache_buf_init(&out);
    int ok = cache_query_text(p, n, &out) == 0 && out.len == strlen(want) &&
             memcmp(out.data, want, out.len) == 0;
    if (!ok)
        printf("  got: %.*s\n  want: %s\n", (int)out.len, out.data, want);
    cache_buf_free(&out);
    return ok;
}

static void query_text_is_python_tuple(void)
{
    cache_query_pair p[3] = {{S("offset"), S("20")}, {S("mock"), S("true")},
                             {S("limit"), S("15")}};
    CHECK(text_is(p, 3, "(('limit', '15'), ('mock', 'true'), ('offset', '20'))"));
    cache_query_pair one[1] = {{S("a"), S("1")}};
    CHECK(text_is(one, 1, "(('a', '1'),)"));
    CHECK(text_is(NULL, 0, "()"));
}

static void query_text_repeated_names_sorted_by_value(void)
{
    cache_query_pair p[4] = {{S("tag"), S("b")}, {S("x"), S("")},
                             {S("tag"), S("a")}, {S("tag"), S("ab")}};
    CHECK(text_is(p, 4, "(('tag', 'a'), ('tag', 'ab'), ('tag', 'b'), ('x', ''))"));
}

static void query_text_quotes_as_python(void)
{
    /* repr("it's") == "\"it's\"", repr('a"b') == "'a\"b'",
     * repr('a\'b"c') == "'a\\'b\"c'", repr('\x7f\x01\t\\') == "'\\x7f\\x01\\t\\\\'" */
    cache_query_pair p[1] = {{S("it's"), S("a\"b")}};
    CHECK(text_is(p, 1, "((\"it's\", 'a\"b'),)"));
    cache_query_pair q[1] = {{S("a'b\"c"), S("\x7f\x01\t\\\n\r")}};
    CHECK(text_is(q, 1, "(('a\\'b\"c', '\\x7f\\x01\\t\\\\\\n\\r'),)"));
    /* UTF-8 passes through: Python keeps printable non-ASCII characters. */
    cache_query_pair u[1] = {{S("q"), S("caf\xc3\xa9")}};
    CHECK(text_is(u, 1, "(('q', 'caf\xc3\xa9'),)"));
}

/* behaviour.md §5.3: /works?offset=20&mock=true&limit=15 hashes to
 * 8c5a601cb9ad784d74135aa69d38fb82 (md5) and c0088a69...c78 (sha256). */
static void query_digest_matches_flask_caching(void)
{
    cache_query_pair p[3] = {{S("offset"), S("20")}, {S("mock"), S("true")},
                             {S("limit"), S("15")}};
    char hex[CACHE_HEX_MAX];
    CHECK(cache_query_digest(CACHE_MD5, p, 3, NULL, 0, hex) == 32);
    CHECK(strcmp(hex, "8c5a601cb9ad784d74135aa69d38fb82") == 0);
    CHECK(cache_query_digest(CACHE_SHA256, p, 3, NULL, 0, hex) == 64);
    CHECK(strcmp(hex, "c0088a69f42cdb281e81cb823159251693b5afccff7e539107c3c05d1c269c78") == 0);
}

static void query_digest_with_source(void)
{
    /* md5 of "()" followed by "src" == md5("()src") */
    char a[CACHE_HEX_MAX], b[CACHE_HEX_MAX];
    CHECK(cache_query_digest(CACHE_MD5, NULL, 0, "src", 3, a) == 32);
    CHECK(cache_source_digest(CACHE_MD5, "()src", 5, b) == 32);
    CHECK(strcmp(a, b) == 0);
}

static void source_digest_known_value(void)
{
    char hex[CACHE_HEX_MAX];
    /* md5("") and sha1("abc") */
    CHECK(cache_source_digest(CACHE_MD5, "", 0, hex) == 32);
    CHECK(strcmp(hex, "d41d8cd98f00b204e9800998ecf8427e") == 0);
    CHECK(cache_source_digest(CACHE_SHA1, "abc", 3, hex) == 40);
    CHECK(strcmp(hex, "a9993e364706816aba3e25717850c26c9cd0d89d") == 0);
    CHECK(cache_source_digest(CACHE_SHA512, "abc", 3, hex) == 128);
}

int main(void)
{
    RUN(memo_key_matches_flask_caching);
    RUN(memo_key_parts_concatenate);
    RUN(memo_head_of_short_digest);
    RUN(versions_are_random_base64);
    RUN(query_text_is_python_tuple);
    RUN(query_text_repeated_names_sorted_by_value);
    RUN(query_text_quotes_as_python);
    RUN(query_digest_matches_flask_caching);
    RUN(query_digest_with_source);
    RUN(source_digest_known_value);
    CTEST_END();
}
