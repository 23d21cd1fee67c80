/*
 * fs_prune.c - FileSystemCache's directory listing, its count of entries
 * and the pruning that keeps it at threshold.
 *
 * threshold (0 = unlimited) counts entries, i.e. files named like a digest
 * of this hash_method. The count is kept in memory: listed once at open,
 * +1 when a set creates a new file (known exactly from the no-replace
 * rename), -1 on delete. When it passes threshold, the directory is listed
 * again to get the true count (other processes write too) and, if that is
 * still over threshold, pruned down to target = threshold - threshold / 10
 * (= threshold below 10): every expired (or corrupt) entry goes first, then
 * the oldest by mtime (a linear-time selection, no sort), never the entry
 * just written. The next prune therefore comes at the earliest
 * threshold / 10 + 1 new files later: each prune touches about threshold
 * entries, i.e. about ten per new file, amortised; overwrites of existing
 * keys cost nothing. To judge an entry with one fstatat instead of opening
 * it, a writer with threshold on leaves the entry's expiry in its atime (a
 * hint; see expiry_hint in fs_write.c). Other processes' new files are seen
 * only at a prune, so with several writers the directory may overshoot
 * threshold by their share of the slack before it is trimmed. Stale
 * temporary files (older than a minute: a writer crashed) are removed by
 * prune and clear.
 *
 * What must stay true: the header is the truth (an entry the atime hint
 * does not call live is opened and judged by its header); a prune spares
 * the entry just written and never removes a directory; one thread of an
 * object prunes at a time (fs->pruning, under fs->lock, which is not held
 * while it runs).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "fs_internal.h"

#define FS_TMP_STALE_SECONDS 60

/* ---- directory listing and pruning -------------------------------------- */

/* Calls visit for every name in the directory, through a descriptor of its
 * own (the shared one's position must not move under another process that
 * inherited it). */
int fs_list_dir(fs_cache *fs, visit_fn visit, void *ctx, cache_err *err)
{
    int fd = fs_openat(fs->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return fs_fail_errno(fs, err, "list", ".", errno);
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return fs_fail_errno(fs, err, "list", ".", e);
    }
    int rc = CACHE_OK;
    while (rc == CACHE_OK) {
        errno = 0; /* the only way to tell the end from an error */
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = fs_fail_errno(fs, err, "list", ".", errno);
            break;
        }
        rc = visit(fs, de, ctx);
    }
    closedir(d);
    return rc;
}

/* A temporary file a crashed writer left behind. */
int fs_stale_temp(fs_cache *fs, const char *name)
{
    struct stat st;
    return fs_is_temp_name(name) &&
           fstatat(fs->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           (double)st.st_mtim.tv_sec <
               cache_wall_now() - FS_TMP_STALE_SECONDS;
}

typedef struct cand {
    int64_t mtime; /* ns */
    char name[FS_NAME_MAX];
} cand;

typedef struct cand_list {
    cand *v;
    size_t n, cap;
    int nomem;
} cand_list;

static int collect(fs_cache *fs, const struct dirent *de, void *ctx)
{
    cand_list *l = ctx;
    if (de->d_type == DT_DIR)
        return CACHE_OK;
    if (!fs_is_entry_name(fs, de->d_name)) {
        if (fs_stale_temp(fs, de->d_name))
            unlinkat(fs->dirfd, de->d_name, 0);
        return CACHE_OK;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        cand *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->nomem = 1;
            return CACHE_ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    cand *c = &l->v[l->n++];
    c->mtime = 0;
    memcpy(c->name, de->d_name, fs->name_len + 1);
    return CACHE_OK;
}

static void swap_cand(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Reorders v so that its first k items are the k oldest: quickselect with a
 * three-way partition (ties are common: mtimes are coarse), linear on
 * average. */
static void select_oldest(cand *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        int64_t a = v[lo].mtime, b = v[lo + (hi - lo) / 2].mtime,
                c = v[hi - 1].mtime;
        int64_t p = a < b ? (b < c ? b : (a < c ? c : a))
                          : (a < c ? a : (b < c ? c : b));
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (v[i].mtime < p)
                swap_cand(&v[lt++], &v[i++]);
            else if (v[i].mtime > p)
                swap_cand(&v[i], &v[--gt]);
            else
                i++;
        }
        if (k < lt)
            hi = lt;
        else if (k <= gt)
            return;
        else
            lo = gt;
    }
}

static int64_t ns_of(struct timespec t)
{
    if (t.tv_sec > 9000000000 || t.tv_sec < -9000000000)
        return t.tv_sec > 0 ? INT64_MAX : INT64_MIN;
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Whether t lies after the time `ms` (milliseconds since the epoch). */
static int after_ms(struct timespec t, int64_t ms)
{
    int64_t sec = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        sec--;
        rem += 1000;
    }
    if ((int64_t)t.tv_sec != sec)
        return (int64_t)t.tv_sec > sec;
    return t.tv_nsec > rem * 1000000;
}

/* Judges one listed entry: 1 = live (mtime filled), 0 = gone now (it was
 * expired, corrupt or foreign and is removed, or it vanished), -1 = not
 * ours to judge (a directory, an unreadable file). */
static int prune_check(fs_cache *fs, cand *c, int64_t now)
{
    struct stat st;
    if (fstatat(fs->dirfd, c->name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode))
        return -1;
    if (!S_ISREG(st.st_mode)) {
        fs_remove_if_same(fs, c->name, &st);
        return 0;
    }
    c->mtime = ns_of(st.st_mtim);
    if (after_ms(st.st_atim, now))
        return 1; /* the hint says live */
    int fd = fs_openat(fs->dirfd, c->name, FS_READ_FLAGS, 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    unsigned char h[FS_HEADER];
    int64_t exp;
    int res = 1;
    if (pread(fd, h, FS_HEADER, 0) != FS_HEADER ||
        fs_parse_header(h, &exp) != 0 || !fs_is_live(exp, now)) {
        struct stat fst;
        if (fstat(fd, &fst) == 0)
            fs_remove_if_same(fs, c->name, &fst);
        res = 0;
    }
    close(fd);
    return res;
}

/* Lists the directory and, when it holds more than threshold entries, prunes
 * it to threshold - threshold / 10: expired (and corrupt) entries first,
 * then the oldest by mtime; `keep` (the entry just written) is spared.
 * Returns the number of entries left, or -1 when listing failed. */
static int64_t prune(fs_cache *fs, const char *keep)
{
    cand_list l = {0};
    if (fs_list_dir(fs, collect, &l, NULL) != CACHE_OK) {
        free(l.v);
        return -1;
    }
    int64_t total = (int64_t)l.n;
    if (total > fs->threshold) {
        int64_t target = fs->threshold - fs->threshold / 10;
        int64_t now = fs_now_ms();
        size_t live = 0;
        for (size_t i = 0; i < l.n; i++) {
            if (keep && strcmp(l.v[i].name, keep) == 0)
                continue;
            int r = prune_check(fs, &l.v[i], now);
            if (r == 0)
                total--;
            else if (r == 1)
                l.v[live++] = l.v[i];
        }
        if (total > target && live > 0) {
            size_t k = (size_t)(total - target);
            if (k > live)
                k = live;
            select_oldest(l.v, live, k);
            for (size_t i = 0; i < k; i++)
                if (unlinkat(fs->dirfd, l.v[i].name, 0) == 0 ||
                    errno == ENOENT)
                    total--;
        }
    }
    free(l.v);
    return total;
}

/* An entry fewer or more than counted (threshold on only). */
void fs_count_add(fs_cache *fs, int64_t d)
{
    if (!fs->threshold)
        return;
    pthread_mutex_lock(&fs->lock);
    fs->count += d;
    if (fs->count < 0)
        fs->count = 0;
    pthread_mutex_unlock(&fs->lock);
}

/* A set created a new file: count it, and prune when over threshold. One
 * thread prunes at a time; increments made meanwhile are kept. */
void fs_note_new_entry(fs_cache *fs, const char *name)
{
    if (!fs->threshold)
        return;
    pthread_mutex_lock(&fs->lock);
    fs->count++;
    int go = fs->count > fs->threshold && !fs->pruning;
    int64_t before = fs->count;
    if (go)
        fs->pruning = 1;
    pthread_mutex_unlock(&fs->lock);
    if (!go)
        return;
    int64_t left = prune(fs, name);
    pthread_mutex_lock(&fs->lock);
    if (left >= 0)
        fs->count = left + (fs->count - before);
    fs->pruning = 0;
    pthread_mutex_unlock(&fs->lock);
}

int fs_count_one(fs_cache *fs, const struct dirent *de, void *ctx)
{
    if (de->d_type != DT_DIR && fs_is_entry_name(fs, de->d_name))
        ++*(int64_t *)ctx;
    return CACHE_OK;
}
