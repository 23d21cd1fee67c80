/*
 * fs_write.c - FileSystemCache writes an entry: a temporary file, filled,
 * then put in place atomically.
 *
 * Writes go to a temporary file ".tmp-<8 hex pid><16 hex random>" in the
 * same directory (a name that can never look like a digest), created with
 * O_EXCL|O_NOFOLLOW, given `mode` with fchmod (so the umask does not matter),
 * filled, and moved into place atomically: a free name by a no-replace
 * rename (RENAME_NOREPLACE, else link+unlink), an existing entry by
 * RENAME_EXCHANGE and an unlink of the old file, which now has the
 * temporary name (ext4 starts writing back the data of every file renamed
 * OVER another one - auto_da_alloc - which an exchange avoids; where
 * exchange is not supported, a plain rename). A reader sees the old
 * entry or the new one, never a torn one, whatever the number of processes.
 * Nothing is fsync'ed: entries are atomic, not durable across a power loss.
 * On any failure the temporary file is unlinked and the call fails naming
 * the path and the system's error text.
 *
 * SIGXFSZ: writing past RLIMIT_FSIZE makes the kernel raise SIGXFSZ, whose
 * default action kills the process; write() only returns EFBIG when the
 * signal is ignored or caught. A library must not change signal dispositions,
 * so set checks the entry's size against the soft RLIMIT_FSIZE before it
 * creates anything and fails with EFBIG itself; the kernel never has to
 * raise the signal. (If the limit shrinks between the check and the write,
 * the process's own SIGXFSZ disposition applies.)
 *
 * What must stay true: a file at an entry's name is never modified in place
 * (the read cache, fs_readcache.c, relies on it), and a new file is known
 * as new (*created) so that threshold counts it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "fs_internal.h"

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A temporary name unique to this process (pid) and call (counter), with
 * a per-open random seed so that hosts sharing a directory do not collide
 * either; O_EXCL catches whatever is left. */
static void temp_name(fs_cache *fs, char out[FS_TMP_LEN + 1])
{
    uint64_t c = atomic_fetch_add_explicit(&fs->counter, 1,
                                           memory_order_relaxed);
    snprintf(out, FS_TMP_LEN + 1, FS_TMP_PREFIX "%08x%016llx",
             (unsigned)getpid() & 0xffffffffu,
             (unsigned long long)splitmix64(fs->seed ^ (c * 0x2545f4914f6cdd1dULL)));
}

/* The expiry hint a writer leaves in the file's atime when threshold is on
 * (an entry that never expires gets a far future), so that prune can tell
 * live entries by one fstatat instead of opening each: relatime and noatime
 * never move an atime that lies in the future. The header stays the truth:
 * an entry whose atime is not in the future (expired, written without the
 * hint, or read on a strictatime mount) is opened and judged by its header,
 * so a lost hint only costs time. */
static struct timespec expiry_hint(int64_t expiry)
{
    struct timespec t;
    if (expiry == 0 || expiry > ((int64_t)1 << 40) * 1000) {
        t.tv_sec = (time_t)1 << 40;
        t.tv_nsec = 0;
    } else {
        t.tv_sec = (time_t)(expiry / 1000);
        t.tv_nsec = (long)(expiry % 1000) * 1000000;
        if (t.tv_nsec < 0) {
            t.tv_sec--;
            t.tv_nsec += 1000000000;
        }
    }
    return t;
}

/* Refuses, before anything is written, an entry larger than the soft
 * RLIMIT_FSIZE: writing past it would raise SIGXFSZ (see the top). */
static int check_fsize(fs_cache *fs, const char *name, size_t total,
                       cache_err *err)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        (rlim_t)total <= rl.rlim_cur)
        return CACHE_OK;
    char eb[128];
    return cache_fail(err, CACHE_FAIL,
                      "FileSystemCache: write %s/%s: %s (%zu bytes, "
                      "RLIMIT_FSIZE is %llu)",
                      fs->dir, name, fs_errtext(EFBIG, eb, sizeof eb), total,
                      (unsigned long long)rl.rlim_cur);
}

/* Writes header and value fully; 0, or the errno. */
static int fill(int fd, const unsigned char h[FS_HEADER], cache_str value)
{
    size_t want = FS_HEADER + value.len, done = 0;
    while (done < want) {
        struct iovec iov[2];
        int cnt = 0;
        if (done < FS_HEADER) {
            iov[cnt].iov_base = (void *)(h + done);
            iov[cnt++].iov_len = FS_HEADER - done;
            if (value.len) {
                iov[cnt].iov_base = (void *)value.ptr;
                iov[cnt++].iov_len = value.len;
            }
        } else {
            iov[cnt].iov_base = (void *)(value.ptr + (done - FS_HEADER));
            iov[cnt++].iov_len = want - done;
        }
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        if (w == 0)
            return EIO;
        done += (size_t)w;
    }
    return 0;
}

/* Renames tmp to name unless name exists: 0, EEXIST, or another errno.
 * RENAME_NOREPLACE where the file system has it, else link + unlink, else
 * (no hard links either) a check then a rename, which is not atomic. */
static int place_noreplace(fs_cache *fs, const char *tmp, const char *name)
{
    int how = atomic_load_explicit(&fs->noreplace, memory_order_relaxed);
    if (how == NOREPLACE_RENAME2) {
        if (renameat2(fs->dirfd, tmp, fs->dirfd, name, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
            return errno;
        how = NOREPLACE_LINK;
        atomic_store_explicit(&fs->noreplace, how, memory_order_relaxed);
    }
    if (how == NOREPLACE_LINK) {
        if (linkat(fs->dirfd, tmp, fs->dirfd, name, 0) == 0) {
            unlinkat(fs->dirfd, tmp, 0);
            return 0;
        }
        if (errno != EPERM && errno != ENOTSUP && errno != ENOSYS &&
            errno != EMLINK)
            return errno;
        how = NOREPLACE_CHECK;
        atomic_store_explicit(&fs->noreplace, how, memory_order_relaxed);
    }
    struct stat st;
    if (fstatat(fs->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return EEXIST;
    return renameat(fs->dirfd, tmp, fs->dirfd, name) == 0 ? 0 : errno;
}

/* After an exchange the temporary name holds the old entry: unlink it. If
 * the old "entry" was a directory, swap it back and report EISDIR (the
 * caller then unlinks the temporary name, which holds our file again). */
static int retire_old(fs_cache *fs, const char *tmp, const char *name)
{
    if (unlinkat(fs->dirfd, tmp, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno == EISDIR &&
        renameat2(fs->dirfd, tmp, fs->dirfd, name, RENAME_EXCHANGE) == 0)
        return EISDIR;
    return 0; /* the old file stays under a temporary name: stale later */
}

/* Replaces name by tmp atomically: 0 (*created = the name was free), or an
 * errno. The replacement is RENAME_EXCHANGE followed by an unlink of the old
 * file rather than a plain rename over it: ext4 (auto_da_alloc) starts
 * writing back the new file's data on every rename that replaces a file,
 * which made overwrites several times slower, while an exchange is just as
 * atomic for readers. A free name takes the no-replace rename, so the count
 * of entries knows new files exactly. */
static int place_replace(fs_cache *fs, const char *tmp, const char *name,
                         int *created)
{
    for (int tries = 0; tries < 4; tries++) {
        if (atomic_load_explicit(&fs->exchange, memory_order_relaxed)) {
            if (renameat2(fs->dirfd, tmp, fs->dirfd, name, RENAME_EXCHANGE) ==
                0)
                return retire_old(fs, tmp, name);
            if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
                atomic_store_explicit(&fs->exchange, 0, memory_order_relaxed);
                continue;
            }
            if (errno != ENOENT)
                return errno;
        } else if (!fs->threshold) {
            break; /* nothing to count: a plain rename will do */
        }
        int e = place_noreplace(fs, tmp, name);
        if (e == 0)
            *created = 1;
        if (e != EEXIST)
            return e;
        if (!atomic_load_explicit(&fs->exchange, memory_order_relaxed))
            break; /* taken meanwhile: replace it */
    }
    return renameat(fs->dirfd, tmp, fs->dirfd, name) == 0 ? 0 : errno;
}

/* Moves the filled temporary file into place. */
static int place(fs_cache *fs, const char *tmp, const char *name, int how,
                 int *created)
{
    *created = 0;
    if (how == PLACE_NOREPLACE) {
        int e = place_noreplace(fs, tmp, name);
        *created = e == 0;
        return e;
    }
    return place_replace(fs, tmp, name, created);
}

/* Writes an entry through a temporary file. CACHE_OK (*created = the name
 * was free, when `how` can tell), CACHE_EXISTS (PLACE_NOREPLACE and the
 * name is taken), or CACHE_FAIL; whatever happens, no temporary file and no
 * partial entry stay behind. */
int fs_write_entry(fs_cache *fs, const char *name, cache_str value,
                   int64_t expiry, int how, int *created, cache_err *err)
{
    *created = 0;
    int rc = check_fsize(fs, name, FS_HEADER + value.len, err);
    if (rc != CACHE_OK)
        return rc;
    char tmp[FS_TMP_LEN + 1];
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 8; tries++) {
        temp_name(fs, tmp);
        fd = fs_openat(fs->dirfd, tmp,
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       S_IRUSR | S_IWUSR);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0)
        return fs_fail_errno(fs, err, "create", tmp, errno);
    unsigned char h[FS_HEADER];
    fs_put_header(h, expiry);
    const char *what = "chmod", *path = tmp;
    int e = fchmod(fd, fs->mode) == 0 ? 0 : errno;
    if (!e && fs->threshold) {
        struct timespec ts[2] = {expiry_hint(expiry), {0, UTIME_OMIT}};
        futimens(fd, ts); /* only a hint: a failure costs prune time */
    }
    if (!e) {
        what = "write";
        e = fill(fd, h, value);
    }
    if (close(fd) != 0 && !e) {
        what = "close";
        e = errno;
    }
    if (!e) {
        e = place(fs, tmp, name, how, created);
        what = "rename to";
        path = name;
        if (e == EEXIST && how == PLACE_NOREPLACE) {
            unlinkat(fs->dirfd, tmp, 0);
            return CACHE_EXISTS;
        }
    }
    if (!e)
        return CACHE_OK;
    unlinkat(fs->dirfd, tmp, 0);
    return fs_fail_errno(fs, err, what, path, e);
}
