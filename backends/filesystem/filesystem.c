/*
 * filesystem.c - FileSystemCache: one file per key in one directory, safe to
 * share between processes. This file holds the operations (the vtable), the
 * options and the constructor; the rest of the backend sits beside it, each
 * file saying at its top what it does and what must stay true:
 *
 *   fs_internal.h   what the files share: the object, the constants, the
 *                   functions one file offers the others
 *   fs_entry.c      entry names, the file format, reading and judging an
 *                   entry, removing one that is expired or not an entry
 *   fs_write.c      writing an entry atomically through a temporary file
 *   fs_readcache.c  the read cache, its process-wide descriptor budget, and
 *                   fs_openat, through which every open goes
 *   fs_prune.c      listing the directory, the count of entries, pruning
 *                   to threshold
 *   fs_lock.c       the cross-process lock of incr
 *
 * What must stay true here: an operation that replaces or removes an entry
 * drops this process's read-cache slot of it first (fs_rc_forget; add need
 * not: a stale slot is caught by its fstatat); a write that created a new
 * file is counted with fs_note_new_entry and a removal with fs_count_add,
 * so that threshold sees the directory as it is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "codec.h"
#include "digest.h"
#include "fs_internal.h"

/* ---- the operations ----------------------------------------------------- */

static int fs_get(cache_backend *b, cache_str key, cache_buf *out,
                  cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    char name[FS_NAME_MAX];
    int rc = fs_key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    if (fs_rc_get(fs, name, out))
        return CACHE_OK;
    int64_t exp;
    int st = fs_read_entry_keep(fs, name, out, &exp, 1, err);
    if (st < 0)
        return st;
    return st == ENT_LIVE ? CACHE_OK : CACHE_MISS;
}

static int fs_has(cache_backend *b, cache_str key, cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    char name[FS_NAME_MAX];
    int rc = fs_key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    int64_t exp;
    int st = fs_read_entry(fs, name, NULL, &exp, err);
    if (st < 0)
        return st;
    return st == ENT_LIVE ? CACHE_OK : CACHE_MISS;
}

/* add: refused only by a live entry. An expired or corrupt one is removed
 * by the check, then the new file goes in with no-replace semantics, so of
 * two processes adding at once exactly one wins. */
static int fs_add(fs_cache *fs, const char *name, cache_str value,
                  int64_t expiry, cache_err *err)
{
    for (int tries = 0; tries < 3; tries++) {
        int64_t exp;
        int st = fs_read_entry(fs, name, NULL, &exp, err);
        if (st < 0)
            return st;
        if (st == ENT_LIVE)
            return CACHE_EXISTS;
        int created;
        int rc = fs_write_entry(fs, name, value, expiry, PLACE_NOREPLACE,
                                &created, err);
        if (rc == CACHE_OK)
            fs_note_new_entry(fs, name);
        if (rc != CACHE_EXISTS)
            return rc;
        /* someone put a file there meanwhile: is it live? */
    }
    return CACHE_EXISTS;
}

static int fs_set(cache_backend *b, cache_str key, cache_str value,
                  double ttl, int only_if_absent, cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    char name[FS_NAME_MAX];
    int rc = fs_key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    int64_t expiry;
    if (fs_expiry_of_ttl(ttl, &expiry) != 0)
        return cache_fail(err, CACHE_EINVAL, "timeout is not a number");
    if (only_if_absent) /* a stale slot is caught by its fstatat */
        return fs_add(fs, name, value, expiry, err);
    fs_rc_forget(fs, name);
    int created;
    rc = fs_write_entry(fs, name, value, expiry,
                        PLACE_REPLACE, &created,
                        err);
    if (rc == CACHE_OK && created)
        fs_note_new_entry(fs, name);
    return rc;
}

static int fs_del(cache_backend *b, cache_str key, cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    char name[FS_NAME_MAX];
    int rc = fs_key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    fs_rc_forget(fs, name);
    if (unlinkat(fs->dirfd, name, 0) == 0) {
        fs_count_add(fs, -1);
        return CACHE_OK;
    }
    if (errno == ENOENT || errno == EISDIR)
        return CACHE_MISS;
    return fs_fail_errno(fs, err, "remove", name, errno);
}

typedef struct clear_ctx {
    int64_t left;
    int rc;
    cache_err *err;
} clear_ctx;

static int clear_one(fs_cache *fs, const struct dirent *de, void *ctx)
{
    clear_ctx *c = ctx;
    if (de->d_type == DT_DIR)
        return CACHE_OK;
    if (!(fs_is_entry_name(fs, de->d_name) || fs_stale_temp(fs, de->d_name)))
        return CACHE_OK;
    if (unlinkat(fs->dirfd, de->d_name, 0) == 0 || errno == ENOENT)
        return CACHE_OK;
    if (errno == EISDIR)
        return CACHE_OK;
    if (fs_is_entry_name(fs, de->d_name))
        c->left++;
    if (c->rc == CACHE_OK) /* report the first failure, go on with the rest */
        c->rc = fs_fail_errno(fs, c->err, "remove", de->d_name, errno);
    return CACHE_OK;
}

/* Removes this cache's files only: digest-named entries and stale
 * temporary files; anything else in the directory is left alone. */
static int fs_clear(cache_backend *b, cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    clear_ctx c = {0, CACHE_OK, err};
    fs_rc_forget_all(fs);
    int rc = fs_list_dir(fs, clear_one, &c, err);
    if (fs->threshold) {
        pthread_mutex_lock(&fs->lock);
        fs->count = c.left;
        pthread_mutex_unlock(&fs->lock);
    }
    return rc != CACHE_OK ? rc : c.rc;
}

static int incr_locked(fs_cache *fs, const char *name, int64_t delta,
                       double new_ttl, int64_t *result, cache_err *err)
{
    cache_buf cur, next;
    cache_buf_init(&cur);
    cache_buf_init(&next);
    int64_t exp;
    int st = fs_read_entry(fs, name, &cur, &exp, err);
    int rc = st < 0 ? st : CACHE_OK;
    if (rc == CACHE_OK && st != ENT_LIVE &&
        fs_expiry_of_ttl(new_ttl, &exp) != 0)
        rc = cache_fail(err, CACHE_EINVAL, "timeout is not a number");
    int64_t sum = 0;
    cache_str have = {cur.data, cur.len};
    if (rc == CACHE_OK) /* a live entry keeps its expiry; else 0 + delta */
        rc = cache_value_add(st == ENT_LIVE ? &have : NULL, delta, &next,
                             &sum, err);
    if (rc == CACHE_OK) {
        int created;
        rc = fs_write_entry(fs, name, (cache_str){next.data, next.len}, exp,
                            PLACE_REPLACE, &created, err);
        if (rc == CACHE_OK && created)
            fs_note_new_entry(fs, name);
    }
    cache_buf_free(&cur);
    cache_buf_free(&next);
    if (rc == CACHE_OK)
        *result = sum;
    return rc;
}

/* incr keeps a live entry's expiry; a missing (or expired, or corrupt) one
 * starts at 0 with new_ttl. */
static int fs_incr(cache_backend *b, cache_str key, int64_t delta,
                   double new_ttl, int64_t *result, cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    char name[FS_NAME_MAX];
    int rc = fs_key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    fs_rc_forget(fs, name);
    int lockfd;
    rc = fs_incr_lock(fs, &lockfd, err);
    if (rc != CACHE_OK)
        return rc;
    rc = incr_locked(fs, name, delta, new_ttl, result, err);
    if (lockfd >= 0)
        close(lockfd); /* releases the flock */
    return rc;
}

static void fs_destroy(cache_backend *b)
{
    fs_cache *fs = (fs_cache *)b;
    fs_rc_fini(fs);
    if (fs->dirfd >= 0)
        close(fs->dirfd);
    pthread_mutex_destroy(&fs->rc_lock);
    pthread_mutex_destroy(&fs->lock);
    free(fs->dir);
    free(fs);
}

static const cache_vtable fs_vtable = {
    .name = "FileSystemCache",
    .values_checked = 1,
    .get = fs_get,
    .set = fs_set,
    .del = fs_del,
    .has = fs_has,
    .clear = fs_clear,
    .incr = fs_incr,
    .destroy = fs_destroy,
};

/* ---- construction ------------------------------------------------------- */

/* mkdir -p with 0700 for what it creates; then opens the directory. The
 * descriptor, or -1 with err set. */
static int open_cache_dir(const char *dir, cache_err *err)
{
    char *p = cache_strndup(dir, strlen(dir));
    if (!p)
        return cache_fail(err, CACHE_ENOMEM, "out of memory"), -1;
    int mkerr = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            mkerr = errno;
        *s = '/';
    }
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        mkerr = errno;
    free(p);
    int fd = fs_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) {
        char eb[128];
        int e = errno == ENOENT && mkerr ? mkerr : errno;
        cache_fail(err, CACHE_FAIL, "FileSystemCache: cache_dir '%s': %s",
                   dir, fs_errtext(e, eb, sizeof eb));
    }
    return fd;
}

typedef struct fs_options {
    char *dir;
    int64_t threshold, mode;
    double timeout;
    cache_digest_kind kind;
} fs_options;

static int take_options(cache_opts *opts, fs_options *o, cache_err *err)
{
    const char *s;
    size_t n;
    int r = cache_opt_str(opts, "cache_dir", &s, &n, err);
    if (r < 0)
        return r;
    if (r == 0)
        return cache_fail(err, CACHE_EINVAL, "option 'cache_dir' is required");
    if (n == 0 || strlen(s) != n)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'cache_dir': a non-empty path without NUL "
                          "bytes expected");
    o->threshold = 500;
    o->mode = 0600;
    o->timeout = 1.0;
    if ((r = cache_opt_int(opts, "threshold", 0, INT64_MAX / 2, &o->threshold,
                           err)) < 0 ||
        (r = cache_opt_int(opts, "mode", 0, 0777, &o->mode, err)) < 0 ||
        (r = cache_opt_num(opts, "timeout", 0, 1e6, &o->timeout, err)) < 0)
        return r;
    const char *hm = "md5";
    size_t hn = 3;
    if ((r = cache_opt_str(opts, "hash_method", &hm, &hn, err)) < 0)
        return r;
    if (strlen(hm) != hn || cache_digest_lookup(hm, &o->kind) != 0) {
        char names[64];
        cache_digest_list(names, sizeof names);
        return cache_fail(err, CACHE_EINVAL,
                          "option 'hash_method': unknown hash method '%.*s' "
                          "(%s)",
                          (int)(hn > 40 ? 40 : hn), hm, names);
    }
    o->dir = cache_strndup(s, n);
    if (!o->dir)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    return CACHE_OK;
}

cache_backend *cache_filesystem_create(cache_opts *opts, cache_err *err)
{
    fs_options o;
    if (take_options(opts, &o, err) != CACHE_OK)
        return NULL;
    fs_cache *fs = calloc(1, sizeof *fs);
    if (!fs) {
        free(o.dir);
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    fs->base.vt = &fs_vtable;
    fs->dir = o.dir;
    fs->kind = o.kind;
    fs->name_len = 2 * cache_digest_size(o.kind);
    fs->threshold = o.threshold;
    fs->mode = (mode_t)o.mode;
    fs->lock_timeout = o.timeout;
    cache_random_bytes(&fs->seed, sizeof fs->seed);
    atomic_init(&fs->counter, 0);
    atomic_init(&fs->noreplace, NOREPLACE_RENAME2);
    atomic_init(&fs->exchange, 1);
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->rc_lock, NULL);
    fs_rc_init(fs);
    fs->dirfd = open_cache_dir(fs->dir, err);
    if (fs->dirfd < 0 ||
        (fs->threshold &&
         fs_list_dir(fs, fs_count_one, &fs->count, err) != CACHE_OK)) {
        fs_destroy(&fs->base);
        return NULL;
    }
    return &fs->base;
}
