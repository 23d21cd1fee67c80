/*
 * fuzz_fs_entry.c - libFuzzer target for the FileSystemCache entry reader
 * (backends/filesystem/), through the engine as a binding calls it.
 *
 * The input bytes are written as the entry file of a fixed key (its md5 hex
 * name in a temporary cache_dir), then read with get, has and incr through
 * cache_open("FileSystemCache"). An independent reading of the format
 * (16-byte header "LCFS", version 1, three zero bytes, int64 LE expiry in
 * ms, 0 = never; then codec bytes) is the oracle:
 *   get   hit exactly when the header is ours, live and the value
 *         validates, and then returns exactly the value bytes; otherwise a
 *         miss, and the file is gone (corrupt and expired entries are
 *         removed);
 *   has   hit exactly when the header is ours and live (the value is not
 *         read);
 *   incr  on a live integer: that + 1 (or CACHE_ENOTINT on overflow); on a
 *         live non-integer: CACHE_ENOTINT; otherwise 1. The entry then reads
 *         back as the result.
 * Then a second cache object with threshold 1 on the same directory writes
 * two other keys, which lists and prunes the directory (reading the fuzzed
 * entry's header among others): the entry it just wrote must survive.
 *
 * Build and run: `make fuzz-fs_entry FUZZ_SECONDS=60` (see fuzz/fuzz.mk).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "codec.h"
#include "digest.h"

#define CHECK(c)                                                            \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "fuzz_fs_entry: check failed at line %d: %s\n", \
                    __LINE__, #c);                                          \
            abort();                                                        \
        }                                                                   \
    } while (0)

static char dir[64];
static char path[256], path2[256], path3[256];
static cache_backend *fs;
static const cache_str KEY = {"fuzzed key", 10};
static const cache_str KEY2 = {"pruning key", 11};
static const cache_str KEY3 = {"pruning key 2", 13};

static cache_backend *open_fs(int64_t threshold)
{
    cache_opt items[2];
    memset(items, 0, sizeof items);
    items[0].name = "cache_dir";
    items[0].type = CACHE_OPT_STR;
    items[0].s = dir;
    items[0].slen = strlen(dir);
    items[1].name = "threshold";
    items[1].type = CACHE_OPT_INT;
    items[1].i = threshold;
    items[1].n = (double)threshold;
    cache_opts opts = {items, 2};
    cache_err err = {0, ""};
    cache_backend *b = cache_open("FileSystemCache", &opts, &err);
    if (!b)
        fprintf(stderr, "fuzz_fs_entry: %s\n", err.msg);
    return b;
}

static void entry_path(cache_str key, char *out, size_t n)
{
    unsigned char d[CACHE_DIGEST_MAX];
    char hex[2 * CACHE_DIGEST_MAX + 1];
    const void *parts[1] = {key.ptr};
    size_t lens[1] = {key.len};
    size_t dn = cache_digest(CACHE_MD5, 1, parts, lens, d);
    CHECK(dn == 16);
    cache_hex(d, dn, hex);
    snprintf(out, n, "%s/%s", dir, hex);
}

/* Removes the temporary cache_dir when the fuzzer exits. */
static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/fuzz_fs_entry.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    atexit(remove_dir);
    fs = open_fs(0);
    CHECK(fs != NULL);
    entry_path(KEY, path, sizeof path);
    entry_path(KEY2, path2, sizeof path2);
    entry_path(KEY3, path3, sizeof path3);
    return 0;
}

/* Puts the bytes in place the way another process's write would: a new
 * file renamed over the entry (a new inode every time), so the backend may
 * trust what it knows of an inode it has read before. */
static void put_file(const uint8_t *data, size_t size)
{
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s/.fuzz-tmp", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        CHECK(n > 0);
        off += (size_t)n;
    }
    CHECK(close(fd) == 0);
    CHECK(rename(tmp, path) == 0);
}

static int file_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static int64_t now_ms(void)
{
    return (int64_t)(cache_wall_now() * 1000.0);
}

/* What the oracle makes of the bytes. */
typedef struct expect {
    int ours;      /* header is a version 1 header */
    int64_t expiry;
    int valid;     /* value bytes validate */
    int is_int;
    int64_t ival;
} expect;

static expect read_oracle(const uint8_t *d, size_t n)
{
    expect e = {0, 0, 0, 0, 0};
    if (n < 16 || memcmp(d, "LCFS", 4) != 0 || d[4] != 1 || d[5] || d[6] ||
        d[7])
        return e;
    e.ours = 1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)d[8 + i] << (8 * i);
    e.expiry = (int64_t)u;
    e.valid = cache_validate(d + 16, n - 16, NULL) == CACHE_OK;
    e.is_int = e.valid &&
               cache_value_as_int((cache_str){(const char *)d + 16, n - 16},
                                  &e.ival);
    return e;
}

/* Live according to the oracle: 1, 0, or -1 when the expiry falls inside
 * the window of the call (too close to tell). */
static int live_between(const expect *e, int64_t before, int64_t after)
{
    if (e->expiry == 0)
        return 1;
    if (after + 1 < e->expiry)
        return 1;
    if (before - 1 >= e->expiry)
        return 0;
    return -1;
}

static void check_get(const uint8_t *data, size_t size, const expect *e)
{
    cache_buf out;
    cache_err err = {0, ""};
    cache_buf_init(&out);
    put_file(data, size);
    int64_t t0 = now_ms();
    int rc = cache_get(fs, KEY, &out, &err);
    int64_t t1 = now_ms();
    CHECK(rc == CACHE_OK || rc == CACHE_MISS);
    int live = e->ours ? live_between(e, t0, t1) : 0;
    if (live >= 0) {
        int hit = e->ours && e->valid && live;
        CHECK((rc == CACHE_OK) == hit);
        if (hit) {
            CHECK(out.len == size - 16 && memcmp(out.data, data + 16, out.len) == 0);
            CHECK(file_exists(path));
        } else {
            CHECK(out.len == 0);
            CHECK(!file_exists(path)); /* removed */
        }
    }
    cache_buf_free(&out);
}

static void check_has(const uint8_t *data, size_t size, const expect *e)
{
    cache_err err = {0, ""};
    put_file(data, size);
    int64_t t0 = now_ms();
    int rc = cache_has(fs, KEY, &err);
    int64_t t1 = now_ms();
    CHECK(rc == CACHE_OK || rc == CACHE_MISS);
    int live = e->ours ? live_between(e, t0, t1) : 0;
    if (live >= 0)
        CHECK((rc == CACHE_OK) == (e->ours && live));
}

static void check_incr(const uint8_t *data, size_t size, const expect *e)
{
    cache_err err = {0, ""};
    int64_t result = 0;
    put_file(data, size);
    int64_t t0 = now_ms();
    int rc = cache_incr(fs, KEY, 1, 0, &result, &err);
    int64_t t1 = now_ms();
    int live = e->ours ? live_between(e, t0, t1) : 0;
    CHECK(rc == CACHE_OK || rc == CACHE_ENOTINT);
    if (rc != CACHE_OK)
        CHECK(err.msg[0] != '\0');
    if (live < 0)
        return;
    int hit = e->ours && e->valid && live;
    if (hit && e->is_int && e->ival != INT64_MAX)
        CHECK(rc == CACHE_OK && result == e->ival + 1);
    else if (hit)
        CHECK(rc == CACHE_ENOTINT);
    else
        CHECK(rc == CACHE_OK && result == 1);
    if (rc == CACHE_OK) {
        cache_buf out;
        int64_t back;
        cache_buf_init(&out);
        CHECK(cache_get(fs, KEY, &out, &err) == CACHE_OK);
        CHECK(cache_value_as_int((cache_str){out.data, out.len}, &back) &&
              back == result);
        cache_buf_free(&out);
    }
}

/* A fresh object with threshold 1 (it counts the directory at open) sets
 * two keys: the second one makes the count pass the threshold, so the
 * directory is listed and pruned, reading the fuzzed entry's header. */
static void check_prune(const uint8_t *data, size_t size)
{
    cache_err err = {0, ""};
    const cache_str one = {"\xc3", 1};
    put_file(data, size);
    cache_backend *pruner = open_fs(1);
    CHECK(pruner != NULL);
    CHECK(cache_set(pruner, KEY2, one, 0, &err) == CACHE_OK);
    CHECK(cache_set(pruner, KEY3, one, 0, &err) == CACHE_OK);
    CHECK(file_exists(path3)); /* never the entry just written */
    int rc = cache_del(pruner, KEY2, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_MISS);
    CHECK(cache_del(pruner, KEY3, &err) == CACHE_OK);
    cache_close(pruner);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    expect e = read_oracle(data, size);
    check_get(data, size, &e);
    check_has(data, size, &e);
    check_incr(data, size, &e);
    check_prune(data, size);
    unlink(path);
    return 0;
}
