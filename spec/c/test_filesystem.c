/*
 * test_filesystem.c - FileSystemCache (backends/filesystem/) from plain C:
 * options, every operation, the file format and names, modes, corrupt and
 * foreign files, clear, threshold pruning, write failures (RLIMIT_FSIZE,
 * a full file system) and several processes sharing one directory.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "codec.h"
#include "ctest.h"
#include "digest.h"

static char root[256]; /* a fresh directory for the whole run */
static int dir_serial;

/* ---- helpers ------------------------------------------------------------ */

static cache_str S(const char *s) { return (cache_str){s, strlen(s)}; }

static void new_dir(char *out, size_t n)
{
    snprintf(out, n, "%s/d%d", root, ++dir_serial);
}

typedef struct optset {
    cache_opt items[8];
    cache_opts opts;
} optset;

static void opts_init(optset *o)
{
    memset(o, 0, sizeof *o);
    o->opts.items = o->items;
}

static void opt_str(optset *o, const char *name, const char *s)
{
    cache_opt *it = &o->items[o->opts.count++];
    it->name = name;
    it->type = CACHE_OPT_STR;
    it->s = s;
    it->slen = strlen(s);
}

static void opt_int(optset *o, const char *name, int64_t i)
{
    cache_opt *it = &o->items[o->opts.count++];
    it->name = name;
    it->type = CACHE_OPT_INT;
    it->i = i;
    it->n = (double)i;
}

static void opt_num(optset *o, const char *name, double n)
{
    cache_opt *it = &o->items[o->opts.count++];
    it->name = name;
    it->type = CACHE_OPT_NUM;
    it->n = n;
}

/* A FileSystemCache on dir with the given threshold, mode and timeout
 * (each -1: default). */
static cache_backend *open_fs_t(const char *dir, int64_t threshold,
                                int64_t mode, double timeout)
{
    optset o;
    opts_init(&o);
    opt_str(&o, "cache_dir", dir);
    if (threshold >= 0)
        opt_int(&o, "threshold", threshold);
    if (mode >= 0)
        opt_int(&o, "mode", mode);
    if (timeout >= 0)
        opt_num(&o, "timeout", timeout);
    cache_err err = {0};
    cache_backend *b = cache_open("FileSystemCache", &o.opts, &err);
    if (!b)
        printf("  open %s: %s\n", dir, err.msg);
    return b;
}

static cache_backend *open_fs(const char *dir, int64_t threshold, int64_t mode)
{
    return open_fs_t(dir, threshold, mode, -1);
}

/* The tests that make processes and threads fight for the increment lock
 * check that no update is lost, not how long a wait may last: under
 * valgrind on a loaded machine, a turn can take longer than the 1 s default
 * timeout. */
#define PATIENT 60.0

/* Codec bytes of a string / an integer. */
static cache_str enc_str(cache_buf *buf, const char *s, size_t n)
{
    buf->len = 0;
    cache_writer w;
    cache_writer_init(&w, buf);
    cache_write_str(&w, s, n);
    return (cache_str){buf->data, buf->len};
}

static cache_str enc_int(cache_buf *buf, int64_t i)
{
    buf->len = 0;
    cache_writer w;
    cache_writer_init(&w, buf);
    cache_write_int(&w, i);
    return (cache_str){buf->data, buf->len};
}

static void md5_name(const char *key, char out[2 * CACHE_DIGEST_MAX + 1])
{
    unsigned char d[CACHE_DIGEST_MAX];
    const void *parts[1] = {key};
    size_t lens[1] = {strlen(key)};
    size_t n = cache_digest(CACHE_MD5, 1, parts, lens, d);
    cache_hex(d, n, out);
}

static void entry_path(const char *dir, const char *key, char *out, size_t n)
{
    char name[2 * CACHE_DIGEST_MAX + 1];
    md5_name(key, name);
    snprintf(out, n, "%s/%s", dir, name);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int key_file_exists(const char *dir, const char *key)
{
    char p[512];
    entry_path(dir, key, p, sizeof p);
    return exists(p);
}

/* Reads a whole file; returns its length or -1. */
static long slurp(const char *path, unsigned char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    long n = read(fd, buf, cap);
    close(fd);
    return n;
}

static void spit(const char *path, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        if (write(fd, bytes, n) != (ssize_t)n)
            printf("  short write to %s\n", path);
        close(fd);
    }
}

static int64_t header_expiry(const unsigned char *h)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)h[8 + i] << (8 * i);
    return (int64_t)u;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Number of names in dir starting with prefix ("" = all but . and ..). */
static int count_names(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!strncmp(de->d_name, prefix, strlen(prefix)))
            n++;
    }
    closedir(d);
    return n;
}

/* Sets the mtime only: the atime holds the writer's expiry hint. */
static void set_mtime(const char *path, double t)
{
    struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)t, 0}};
    utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

static void set_atime(const char *path, double t)
{
    struct timespec ts[2] = {{(time_t)t, 0}, {0, UTIME_OMIT}};
    utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

/* get through the engine (which validates), as a string value. */
static int get_str(cache_backend *b, const char *key, char *out, size_t cap)
{
    cache_buf buf;
    cache_buf_init(&buf);
    cache_err err = {0};
    int rc = cache_get(b, S(key), &buf, &err);
    if (rc == CACHE_OK && out) {
        cache_reader r;
        cache_item it;
        cache_reader_init(&r, buf.data, buf.len);
        if (cache_reader_next(&r, &it) == 0 && it.type == CACHE_V_STR &&
            it.len < cap) {
            memcpy(out, it.s, it.len);
            out[it.len] = '\0';
        } else {
            rc = -100;
        }
    }
    cache_buf_free(&buf);
    return rc;
}

static int set_str(cache_backend *b, const char *key, const char *v, double ttl)
{
    cache_buf buf;
    cache_buf_init(&buf);
    cache_err err = {0};
    int rc = cache_set(b, S(key), enc_str(&buf, v, strlen(v)), ttl, &err);
    if (rc != CACHE_OK)
        printf("  set %s: %s\n", key, err.msg);
    cache_buf_free(&buf);
    return rc;
}

/* ---- options ------------------------------------------------------------- */

static void test_options(void)
{
    optset o;
    cache_err err = {0};

    opts_init(&o);
    CHECK(cache_open("FileSystemCache", &o.opts, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL);
    CHECK(strcmp(err.msg, "option 'cache_dir' is required") == 0);

    char dir[256];
    new_dir(dir, sizeof dir);
    opts_init(&o);
    opt_str(&o, "cache_dir", dir);
    opt_str(&o, "hash_method", "sha3");
    memset(&err, 0, sizeof err);
    CHECK(cache_open("FileSystemCache", &o.opts, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL && strstr(err.msg, "hash_method"));

    opts_init(&o);
    opt_str(&o, "cache_dir", dir);
    opt_int(&o, "mode", 01000);
    memset(&err, 0, sizeof err);
    CHECK(cache_open("FileSystemCache", &o.opts, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL && strstr(err.msg, "mode"));

    opts_init(&o);
    opt_str(&o, "cache_dir", dir);
    opt_int(&o, "threshold", -1);
    memset(&err, 0, sizeof err);
    CHECK(cache_open("FileSystemCache", &o.opts, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL && strstr(err.msg, "threshold"));

    opts_init(&o);
    opt_str(&o, "cache_dir", dir);
    opt_int(&o, "cache_dirs", 1);
    memset(&err, 0, sizeof err);
    CHECK(cache_open("FileSystemCache", &o.opts, &err) == NULL);
    CHECK(err.code == CACHE_EINVAL && strstr(err.msg, "cache_dirs"));

    /* a cache_dir below a regular file cannot be made */
    char file[300], below[320];
    snprintf(file, sizeof file, "%s/plainfile", root);
    spit(file, "x", 1);
    snprintf(below, sizeof below, "%s/sub", file);
    opts_init(&o);
    opt_str(&o, "cache_dir", below);
    memset(&err, 0, sizeof err);
    CHECK(cache_open("FileSystemCache", &o.opts, &err) == NULL);
    CHECK(err.code == CACHE_FAIL && strstr(err.msg, below));

    /* every hash method names files by its own digest length */
    const char *methods[] = {"md5", "sha1", "sha256", "sha512"};
    const int lens[] = {32, 40, 64, 128};
    for (int i = 0; i < 4; i++) {
        char d[256];
        new_dir(d, sizeof d);
        opts_init(&o);
        opt_str(&o, "cache_dir", d);
        opt_str(&o, "hash_method", methods[i]);
        memset(&err, 0, sizeof err);
        cache_backend *b = cache_open("FileSystemCache", &o.opts, &err);
        CHECK(b != NULL);
        if (!b)
            continue;
        CHECK(set_str(b, "foo", "bar", 0) == CACHE_OK);
        DIR *dd = opendir(d);
        struct dirent *de;
        int found = 0;
        while (dd && (de = readdir(dd)) != NULL)
            if (de->d_name[0] != '.')
                found = (int)strlen(de->d_name);
        if (dd)
            closedir(dd);
        CHECK(found == lens[i]);
        char v[16];
        CHECK(get_str(b, "foo", v, sizeof v) == CACHE_OK && !strcmp(v, "bar"));
        cache_close(b);
    }
}

static void test_dir_created_recursively(void)
{
    char dir[256], deep[300];
    new_dir(dir, sizeof dir);
    snprintf(deep, sizeof deep, "%s/a/b/c", dir);
    mode_t old = umask(022);
    cache_backend *b = open_fs(deep, -1, -1);
    umask(old);
    CHECK(b != NULL);
    struct stat st;
    CHECK(stat(deep, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 0777) == 0700);
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    cache_close(b);
    /* an existing directory is fine */
    b = open_fs(deep, -1, -1);
    CHECK(b != NULL);
    cache_close(b);
}

/* ---- operations ----------------------------------------------------------- */

static void test_basic_ops(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, -1, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_err err = {0};
    char v[64];
    cache_buf buf;
    cache_buf_init(&buf);

    CHECK(get_str(b, "foo", v, sizeof v) == CACHE_MISS);
    CHECK(cache_has(b, S("foo"), &err) == CACHE_MISS);
    CHECK(set_str(b, "foo", "bar", 0) == CACHE_OK);
    CHECK(get_str(b, "foo", v, sizeof v) == CACHE_OK && !strcmp(v, "bar"));
    CHECK(cache_has(b, S("foo"), &err) == CACHE_OK);
    CHECK(set_str(b, "foo", "baz", 0) == CACHE_OK);
    CHECK(get_str(b, "foo", v, sizeof v) == CACHE_OK && !strcmp(v, "baz"));

    /* the name is the md5 hex of the key */
    char p[512];
    snprintf(p, sizeof p, "%s/acbd18db4cc2f85cedef654fccc4a4d8", dir);
    CHECK(exists(p));

    /* add */
    CHECK(cache_add(b, S("foo"), enc_str(&buf, "x", 1), 0, &err) ==
          CACHE_EXISTS);
    CHECK(get_str(b, "foo", v, sizeof v) == CACHE_OK && !strcmp(v, "baz"));
    CHECK(cache_add(b, S("new"), enc_str(&buf, "n", 1), 0, &err) == CACHE_OK);
    CHECK(get_str(b, "new", v, sizeof v) == CACHE_OK && !strcmp(v, "n"));
    /* add over an expired entry replaces it */
    CHECK(set_str(b, "old", "o", -1) == CACHE_OK);
    CHECK(cache_add(b, S("old"), enc_str(&buf, "fresh", 5), 0, &err) ==
          CACHE_OK);
    CHECK(get_str(b, "old", v, sizeof v) == CACHE_OK && !strcmp(v, "fresh"));

    /* delete: true if it existed, a miss otherwise */
    CHECK(cache_del(b, S("foo"), &err) == CACHE_OK);
    CHECK(!exists(p));
    CHECK(cache_del(b, S("foo"), &err) == CACHE_MISS);
    CHECK(get_str(b, "foo", v, sizeof v) == CACHE_MISS);

    /* empty key, binary key, empty string value, large value */
    CHECK(set_str(b, "", "empty key", 0) == CACHE_OK);
    CHECK(get_str(b, "", v, sizeof v) == CACHE_OK && !strcmp(v, "empty key"));
    cache_str bin = {"a\0b", 3};
    CHECK(cache_set(b, bin, enc_str(&buf, "bin", 3), 0, &err) == CACHE_OK);
    CHECK(get_str(b, "a", v, sizeof v) == CACHE_MISS);
    CHECK(set_str(b, "e", "", 0) == CACHE_OK);
    CHECK(get_str(b, "e", v, sizeof v) == CACHE_OK && v[0] == '\0');
    size_t big = 3 << 20;
    char *large = malloc(big);
    for (size_t i = 0; i < big; i++)
        large[i] = (char)('a' + i % 26);
    CHECK(cache_set(b, S("big"), enc_str(&buf, large, big), 0, &err) ==
          CACHE_OK);
    cache_buf got;
    cache_buf_init(&got);
    CHECK(cache_get(b, S("big"), &got, &err) == CACHE_OK);
    CHECK(got.len == buf.len && memcmp(got.data, buf.data, got.len) == 0);
    got.len = 0;

    /* sizes around the 4 KiB read chunk and its doublings */
    for (size_t n = 4050; n < 4120; n++)
        CHECK(cache_set(b, S("edge"), enc_str(&buf, large, n), 0, &err) ==
                  CACHE_OK &&
              cache_get(b, S("edge"), &got, &err) == CACHE_OK &&
              got.len == buf.len && !memcmp(got.data, buf.data, got.len) &&
              (got.len = 0) == 0);
    for (size_t n = 8170; n < 8200; n++)
        CHECK(cache_set(b, S("edge"), enc_str(&buf, large, n), 0, &err) ==
                  CACHE_OK &&
              cache_get(b, S("edge"), &got, &err) == CACHE_OK &&
              got.len == buf.len && !memcmp(got.data, buf.data, got.len) &&
              (got.len = 0) == 0);
    cache_buf_free(&got);
    free(large);

    /* get appends to what out already holds */
    cache_buf_set(&got, "XY", 2);
    CHECK(cache_get(b, S("new"), &got, &err) == CACHE_OK);
    CHECK(got.len > 2 && !memcmp(got.data, "XY", 2));
    cache_buf_free(&got);

    /* the engine's batch loops */
    cache_str keys[3] = {S("new"), S("nope"), S("e")};
    cache_buf outs[3];
    int status[3];
    for (int i = 0; i < 3; i++)
        cache_buf_init(&outs[i]);
    CHECK(cache_get_many(b, 3, keys, outs, status, &err) == CACHE_OK);
    CHECK(status[0] == CACHE_OK && status[1] == CACHE_MISS &&
          status[2] == CACHE_OK);
    for (int i = 0; i < 3; i++)
        cache_buf_free(&outs[i]);

    /* clear */
    CHECK(cache_clear(b, &err) == CACHE_OK);
    CHECK(get_str(b, "new", v, sizeof v) == CACHE_MISS);
    CHECK(count_names(dir, "") == 0);
    cache_buf_free(&buf);
    cache_close(b);
}

static void test_file_format_and_ttl(void)
{
    char dir[256], p[512];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, -1, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_err err = {0};
    cache_buf buf;
    cache_buf_init(&buf);
    unsigned char f[256];
    char v[64];

    /* header: "LCFS", version 1, 3 zero bytes, int64 LE expiry in ms */
    double t0 = wall();
    cache_str val = enc_str(&buf, "bar", 3);
    CHECK(cache_set(b, S("foo"), val, 10, &err) == CACHE_OK);
    entry_path(dir, "foo", p, sizeof p);
    long n = slurp(p, f, sizeof f);
    CHECK(n == (long)(16 + val.len));
    CHECK(!memcmp(f, "LCFS", 4) && f[4] == 1 && !f[5] && !f[6] && !f[7]);
    int64_t e = header_expiry(f);
    CHECK(e >= (int64_t)(t0 * 1000) + 10000 - 5 &&
          e <= (int64_t)(wall() * 1000) + 10000 + 5);
    CHECK(!memcmp(f + 16, val.ptr, val.len));

    /* ttl 0: never (expiry 0) */
    CHECK(set_str(b, "never", "x", 0) == CACHE_OK);
    entry_path(dir, "never", p, sizeof p);
    CHECK(slurp(p, f, sizeof f) > 16 && header_expiry(f) == 0);

    /* negative: stored already expired (a past time, not 0) */
    CHECK(set_str(b, "neg", "x", -5) == CACHE_OK);
    entry_path(dir, "neg", p, sizeof p);
    CHECK(slurp(p, f, sizeof f) > 16);
    e = header_expiry(f);
    CHECK(e != 0 && e < (int64_t)(wall() * 1000));
    CHECK(cache_has(b, S("neg"), &err) == CACHE_MISS);
    CHECK(get_str(b, "neg", v, sizeof v) == CACHE_MISS);
    CHECK(!exists(p)); /* expired entries are removed when met */
    /* a tiny negative ttl is expired at once too */
    CHECK(set_str(b, "neg2", "x", -0.0001) == CACHE_OK);
    CHECK(get_str(b, "neg2", v, sizeof v) == CACHE_MISS);

    /* short expiry, fractions honoured */
    CHECK(set_str(b, "short", "s", 0.3) == CACHE_OK);
    entry_path(dir, "short", p, sizeof p);
    CHECK(slurp(p, f, sizeof f) > 16);
    e = header_expiry(f);
    CHECK(e >= (int64_t)(t0 * 1000) + 300 && e <= (int64_t)(wall() * 1000) + 301);
    CHECK(get_str(b, "short", v, sizeof v) == CACHE_OK);
    CHECK(cache_has(b, S("short"), &err) == CACHE_OK);
    sleep_s(0.4);
    CHECK(cache_has(b, S("short"), &err) == CACHE_MISS);
    CHECK(get_str(b, "short", v, sizeof v) == CACHE_MISS);
    CHECK(!exists(p));

    /* NaN is refused */
    CHECK(cache_set(b, S("nan"), val, NAN, &err) == CACHE_EINVAL);
    CHECK(count_names(dir, ".tmp-") == 0);
    cache_buf_free(&buf);
    cache_close(b);
}

static void test_modes(void)
{
    char dir[256], p[512];
    struct stat st;
    mode_t old = umask(077);

    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, -1, -1);
    CHECK(b && set_str(b, "k", "v", 0) == CACHE_OK);
    entry_path(dir, "k", p, sizeof p);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600);
    cache_close(b);

    new_dir(dir, sizeof dir);
    b = open_fs(dir, -1, 0644);
    CHECK(b && set_str(b, "k", "v", 0) == CACHE_OK);
    entry_path(dir, "k", p, sizeof p);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0644);
    /* overwrite keeps the mode */
    CHECK(b && set_str(b, "k", "w", 0) == CACHE_OK);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0644);
    cache_close(b);

    umask(0);
    new_dir(dir, sizeof dir);
    b = open_fs(dir, -1, 0640);
    CHECK(b && set_str(b, "k", "v", 0) == CACHE_OK);
    entry_path(dir, "k", p, sizeof p);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0640);
    cache_close(b);
    umask(old);
}

/* ---- corrupt and foreign files ---------------------------------------------- */

static void test_corrupt_and_foreign(void)
{
    char dir[256], p[512];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, -1, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_err err = {0};
    char v[64];
    unsigned char good[64];

    CHECK(set_str(b, "k", "value", 0) == CACHE_OK);
    entry_path(dir, "k", p, sizeof p);
    long glen = slurp(p, good, sizeof good);
    CHECK(glen == 16 + 6);

    /* garbage (a foreign file at an entry's name) */
    spit(p, "hello, world, not ours", 22);
    CHECK(get_str(b, "k", v, sizeof v) == CACHE_MISS);
    CHECK(!exists(p));

    /* truncated header */
    spit(p, good, 10);
    CHECK(cache_has(b, S("k"), &err) == CACHE_MISS);
    CHECK(!exists(p));
    spit(p, good, 10);
    CHECK(get_str(b, "k", v, sizeof v) == CACHE_MISS);
    CHECK(!exists(p));

    /* truncated value: header fine, value cut short */
    spit(p, good, (size_t)glen - 2);
    memset(&err, 0, sizeof err);
    cache_buf out;
    cache_buf_init(&out);
    CHECK(cache_get(b, S("k"), &out, &err) == CACHE_MISS);
    CHECK(out.len == 0);
    CHECK(err.code == CACHE_FAIL && strstr(err.msg, "corrupt"));
    cache_buf_free(&out);
    CHECK(!exists(p));

    /* value followed by trailing bytes */
    unsigned char more[80];
    memcpy(more, good, (size_t)glen);
    more[glen] = 0xc0;
    spit(p, more, (size_t)glen + 1);
    CHECK(get_str(b, "k", v, sizeof v) == CACHE_MISS);
    CHECK(!exists(p));

    /* other format version, bad reserved byte, bad magic */
    memcpy(more, good, (size_t)glen);
    more[4] = 2;
    spit(p, more, (size_t)glen);
    CHECK(get_str(b, "k", v, sizeof v) == CACHE_MISS && !exists(p));
    memcpy(more, good, (size_t)glen);
    more[6] = 1;
    spit(p, more, (size_t)glen);
    CHECK(get_str(b, "k", v, sizeof v) == CACHE_MISS && !exists(p));
    memcpy(more, good, (size_t)glen);
    more[0] = 'X';
    spit(p, more, (size_t)glen);
    CHECK(cache_has(b, S("k"), &err) == CACHE_MISS && !exists(p));

    /* the good bytes written back by hand still read */
    spit(p, good, (size_t)glen);
    CHECK(get_str(b, "k", v, sizeof v) == CACHE_OK && !strcmp(v, "value"));

    /* empty file */
    spit(p, "", 0);
    CHECK(get_str(b, "k", v, sizeof v) == CACHE_MISS && !exists(p));

    /* add and set over a corrupt file */
    spit(p, "junk", 4);
    cache_buf buf;
    cache_buf_init(&buf);
    CHECK(cache_add(b, S("k"), enc_str(&buf, "added", 5), 0, &err) ==
          CACHE_OK);
    CHECK(get_str(b, "k", v, sizeof v) == CACHE_OK && !strcmp(v, "added"));
    cache_buf_free(&buf);

    /* a symlink is never followed: a miss, removed, its target untouched */
    char target[300];
    snprintf(target, sizeof target, "%s/precious.txt", root);
    spit(target, good, (size_t)glen); /* even a valid entry as target */
    entry_path(dir, "link", p, sizeof p);
    CHECK(symlink(target, p) == 0);
    CHECK(get_str(b, "link", v, sizeof v) == CACHE_MISS);
    CHECK(!exists(p));
    CHECK(symlink(target, p) == 0);
    CHECK(cache_has(b, S("link"), &err) == CACHE_MISS && !exists(p));
    /* set over a symlink replaces the link, not its target */
    CHECK(symlink(target, p) == 0);
    CHECK(set_str(b, "link", "mine", 0) == CACHE_OK);
    struct stat st;
    CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode));
    unsigned char t[64];
    CHECK(slurp(target, t, sizeof t) == glen && !memcmp(t, good, (size_t)glen));
    /* a dangling symlink */
    unlink(p);
    CHECK(symlink("/nonexistent/where", p) == 0);
    CHECK(get_str(b, "link", v, sizeof v) == CACHE_MISS && !exists(p));

    /* a FIFO at an entry's name does not block; it is removed */
    entry_path(dir, "fifo", p, sizeof p);
    CHECK(mkfifo(p, 0600) == 0);
    CHECK(get_str(b, "fifo", v, sizeof v) == CACHE_MISS && !exists(p));
    CHECK(mkfifo(p, 0600) == 0);
    CHECK(cache_has(b, S("fifo"), &err) == CACHE_MISS && !exists(p));

    /* a Unix socket at an entry's name: a miss, removed */
    entry_path(dir, "sock", p, sizeof p);
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    CHECK(strlen(p) < sizeof sa.sun_path);
    memcpy(sa.sun_path, p, strlen(p) < sizeof sa.sun_path ? strlen(p) + 1 : 0);
    CHECK(sfd >= 0 && bind(sfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    memset(&err, 0, sizeof err);
    CHECK(get_str(b, "sock", v, sizeof v) == CACHE_MISS && !exists(p));
    CHECK(err.code == 0);
    close(sfd);

    /* a directory at an entry's name is a miss and is left alone */
    entry_path(dir, "adir", p, sizeof p);
    CHECK(mkdir(p, 0700) == 0);
    CHECK(get_str(b, "adir", v, sizeof v) == CACHE_MISS && exists(p));
    CHECK(cache_has(b, S("adir"), &err) == CACHE_MISS && exists(p));
    CHECK(cache_del(b, S("adir"), &err) == CACHE_MISS && exists(p));
    memset(&err, 0, sizeof err);
    CHECK(set_str(b, "adir", "x", 0) == CACHE_FAIL); /* rename onto a dir */
    CHECK(exists(p) && count_names(dir, ".tmp-") == 0);
    CHECK(lstat(p, &st) == 0 && S_ISDIR(st.st_mode));
    rmdir(p);
    cache_close(b);
}

static void test_clear_leaves_foreign_files(void)
{
    char dir[256], p[512];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, 0, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_err err = {0};
    for (int i = 0; i < 5; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        CHECK(set_str(b, k, "v", 0) == CACHE_OK);
    }
    const char *foreign[] = {
        "README",
        "ACBD18DB4CC2F85CEDEF654FCCC4A4D8",          /* upper case */
        "acbd18db4cc2f85cedef654fccc4a4d",           /* 31 chars */
        "acbd18db4cc2f85cedef654fccc4a4d8a",         /* 33 chars */
        "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33", /* a sha1 name */
        "acbd18db4cc2f85cedef654fccc4a4dg",          /* not hex */
        ".tmp-zzzzzzzzzzzzzzzzzzzzzzzz",             /* not our pattern */
        ".tmp-0000000000000000000000001",            /* one too long */
        ".tmp-000000000000000000000001",             /* fresh temp file */
        "notes.tmp-000000000000000000000002",
    };
    size_t nf = sizeof foreign / sizeof foreign[0];
    for (size_t i = 0; i < nf; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, foreign[i]);
        spit(p, "keep", 4);
    }
    /* a stale temporary file (a crashed writer): removed */
    snprintf(p, sizeof p, "%s/.tmp-0000000000000000000000ff", dir);
    spit(p, "old", 3);
    set_mtime(p, wall() - 120);
    /* a subdirectory named like an entry: kept */
    char sub[512];
    snprintf(sub, sizeof sub, "%s/00000000000000000000000000000000", dir);
    CHECK(mkdir(sub, 0700) == 0);

    CHECK(cache_clear(b, &err) == CACHE_OK);
    for (int i = 0; i < 5; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        CHECK(!key_file_exists(dir, k));
    }
    for (size_t i = 0; i < nf; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, foreign[i]);
        CHECK(exists(p));
    }
    snprintf(p, sizeof p, "%s/.tmp-0000000000000000000000ff", dir);
    CHECK(!exists(p));
    CHECK(exists(sub));
    CHECK(count_names(dir, "") == (int)nf + 1);
    cache_close(b);
}

/* clear while another process writes and deletes: files vanishing under
 * the listing are not errors. */
static void test_clear_racing_writer(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, 0, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        cache_backend *c = open_fs(dir, 0, -1);
        for (int i = 0; c && i < 4000; i++) {
            char k[16];
            cache_err err = {0};
            snprintf(k, sizeof k, "r%d", i % 40);
            if (i % 2)
                cache_del(c, S(k), &err);
            else
                set_str(c, k, "v", 0);
        }
        _exit(0);
    }
    int fails = 0, clears = 0;
    cache_err err = {0};
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        for (int i = 0; i < 40; i++) {
            char k[16];
            snprintf(k, sizeof k, "r%d", i);
            cache_del(b, S(k), &err); /* delete too, to race the listing */
        }
        memset(&err, 0, sizeof err);
        if (cache_clear(b, &err) != CACHE_OK) {
            if (!fails)
                printf("  clear: %s\n", err.msg);
            fails++;
        }
        clears++;
    }
    printf("  %d clears racing a writer: %d failed\n", clears, fails);
    CHECK(fails == 0 && clears > 0);
    cache_close(b);
}

/* ---- incr ------------------------------------------------------------------ */

static void test_incr(void)
{
    char dir[256], p[512];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, -1, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_err err = {0};
    cache_buf buf;
    cache_buf_init(&buf);
    unsigned char f[64];
    int64_t r = 0;

    /* missing: starts at delta, stored with new_ttl */
    double t0 = wall();
    CHECK(cache_incr(b, S("n"), 5, 100, &r, &err) == CACHE_OK && r == 5);
    entry_path(dir, "n", p, sizeof p);
    CHECK(slurp(p, f, sizeof f) > 16);
    int64_t e = header_expiry(f);
    CHECK(e >= (int64_t)(t0 * 1000) + 100000 &&
          e <= (int64_t)(wall() * 1000) + 100001);
    /* existing: keeps its expiry */
    CHECK(cache_incr(b, S("n"), -7, 0, &r, &err) == CACHE_OK && r == -2);
    CHECK(slurp(p, f, sizeof f) > 16 && header_expiry(f) == e);
    cache_buf out;
    cache_buf_init(&out);
    int64_t iv = 0;
    CHECK(cache_get(b, S("n"), &out, &err) == CACHE_OK);
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &iv) && iv == -2);
    cache_buf_free(&out);

    /* not an integer: refused, the entry untouched */
    CHECK(set_str(b, "s", "text", 0) == CACHE_OK);
    memset(&err, 0, sizeof err);
    CHECK(cache_incr(b, S("s"), 1, 0, &r, &err) == CACHE_ENOTINT);
    char v[16];
    CHECK(get_str(b, "s", v, sizeof v) == CACHE_OK && !strcmp(v, "text"));

    /* overflow */
    CHECK(cache_set(b, S("max"), enc_int(&buf, INT64_MAX), 0, &err) ==
          CACHE_OK);
    CHECK(cache_incr(b, S("max"), 1, 0, &r, &err) == CACHE_ENOTINT);
    CHECK(cache_incr(b, S("max"), -1, 0, &r, &err) == CACHE_OK &&
          r == INT64_MAX - 1);

    /* expired: starts over with new_ttl */
    CHECK(cache_set(b, S("x"), enc_int(&buf, 40), -1, &err) == CACHE_OK);
    CHECK(cache_incr(b, S("x"), 2, 0, &r, &err) == CACHE_OK && r == 2);
    entry_path(dir, "x", p, sizeof p);
    CHECK(slurp(p, f, sizeof f) > 16 && header_expiry(f) == 0);

    /* corrupt: starts over */
    spit(p, "junk", 4);
    CHECK(cache_incr(b, S("x"), 3, 0, &r, &err) == CACHE_OK && r == 3);
    cache_buf_free(&buf);
    cache_close(b);
}

/* ---- threshold ------------------------------------------------------------ */

typedef struct lock_release {
    int fd;
    double after;
} lock_release;

static void *release_later(void *p)
{
    lock_release *r = p;
    sleep_s(r->after);
    flock(r->fd, LOCK_UN);
    return NULL;
}

/* incr waits for the directory's flock at most the option timeout, whoever
 * holds it (here another descriptor of this very process), then fails;
 * a lock released within the timeout is taken. */
static void test_incr_lock_timeout(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs_t(dir, -1, -1, 0.2);
    CHECK(b != NULL);
    if (!b)
        return;
    int64_t r = 0;
    cache_err err = {0};
    CHECK(cache_incr(b, S("n"), 1, 0, &r, &err) == CACHE_OK && r == 1);
    int holder = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(holder >= 0 && flock(holder, LOCK_EX) == 0);
    double t0 = mono();
    CHECK(cache_incr(b, S("n"), 1, 0, &r, &err) == CACHE_FAIL);
    double took = mono() - t0;
    printf("  lock held: %s (after %.3f s)\n", err.msg, took);
    CHECK(took >= 0.19 && took < 10);
    CHECK(strstr(err.msg, "timeout") != NULL);
    cache_close(b);

    /* released while incr waits: incr goes on */
    b = open_fs_t(dir, -1, -1, 30);
    CHECK(b != NULL);
    if (!b)
        return;
    lock_release rel = {holder, 0.3};
    pthread_t th;
    pthread_create(&th, NULL, release_later, &rel);
    t0 = mono();
    CHECK(cache_incr(b, S("n"), 1, 0, &r, &err) == CACHE_OK && r == 2);
    CHECK(mono() - t0 >= 0.25);
    pthread_join(th, NULL);
    close(holder);
    cache_close(b);

    /* the option: seconds, 0 = no limit; anything else is refused */
    optset o;
    opts_init(&o);
    opt_str(&o, "cache_dir", dir);
    opt_num(&o, "timeout", -1);
    CHECK(cache_open("FileSystemCache", &o.opts, &err) == NULL &&
          err.code == CACHE_EINVAL && strstr(err.msg, "'timeout'"));
    opts_init(&o);
    opt_str(&o, "cache_dir", dir);
    opt_str(&o, "timeout", "1");
    CHECK(cache_open("FileSystemCache", &o.opts, &err) == NULL &&
          err.code == CACHE_EINVAL && strstr(err.msg, "'timeout'"));
}

static void test_threshold_expired_first_then_oldest(void)
{
    char dir[256], p[512];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, 10, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    char k[16];
    double now = wall();
    /* 3 expired entries with the NEWEST mtimes, 7 live ones older */
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof k, "e%d", i);
        CHECK(set_str(b, k, "v", -1) == CACHE_OK);
        entry_path(dir, k, p, sizeof p);
        set_mtime(p, now + 100);
    }
    for (int i = 0; i < 7; i++) {
        snprintf(k, sizeof k, "p%d", i);
        CHECK(set_str(b, k, "v", 0) == CACHE_OK);
        entry_path(dir, k, p, sizeof p);
        set_mtime(p, now - 1000 + i);
    }
    CHECK(count_names(dir, "") == 10); /* at threshold: nothing pruned */
    /* the expiry hint in the atime: far future for "never", else expiry */
    struct stat st;
    entry_path(dir, "p0", p, sizeof p);
    CHECK(stat(p, &st) == 0 && st.st_atim.tv_sec > (time_t)now + (time_t)100 * 365 * 86400);
    entry_path(dir, "e0", p, sizeof p);
    CHECK(stat(p, &st) == 0 && st.st_atim.tv_sec <= (time_t)now);
    CHECK(set_str(b, "t0", "v", 100) == CACHE_OK);
    entry_path(dir, "t0", p, sizeof p);
    CHECK(stat(p, &st) == 0 && st.st_atim.tv_sec >= (time_t)now + 99 &&
          st.st_atim.tv_sec <= (time_t)wall() + 101);
    CHECK(cache_del(b, S("t0"), NULL) == CACHE_OK);
    CHECK(set_str(b, "p7", "v", 0) == CACHE_OK); /* 11 > 10: prune to 9 */
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof k, "e%d", i);
        CHECK(!key_file_exists(dir, k));
    }
    for (int i = 0; i < 8; i++) {
        snprintf(k, sizeof k, "p%d", i);
        CHECK(key_file_exists(dir, k));
    }
    CHECK(count_names(dir, "") == 8);

    /* no expired entries: the oldest by mtime go. The atime hint of half
     * of them is lost (as a read on a strictatime mount would do): their
     * header decides, and they are live. */
    for (int i = 0; i < 8; i++) {
        snprintf(k, sizeof k, "p%d", i);
        entry_path(dir, k, p, sizeof p);
        set_mtime(p, now - 1000 + i);
        if (i % 2)
            set_atime(p, now - 500);
    }
    CHECK(set_str(b, "q0", "v", 0) == CACHE_OK);
    CHECK(set_str(b, "q1", "v", 0) == CACHE_OK);
    CHECK(count_names(dir, "") == 10);
    CHECK(set_str(b, "q2", "v", 0) == CACHE_OK); /* 11: prune to 9 */
    CHECK(count_names(dir, "") == 9);
    CHECK(!key_file_exists(dir, "p0") && !key_file_exists(dir, "p1"));
    for (int i = 2; i < 8; i++) {
        snprintf(k, sizeof k, "p%d", i);
        CHECK(key_file_exists(dir, k));
    }
    CHECK(key_file_exists(dir, "q0") && key_file_exists(dir, "q1") &&
          key_file_exists(dir, "q2"));
    /* overwriting an existing key does not count as a new entry */
    for (int i = 0; i < 20; i++)
        CHECK(set_str(b, "q2", "w", 0) == CACHE_OK);
    CHECK(count_names(dir, "") == 9);
    /* foreign files are not entries: never counted, never pruned */
    snprintf(p, sizeof p, "%s/README", dir);
    spit(p, "keep", 4);
    CHECK(set_str(b, "r0", "v", 0) == CACHE_OK);
    CHECK(set_str(b, "r1", "v", 0) == CACHE_OK); /* 11 */
    CHECK(exists(p));
    CHECK(count_names(dir, "") == 9 + 1);
    cache_close(b);
}

static void test_threshold_small_and_amortised(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, 1, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    /* threshold 1: the entry just written always survives */
    char k[32], v[16];
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "k%d", i);
        CHECK(set_str(b, k, "v", 0) == CACHE_OK);
        CHECK(get_str(b, k, v, sizeof v) == CACHE_OK);
        CHECK(count_names(dir, "") == 1);
    }
    cache_close(b);

    /* threshold 100: never above 100, pruned to 90 */
    new_dir(dir, sizeof dir);
    b = open_fs(dir, 100, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    int maxn = 0, minn = 1000;
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        CHECK(set_str(b, k, "v", 0) == CACHE_OK);
        if (i >= 100) {
            int n = count_names(dir, "");
            if (n > maxn)
                maxn = n;
            if (n < minn)
                minn = n;
        }
    }
    printf("  threshold 100 after 1000 new keys: %d..%d files\n", minn, maxn);
    CHECK(maxn <= 100 && minn >= 90);
    cache_close(b);

    /* the count is taken from the directory at open */
    b = open_fs(dir, 50, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK(set_str(b, "one more", "v", 0) == CACHE_OK);
    int n = count_names(dir, "");
    CHECK(n == 45);
    cache_close(b);

    /* threshold 0: unlimited */
    new_dir(dir, sizeof dir);
    b = open_fs(dir, 0, -1);
    for (int i = 0; b && i < 700; i++) {
        snprintf(k, sizeof k, "key%d", i);
        CHECK(set_str(b, k, "v", 0) == CACHE_OK);
    }
    CHECK(count_names(dir, "") == 700);
    cache_close(b);
}

/* ---- write failures ---------------------------------------------------------- */

/* In a child: RLIMIT_FSIZE of 4096 bytes, SIGXFSZ ignored or default. Exit
 * status 0 when everything held. */
static int fsize_child(const char *dir, int ignore_sigxfsz)
{
    if (ignore_sigxfsz)
        signal(SIGXFSZ, SIG_IGN);
    else
        signal(SIGXFSZ, SIG_DFL);
    cache_backend *b = open_fs(dir, -1, -1);
    if (!b)
        return 10;
    cache_buf buf;
    cache_buf_init(&buf);
    cache_err err = {0};
    if (set_str(b, "k", "small and fine", 0) != CACHE_OK)
        return 11;
    struct rlimit rl = {4096, 4096};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 12;
    char *big = malloc(10000);
    memset(big, 'x', 10000);
    int rc = cache_set(b, S("k"), enc_str(&buf, big, 10000), 0, &err);
    if (rc != CACHE_FAIL)
        return 13;
    if (!strstr(err.msg, dir) || !strstr(err.msg, "too large"))
        return 14;
    printf("  %s\n", err.msg);
    /* the old entry is intact, nothing left behind */
    char v[32];
    if (get_str(b, "k", v, sizeof v) != CACHE_OK || strcmp(v, "small and fine"))
        return 15;
    if (count_names(dir, ".tmp-") != 0 || count_names(dir, "") != 1)
        return 16;
    if (cache_set(b, S("new"), enc_str(&buf, big, 5000), 0, &err) !=
            CACHE_FAIL ||
        key_file_exists(dir, "new"))
        return 17;
    if (cache_add(b, S("new2"), enc_str(&buf, big, 5000), 0, &err) !=
            CACHE_FAIL ||
        key_file_exists(dir, "new2"))
        return 18;
    /* just under the limit still works */
    if (cache_set(b, S("new"), enc_str(&buf, big, 4000), 0, &err) != CACHE_OK)
        return 19;
    if (count_names(dir, ".tmp-") != 0)
        return 20;
    free(big);
    cache_buf_free(&buf);
    cache_close(b);
    return 0;
}

static int run_child(int (*fn)(const char *, int), const char *dir, int arg)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = fn(dir, arg);
        fflush(stdout);
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        return 1000 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static void test_write_failure_fsize(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    int rc = run_child(fsize_child, dir, 1);
    if (rc)
        printf("  child (SIGXFSZ ignored) failed with %d\n", rc);
    CHECK(rc == 0);
    new_dir(dir, sizeof dir);
    rc = run_child(fsize_child, dir, 0);
    if (rc)
        printf("  child (SIGXFSZ default) failed with %d\n", rc);
    CHECK(rc == 0);
}

/* Bytes this process has read so far (read(2) and the like, whatever the
 * file), or -1 where the kernel does not count them. */
static long long io_rchar(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return -1;
    long long n = -1;
    char line[128];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "rchar: %lld", &n) == 1)
            break;
    fclose(f);
    return n;
}

#define HUGE_FOREIGN (100L << 20)

/* A sparse HUGE_FOREIGN-byte file at key's name whose first bytes are not
 * an entry's header. */
static void make_huge_foreign(const char *dir, const char *key)
{
    char p[512];
    entry_path(dir, key, p, sizeof p);
    spit(p, "not an entry's header at all", 28);
    if (truncate(p, HUGE_FOREIGN) != 0)
        printf("  truncate %s: %s\n", p, strerror(errno));
}

/* ASan reserves terabytes of shadow memory: no RLIMIT_AS to speak of. */
#if !defined(__SANITIZE_ADDRESS__)
/* In a child whose address space may grow by only 32 MB: a get of the huge
 * foreign file is a plain miss (reading it in full would run out of
 * memory). Exit status 0 when that held. */
static int huge_foreign_child(const char *dir, int unused)
{
    (void)unused;
    cache_backend *b = open_fs(dir, -1, -1);
    if (!b)
        return 10;
    make_huge_foreign(dir, "huge");
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f || fscanf(f, "%lu", &pages) != 1)
        return 11;
    fclose(f);
    rlim_t as = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (32L << 20);
    struct rlimit rl = {as, as};
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        return 12;
    cache_buf out;
    cache_buf_init(&out);
    cache_err err = {0};
    int rc = cache_get(b, S("huge"), &out, &err);
    if (rc != CACHE_MISS) {
        printf("  get under RLIMIT_AS: %d %s\n", rc, err.msg);
        return 13;
    }
    if (key_file_exists(dir, "huge"))
        return 14;
    cache_buf_free(&out);
    cache_close(b);
    return 0;
}
#endif

/* A huge (sparse) foreign file at an entry's name whose header already
 * shows it is not an entry is judged by that header: a miss and removed,
 * without reading (or allocating) its size. */
static void test_huge_foreign_file(void)
{
    char dir[256], p[512];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, -1, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    make_huge_foreign(dir, "huge");
    entry_path(dir, "huge", p, sizeof p);
    struct stat st;
    CHECK(stat(p, &st) == 0 && st.st_size == HUGE_FOREIGN);
    cache_buf out;
    cache_buf_init(&out);
    cache_err err = {0};
    long long before = io_rchar();
    CHECK(cache_get(b, S("huge"), &out, &err) == CACHE_MISS);
    long long after = io_rchar();
    CHECK(out.len == 0 && !exists(p));
    CHECK(err.code == CACHE_FAIL && strstr(err.msg, "corrupt"));
    if (before >= 0 && after >= 0) {
        if (after - before >= (1LL << 20))
            printf("  the get read %lld bytes\n", after - before);
        CHECK(after - before < (1LL << 20));
    }
    CHECK(out.cap < (1u << 20));
    cache_buf_free(&out);
    /* has reads the header only, as ever */
    make_huge_foreign(dir, "huge");
    CHECK(cache_has(b, S("huge"), &err) == CACHE_MISS && !exists(p));
    cache_close(b);
#if !defined(__SANITIZE_ADDRESS__)
    new_dir(dir, sizeof dir);
    int rc = run_child(huge_foreign_child, dir, 0);
    if (rc)
        printf("  child failed with %d\n", rc);
    CHECK(rc == 0);
#endif
}

/* In a child with its own mount namespace: a 64 KiB tmpfs as cache_dir,
 * so that a write fails midway with ENOSPC. 77 = cannot set up (skip). */
static int enospc_child(const char *dir, int unused)
{
    (void)unused;
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mkdir(dir, 0700) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0)
        return 77;
    cache_backend *b = open_fs(dir, -1, -1);
    if (!b)
        return 10;
    cache_buf buf;
    cache_buf_init(&buf);
    cache_err err = {0};
    if (set_str(b, "k", "old value", 0) != CACHE_OK)
        return 11;
    size_t n = 1 << 20;
    char *big = malloc(n);
    memset(big, 'y', n);
    int rc = cache_set(b, S("k"), enc_str(&buf, big, n), 0, &err);
    if (rc != CACHE_FAIL)
        return 12;
    printf("  %s\n", err.msg);
    if (!strstr(err.msg, dir) || !strstr(err.msg, "No space left"))
        return 13;
    char v[32];
    if (get_str(b, "k", v, sizeof v) != CACHE_OK || strcmp(v, "old value"))
        return 14;
    if (count_names(dir, ".tmp-") != 0 || count_names(dir, "") != 1)
        return 15;
    if (cache_add(b, S("k2"), enc_str(&buf, big, n), 0, &err) != CACHE_FAIL ||
        count_names(dir, "") != 1)
        return 16;
    int64_t r;
    if (cache_incr(b, S("c"), 1, 0, &r, &err) != CACHE_OK) /* room again */
        return 17;
    free(big);
    cache_buf_free(&buf);
    cache_close(b);
    umount(dir);
    return 0;
}

static int enospc_rc; /* the child's status, run by main (77 = skip) */

static void test_write_failure_enospc(void)
{
    if (enospc_rc)
        printf("  child failed with %d\n", enospc_rc);
    CHECK(enospc_rc == 0);
}

static int run_enospc_child(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    int rc = run_child(enospc_child, dir, 0);
    rmdir(dir);
    return rc;
}

/* ---- several processes ----------------------------------------------------------- */

#define NPROC 4
#define NOPS 2500
#define NKEYS 50

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

/* A value: [writer, seq, payload, checksum of payload and writer/seq]. */
static cache_str make_value(cache_buf *buf, int writer, int seq, char *pay,
                            size_t n)
{
    for (size_t i = 0; i < n; i++)
        pay[i] = (char)('A' + (writer * 7 + seq + (int)i) % 58);
    buf->len = 0;
    cache_writer w;
    cache_writer_init(&w, buf);
    cache_write_array(&w, 4);
    cache_write_int(&w, writer);
    cache_write_int(&w, seq);
    cache_write_str(&w, pay, n);
    cache_write_int(&w, (int64_t)((fnv1a(pay, n) ^ (uint64_t)(writer * 1000003 + seq)) >> 1));
    return (cache_str){buf->data, buf->len};
}

/* 1 when the bytes are a value make_value made, intact. */
static int check_value(const cache_buf *v)
{
    if (cache_validate(v->data, v->len, NULL) != CACHE_OK)
        return 0;
    cache_reader r;
    cache_item a, w, s, p, c;
    cache_reader_init(&r, v->data, v->len);
    if (cache_reader_next(&r, &a) || a.type != CACHE_V_ARRAY || a.len != 4 ||
        cache_reader_next(&r, &w) || w.type != CACHE_V_INT ||
        cache_reader_next(&r, &s) || s.type != CACHE_V_INT ||
        cache_reader_next(&r, &p) || p.type != CACHE_V_STR ||
        cache_reader_next(&r, &c) || c.type != CACHE_V_INT)
        return 0;
    uint64_t want = (fnv1a(p.s, p.len) ^ (uint64_t)(w.i * 1000003 + s.i)) >> 1;
    return c.i == (int64_t)want;
}

typedef struct mp_result {
    int sets, hits, misses, bad, corrupt, failures;
} mp_result;

static void mixed_worker(const char *dir, int id, int threshold, int fd)
{
    mp_result res = {0};
    cache_backend *b = open_fs(dir, threshold, -1);
    if (!b) {
        res.failures = 1;
    } else {
        cache_buf val, out;
        cache_buf_init(&val);
        cache_buf_init(&out);
        char *pay = malloc(8192);
        unsigned seed = (unsigned)(id * 7919 + 1);
        for (int i = 0; i < NOPS; i++) {
            char k[32];
            seed = seed * 1103515245u + 12345u;
            int nkeys = threshold ? 4 * NKEYS : NKEYS;
            snprintf(k, sizeof k, "key%u", (seed >> 8) % (unsigned)nkeys);
            cache_err err = {0};
            if ((seed >> 20) % 2 == 0) {
                size_t n = (seed >> 4) % 6000;
                cache_str v = make_value(&val, id, i, pay, n);
                if (cache_set(b, S(k), v, 0, &err) == CACHE_OK)
                    res.sets++;
                else
                    res.failures++;
            } else {
                out.len = 0;
                int rc = b->vt->get(b, S(k), &out, &err); /* raw bytes */
                if (rc == CACHE_OK)
                    res.hits++, res.bad += !check_value(&out);
                else if (rc == CACHE_MISS)
                    res.misses++, res.corrupt += err.code == CACHE_FAIL;
                else
                    res.failures++;
            }
        }
        free(pay);
        cache_buf_free(&val);
        cache_buf_free(&out);
        cache_close(b);
    }
    if (write(fd, &res, sizeof res) != sizeof res)
        _exit(3);
}

static void run_mixed(int threshold)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    /* Every key exists before the workers start: without threshold no get
     * may miss (a torn entry would read as corrupt: a miss, and removed). */
    cache_backend *b = open_fs(dir, threshold, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    cache_buf val;
    cache_buf_init(&val);
    char pay[64];
    for (int i = 0; i < (threshold ? 4 * NKEYS : NKEYS); i++) {
        char k[32];
        cache_err err = {0};
        snprintf(k, sizeof k, "key%d", i);
        CHECK(cache_set(b, S(k), make_value(&val, 0, i, pay, sizeof pay), 0,
                        &err) == CACHE_OK);
    }
    cache_buf_free(&val);
    cache_close(b);
    int fds[NPROC][2];
    pid_t pids[NPROC];
    fflush(stdout);
    for (int i = 0; i < NPROC; i++) {
        if (pipe(fds[i]) != 0)
            return;
        pids[i] = fork();
        if (pids[i] == 0) {
            close(fds[i][0]);
            mixed_worker(dir, i + 1, threshold, fds[i][1]);
            _exit(0);
        }
        close(fds[i][1]);
    }
    mp_result tot = {0};
    for (int i = 0; i < NPROC; i++) {
        mp_result r = {0, 0, 0, 0, 0, 1};
        if (read(fds[i][0], &r, sizeof r) != sizeof r)
            r.failures = 1;
        close(fds[i][0]);
        int st;
        waitpid(pids[i], &st, 0);
        tot.sets += r.sets;
        tot.hits += r.hits;
        tot.misses += r.misses;
        tot.bad += r.bad;
        tot.corrupt += r.corrupt;
        tot.failures += r.failures;
    }
    int files = count_names(dir, "");
    printf("  %d processes x %d ops, threshold %d: %d sets, %d hits, %d "
           "misses, %d bad reads, %d corrupt, %d failures, %d files, %d temp "
           "files\n",
           NPROC, NOPS, threshold, tot.sets, tot.hits, tot.misses, tot.bad,
           tot.corrupt, tot.failures, files, count_names(dir, ".tmp-"));
    CHECK(tot.sets + tot.hits + tot.misses == NPROC * NOPS);
    CHECK(tot.bad == 0 && tot.corrupt == 0 && tot.failures == 0);
    CHECK(tot.hits > 0);
    if (!threshold)
        CHECK(tot.misses == 0);
    CHECK(count_names(dir, ".tmp-") == 0);
    if (threshold)
        CHECK(files <= threshold + NPROC * (threshold / 10 + 1));
}

static void test_processes_mixed(void) { run_mixed(0); }
static void test_processes_mixed_pruning(void) { run_mixed(20); }

static void incr_worker(const char *dir, int id, int fd)
{
    int ok = 0;
    cache_backend *b = open_fs_t(dir, -1, -1, PATIENT);
    for (int i = 0; b && i < 500; i++) {
        int64_t r;
        cache_err err = {0};
        ok += cache_incr(b, S("counter"), 1, 0, &r, &err) == CACHE_OK;
    }
    /* add races: of all processes, exactly one add per key succeeds */
    for (int i = 0; b && i < 100; i++) {
        char k[32];
        cache_buf buf;
        cache_buf_init(&buf);
        cache_err err = {0};
        snprintf(k, sizeof k, "race%d", i);
        if (cache_add(b, S(k), enc_int(&buf, id), 0, &err) == CACHE_OK)
            ok += 100000;
        cache_buf_free(&buf);
    }
    cache_close(b);
    if (write(fd, &ok, sizeof ok) != sizeof ok)
        _exit(3);
}

static void test_processes_incr_and_add(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, -1, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    int fds[NPROC][2];
    pid_t pids[NPROC];
    fflush(stdout);
    for (int i = 0; i < NPROC; i++) {
        if (pipe(fds[i]) != 0)
            return;
        pids[i] = fork();
        if (pids[i] == 0) {
            close(fds[i][0]);
            incr_worker(dir, i + 1, fds[i][1]);
            _exit(0);
        }
        close(fds[i][1]);
    }
    int incrs = 0, adds = 0;
    for (int i = 0; i < NPROC; i++) {
        int ok = 0;
        if (read(fds[i][0], &ok, sizeof ok) != sizeof ok)
            ok = 0;
        close(fds[i][0]);
        waitpid(pids[i], NULL, 0);
        incrs += ok % 100000;
        adds += ok / 100000;
    }
    cache_buf out;
    cache_buf_init(&out);
    cache_err err = {0};
    int64_t v = -1;
    CHECK(cache_get(b, S("counter"), &out, &err) == CACHE_OK);
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &v));
    printf("  %d processes x 500 incr: counter = %lld (%d ok); 100 add races: "
           "%d won\n",
           NPROC, (long long)v, incrs, adds);
    CHECK(incrs == NPROC * 500 && v == NPROC * 500);
    CHECK(adds == 100);
    CHECK(count_names(dir, ".tmp-") == 0);
    cache_buf_free(&out);
    cache_close(b);
}

/* Threads of one process share one cache object: its entry count and
 * pruning are guarded, incr excludes other threads too. */
#define NTHREADS 4

typedef struct thread_arg {
    cache_backend *b;
    int id, bad, failures, incr_ok;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *a = p;
    cache_buf val, out;
    cache_buf_init(&val);
    cache_buf_init(&out);
    char pay[512];
    unsigned seed = (unsigned)a->id * 2654435761u;
    for (int i = 0; i < 2000; i++) {
        char k[32];
        cache_err err = {0};
        seed = seed * 1103515245u + 12345u;
        snprintf(k, sizeof k, "t%u", (seed >> 8) % 200);
        if ((seed >> 20) % 2) {
            cache_str v = make_value(&val, a->id, i, pay, (seed >> 4) % 512);
            a->failures += cache_set(a->b, S(k), v, 0, &err) != CACHE_OK;
        } else {
            out.len = 0;
            int rc = a->b->vt->get(a->b, S(k), &out, &err);
            if (rc == CACHE_OK)
                a->bad += !check_value(&out);
            else if (rc == CACHE_MISS)
                a->bad += err.code == CACHE_FAIL;
            else
                a->failures++;
        }
        if (i % 4 == 0) {
            int64_t r;
            a->incr_ok += cache_incr(a->b, S("tcount"), 1, 0, &r, &err) ==
                          CACHE_OK;
        }
    }
    cache_buf_free(&val);
    cache_buf_free(&out);
    return NULL;
}

static void test_threads(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs_t(dir, 50, -1, PATIENT);
    CHECK(b != NULL);
    if (!b)
        return;
    pthread_t th[NTHREADS];
    thread_arg args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (thread_arg){b, i + 1, 0, 0, 0};
        pthread_create(&th[i], NULL, thread_main, &args[i]);
    }
    int bad = 0, failures = 0, incrs = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].bad;
        failures += args[i].failures;
        incrs += args[i].incr_ok;
    }
    cache_buf out;
    cache_buf_init(&out);
    cache_err err = {0};
    int64_t v = -1;
    int rc = cache_get(b, S("tcount"), &out, &err);
    /* the counter may have been pruned (threshold 50): then it restarted */
    if (rc == CACHE_OK)
        cache_value_as_int((cache_str){out.data, out.len}, &v);
    int files = count_names(dir, "");
    printf("  %d threads x 2000 ops, threshold 50: %d bad, %d failures, "
           "%d incr ok (counter %lld), %d files\n",
           NTHREADS, bad, failures, incrs, (long long)v, files);
    CHECK(bad == 0 && failures == 0 && incrs == NTHREADS * 500);
    CHECK(files <= 50 && count_names(dir, ".tmp-") == 0);
    cache_buf_free(&out);
    cache_close(b);

    /* without pruning the counter must be exact */
    new_dir(dir, sizeof dir);
    b = open_fs_t(dir, 0, -1, PATIENT);
    CHECK(b != NULL);
    if (!b)
        return;
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (thread_arg){b, i + 1, 0, 0, 0};
        pthread_create(&th[i], NULL, thread_main, &args[i]);
    }
    incrs = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        incrs += args[i].incr_ok;
        CHECK(args[i].bad == 0 && args[i].failures == 0);
    }
    cache_buf_init(&out);
    CHECK(cache_get(b, S("tcount"), &out, &err) == CACHE_OK);
    CHECK(cache_value_as_int((cache_str){out.data, out.len}, &v) &&
          v == NTHREADS * 500 && incrs == NTHREADS * 500);
    cache_buf_free(&out);
    cache_close(b);
}

/* A cache object inherited through fork keeps working in both processes. */
static void test_fork_inherits(void)
{
    char dir[256];
    new_dir(dir, sizeof dir);
    cache_backend *b = open_fs(dir, 5, -1);
    CHECK(b != NULL);
    if (!b)
        return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        for (int i = 0; i < 50; i++) {
            char k[16];
            snprintf(k, sizeof k, "c%d", i);
            bad += set_str(b, k, "child", 0) != CACHE_OK;
        }
        _exit(bad);
    }
    int bad = 0;
    for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "p%d", i);
        bad += set_str(b, k, "parent", 0) != CACHE_OK;
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(bad == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(count_names(dir, ".tmp-") == 0);
    CHECK(count_names(dir, "") <= 5 + 1);
    cache_close(b);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/test_filesystem.XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_options);
    RUN(test_dir_created_recursively);
    RUN(test_basic_ops);
    RUN(test_file_format_and_ttl);
    RUN(test_modes);
    RUN(test_corrupt_and_foreign);
    RUN(test_clear_leaves_foreign_files);
    RUN(test_clear_racing_writer);
    RUN(test_incr);
    RUN(test_incr_lock_timeout);
    RUN(test_threshold_expired_first_then_oldest);
    RUN(test_threshold_small_and_amortised);
    RUN(test_write_failure_fsize);
    RUN(test_huge_foreign_file);
    enospc_rc = geteuid() == 0 ? run_enospc_child() : 77;
    if (enospc_rc == 77)
        SKIP(test_write_failure_enospc,
             "cannot mount a small tmpfs here (needs root)");
    else
        RUN(test_write_failure_enospc);
    RUN(test_processes_mixed);
    RUN(test_processes_mixed_pruning);
    RUN(test_processes_incr_and_add);
    RUN(test_threads);
    RUN(test_fork_inherits);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        printf("could not remove %s\n", root);
    CTEST_END();
}
