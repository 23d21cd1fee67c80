/*
 * fs_lock.c - FileSystemCache's increment lock.
 *
 * incr is read-modify-write under an exclusive flock() on a fresh descriptor
 * of the directory, so increments from any number of processes and threads
 * do not lose updates against each other (where the file system supports
 * flock on a directory; without it incr is not atomic across processes).
 * A plain set racing an incr may still win or lose as last writer. The wait
 * for the lock is bounded by the option timeout (see fs_incr_lock): a holder
 * that is stopped or frozen makes incr fail, not hang.
 *
 * What must stay true: the lock is released only by closing its descriptor
 * (a waiter's inotify watch wakes on that close, see lock_wait), and a
 * caller that finds others waiting joins them rather than barging in.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "fs_internal.h"

/* Sleeps until something may have released the increment lock, at most
 * `left` seconds and at most FS_LOCK_POLL_MS: with a watch (ino >= 0) on
 * the directory, until a descriptor of the directory itself is closed -
 * which is how every incr releases the lock - while closes of files in it
 * (reads by others) do not end the wait; without a watch, a short nap. */
#define FS_LOCK_POLL_MS 20
static void lock_wait(int ino, double left)
{
    if (ino < 0) {
        struct timespec ts = {0, 1000000}; /* 1 ms */
        if (left < 0.001)
            ts.tv_nsec = (long)(left * 1e9) + 1;
        nanosleep(&ts, NULL); /* EINTR: the caller tries again */
        return;
    }
    double end = cache_monotonic_now() +
                 (left < FS_LOCK_POLL_MS / 1000.0 ? left : FS_LOCK_POLL_MS / 1000.0);
    for (;;) {
        double ms = (end - cache_monotonic_now()) * 1000.0;
        struct pollfd p = {ino, POLLIN, 0};
        if (ms <= 0 || poll(&p, 1, (int)ms + 1) <= 0)
            return;
        _Alignas(struct inotify_event) char ev[4096];
        ssize_t n;
        int self = 0;
        while ((n = read(ino, ev, sizeof ev)) > 0)
            for (ssize_t i = 0; i + (ssize_t)sizeof(struct inotify_event) <= n;) {
                const struct inotify_event *e = (const void *)(ev + i);
                self |= e->len == 0; /* no name: the directory itself */
                i += (ssize_t)(sizeof *e + e->len);
            }
        if (self)
            return;
    }
}

/* Waiters on the increment lock say so with a shared OFD lock on byte 0
 * of their descriptor of the directory: a lock flock() does not see, and
 * that goes away with the descriptor (a waiter that dies or gives up leaves
 * nothing behind). type: F_RDLCK to say so, F_UNLCK to stop. */
static void say_waiting(int fd, short type)
{
    struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0,
                      .l_len = 1};
    fcntl(fd, F_OFD_SETLK, &l); /* unsupported: waiters just go unseen */
}

/* Whether another process or descriptor waits for the increment lock. */
static int others_waiting(int fd)
{
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0,
                      .l_len = 1};
    return fcntl(fd, F_OFD_GETLK, &l) == 0 && l.l_type != F_UNLCK;
}

/* Waits for the cross-process increment lock: a descriptor of the directory
 * of its own (flock belongs to the open file description, which a forked
 * child shares), locked exclusively. The holder may be stopped or frozen,
 * so the wait is bounded by the object's timeout (0: no limit, a blocking
 * flock). flock has no timed wait, so the lock is tried without blocking,
 * and in between the caller sleeps in lock_wait, woken by inotify when a
 * descriptor of the directory is closed. Polling alone would let a busy
 * process release the lock and take it again between two tries of a
 * waiter, again and again, past the waiter's timeout; so waiters say so
 * (say_waiting), and a caller that finds others waiting does not barge in:
 * it joins them and tries only after the next release. CACHE_OK with
 * *lockfd the descriptor to close, or -1 where the file system has no flock
 * (incr then goes on unlocked); a failure (timeout, no descriptor) with err
 * set and nothing held. */
int fs_incr_lock(fs_cache *fs, int *lockfd, cache_err *err)
{
    *lockfd = -1;
    int fd = fs_openat(fs->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return fs_fail_errno(fs, err, "open for the incr lock", ".", errno);
    double deadline = fs->lock_timeout > 0
                          ? cache_monotonic_now() + fs->lock_timeout : 0;
    int ino = -1, waiting = 0, rc = CACHE_OK;
    int defer = deadline && others_waiting(fd);
    for (;;) {
        if (!defer) {
            if (flock(fd, deadline ? LOCK_EX | LOCK_NB : LOCK_EX) == 0) {
                if (waiting)
                    say_waiting(fd, F_UNLCK);
                *lockfd = fd;
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno != EWOULDBLOCK) {
                close(fd); /* no flock here (ENOLCK, EOPNOTSUPP...) */
                break;
            }
        }
        double left = deadline - cache_monotonic_now();
        if (left <= 0) {
            close(fd);
            rc = cache_fail(err, CACHE_FAIL,
                            "FileSystemCache: incr: the lock on %s is still "
                            "held by someone else after %g s (option "
                            "'timeout')",
                            fs->dir, fs->lock_timeout);
            break;
        }
        if (!waiting) { /* only a lock found taken pays for this */
            waiting = 1;
            say_waiting(fd, F_RDLCK);
            char path[64];
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
            if (ino >= 0 && inotify_add_watch(ino, path, IN_CLOSE_NOWRITE) < 0) {
                close(ino);
                ino = -1;
            }
            if (!defer)
                continue; /* a release before the watch went unseen: try again */
        }
        defer = 0;
        lock_wait(ino, left);
    }
    if (ino >= 0)
        close(ino);
    return rc;
}
