/*
 * fs_readcache.c - FileSystemCache's read cache, the process-wide budget of
 * its descriptors, and fs_openat, through which every open of the backend
 * goes.
 *
 * Read cache: the last RC_SLOTS live entries that get read (values up to
 * RC_VALUE_MAX bytes) stay open, with their bytes, their expiry and the
 * identity of their file. A get of such an entry costs one fstatat of its
 * name: when the name still holds the very file kept open (same device and
 * inode - an inode number cannot be reused while a descriptor holds it -
 * and same size, mtime and ctime), the bytes are the ones read, since this
 * backend never modifies a file in place (every write is a new file renamed
 * over the name). Anything else - replaced, removed, expired, a foreign file
 * rewritten in place (its mtime moves) - takes the full read. This process's
 * own set/delete/clear drop their slots at once, so the old files are not
 * kept alive. Up to RC_SLOTS slots per object, and the read caches of all
 * objects together keep at most 1/RC_NOFILE_SHARE of the soft RLIMIT_NOFILE
 * open (read when a slot is filled, so a limit raised later counts): a
 * fill past that budget reuses the object's least recently used slot, or
 * is not kept. Whenever an open here fails with EMFILE or ENFILE, every
 * object's slots are given back and the open is tried once more, so the
 * read caches never make a call fail for want of descriptors.
 *
 * What must stay true: a slot is served only while its name holds the very
 * file it keeps open, which is enough only because no write of this backend
 * modifies a file in place (fs_write.c); rc_open counts the descriptors the
 * slots hold (rc_reserve raises it, rc_clear_slot lowers it); locks are
 * taken in the order rc_all_lock, then an object's rc_lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "fs_internal.h"

/* One entry of the read cache (see the top of the file). */
#define RC_SLOTS 64
#define RC_WAYS 64 /* fully associative: a scan of 64 words is nothing beside a syscall */
#define RC_VALUE_MAX 4096
/* All read caches together keep at most the soft RLIMIT_NOFILE divided by
 * this open: 128 of the usual 1024, whatever the number of objects. */
#define RC_NOFILE_SHARE 8

typedef struct rc_slot {
    int fd;                   /* the entry's file, kept open; -1: empty */
    uint64_t gen;             /* new with every fill: a slot seen twice with
                                 the same gen kept its fd open in between */
    uint64_t used;            /* when last served or filled (rc_gen) */
    uint32_t hash;            /* rc_hash(name) */
    char name[FS_NAME_MAX];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    int64_t expiry;
    size_t vlen;
    char *value;
} rc_slot;

/* Every object, so that running out of descriptors can empty all read
 * caches; lock order: rc_all_lock, then an object's rc_lock. */
static pthread_mutex_t rc_all_lock = PTHREAD_MUTEX_INITIALIZER;
static fs_cache *rc_all;
/* Descriptors kept open by all read caches: only rc_reserve raises it,
 * only rc_clear_slot lowers it. */
static atomic_long rc_open;

/* The process-wide budget of read-cache descriptors (see the top). */
static long rc_budget(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur / RC_NOFILE_SHARE > (rlim_t)LONG_MAX)
        return LONG_MAX;
    return (long)(rl.rlim_cur / RC_NOFILE_SHARE);
}

/* Takes one descriptor of the budget: 1, or 0 when it is spent. */
static int rc_reserve(long budget)
{
    long n = atomic_load(&rc_open);
    while (n < budget)
        if (atomic_compare_exchange_weak(&rc_open, &n, n + 1))
            return 1;
    return 0;
}

static uint32_t rc_hash(const char *name)
{
    uint32_t h = 0; /* the name is a hex digest: its first digits will do */
    for (int i = 0; i < 8 && name[i]; i++)
        h = h << 4 | (uint32_t)(name[i] <= '9' ? name[i] - '0' : name[i] - 'a' + 10);
    return h;
}

/* The slots are RC_WAYS-way sets: the slot holding name in its set, or
 * NULL (rc_lock held). */
static rc_slot *rc_find(fs_cache *fs, const char *name)
{
    rc_slot *set = &fs->rc[(rc_hash(name) % (RC_SLOTS / RC_WAYS)) * RC_WAYS];
    uint32_t h = rc_hash(name);
    for (int w = 0; w < RC_WAYS; w++)
        if (set[w].hash == h && set[w].fd >= 0 && strcmp(set[w].name, name) == 0)
            return &set[w];
    return NULL;
}

/* Where name goes in its set: with `empty`, an empty slot if there is one;
 * else the least recently used occupied slot, or NULL when none is
 * (rc_lock held). */
static rc_slot *rc_victim(fs_cache *fs, const char *name, int empty)
{
    rc_slot *set = &fs->rc[(rc_hash(name) % (RC_SLOTS / RC_WAYS)) * RC_WAYS];
    rc_slot *v = NULL;
    for (int w = 0; w < RC_WAYS; w++) {
        if (set[w].fd < 0) {
            if (empty)
                return &set[w];
        } else if (!v || set[w].used < v->used) {
            v = &set[w];
        }
    }
    return v;
}

/* Whether an entry just read is worth keeping: only one read again soon
 * (its name among roughly the last RC_SEEN / 2 reads: each read leaves its
 * hash at two places of rc_seen), or while slots are free, so that reading
 * many entries once each does not pay the fstat of a fill and churn the
 * slots for nothing. rc_lock held. */
static int rc_admit(fs_cache *fs, const char *name)
{
    uint32_t h = rc_hash(name);
    uint32_t *a = &fs->rc_seen[h % RC_SEEN], *b = &fs->rc_seen[(h >> 16) % RC_SEEN];
    int seen = *a == h || *b == h;
    *a = *b = h;
    if (seen)
        return 1;
    for (int i = 0; i < RC_SLOTS; i++)
        if (fs->rc[i].fd < 0)
            return 1;
    return 0;
}

/* Empties a slot (rc_lock held). */
static void rc_clear_slot(fs_cache *fs, rc_slot *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        atomic_fetch_sub(&rc_open, 1);
    }
    s->fd = -1;
    s->gen = ++fs->rc_gen;
    free(s->value);
    s->value = NULL;
    s->vlen = 0;
}

static int same_time(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static int same_file(const rc_slot *s, const struct stat *st)
{
    return S_ISREG(st->st_mode) && st->st_dev == s->dev && st->st_ino == s->ino &&
           st->st_size == s->size && same_time(st->st_mtim, s->mtime) &&
           same_time(st->st_ctim, s->ctime);
}

/* Gives a new object its slots (none when out of memory: every get then
 * reads) and makes it one of rc_all. */
void fs_rc_init(fs_cache *fs)
{
    fs->rc = calloc(RC_SLOTS, sizeof *fs->rc); /* none: every get reads */
    for (int i = 0; fs->rc && i < RC_SLOTS; i++)
        fs->rc[i].fd = -1;
    pthread_mutex_lock(&rc_all_lock);
    fs->all_next = rc_all;
    if (rc_all)
        rc_all->all_prev = fs;
    rc_all = fs;
    pthread_mutex_unlock(&rc_all_lock);
}

/* Takes an object out of rc_all, then closes and frees its slots. */
void fs_rc_fini(fs_cache *fs)
{
    pthread_mutex_lock(&rc_all_lock);
    if (fs->all_prev)
        fs->all_prev->all_next = fs->all_next;
    else
        rc_all = fs->all_next;
    if (fs->all_next)
        fs->all_next->all_prev = fs->all_prev;
    pthread_mutex_unlock(&rc_all_lock);
    if (fs->rc) {
        fs_rc_forget_all(fs);
        free(fs->rc);
    }
}

/* A get served from the read cache: appends the value and returns 1, or 0
 * when the full read must decide. */
int fs_rc_get(fs_cache *fs, const char *name, cache_buf *out)
{
    if (!fs->rc)
        return 0;
    rc_slot seen;
    pthread_mutex_lock(&fs->rc_lock);
    rc_slot *s = rc_find(fs, name);
    int found = s != NULL;
    if (found)
        seen = *s;
    pthread_mutex_unlock(&fs->rc_lock);
    if (!found || !fs_is_live(seen.expiry, fs_now_ms()))
        return 0; /* expired: the full read removes it */
    struct stat st;
    int same = fstatat(fs->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               same_file(&seen, &st);
    int served = 0;
    pthread_mutex_lock(&fs->rc_lock);
    if (s->gen == seen.gen) { /* the file stayed open all along */
        if (!same)
            rc_clear_slot(fs, s); /* replaced or gone: let the old file go */
        else if ((served = cache_buf_append(out, s->value, s->vlen) == 0))
            s->used = ++fs->rc_gen;
    }
    pthread_mutex_unlock(&fs->rc_lock);
    return served;
}

/* Keeps a live entry just read through fd (taken over: closed here if it
 * is not kept). A slot that is empty needs a descriptor of the budget;
 * with the budget spent, the object's least recently used slot is reused,
 * and with none in use the entry is not kept. */
void fs_rc_fill(fs_cache *fs, const char *name, int fd, int64_t expiry,
                const char *value, size_t vlen)
{
    struct stat st;
    char *copy = NULL;
    int admit = 0;
    if (fs->rc && vlen <= RC_VALUE_MAX) {
        pthread_mutex_lock(&fs->rc_lock);
        admit = rc_admit(fs, name);
        pthread_mutex_unlock(&fs->rc_lock);
    }
    if (!admit || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode) || !(copy = malloc(vlen ? vlen : 1))) {
        close(fd);
        return;
    }
    memcpy(copy, value, vlen);
    long budget = rc_budget();
    pthread_mutex_lock(&fs->rc_lock);
    rc_slot *s = rc_find(fs, name);
    if (!s)
        s = rc_victim(fs, name, 1);
    if (s->fd < 0 && atomic_load(&rc_open) >= budget)
        s = rc_victim(fs, name, 0);
    if (s)
        rc_clear_slot(fs, s);
    if (!s || !rc_reserve(budget)) {
        pthread_mutex_unlock(&fs->rc_lock);
        free(copy);
        close(fd);
        return;
    }
    s->used = s->gen;
    s->hash = rc_hash(name);
    s->fd = fd;
    strcpy(s->name, name);
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->size = st.st_size;
    s->mtime = st.st_mtim;
    s->ctime = st.st_ctim;
    s->expiry = expiry;
    s->vlen = vlen;
    s->value = copy;
    pthread_mutex_unlock(&fs->rc_lock);
}

/* This process changed or removed name: its slot goes. */
void fs_rc_forget(fs_cache *fs, const char *name)
{
    if (!fs->rc)
        return;
    pthread_mutex_lock(&fs->rc_lock);
    rc_slot *s = rc_find(fs, name);
    if (s)
        rc_clear_slot(fs, s);
    pthread_mutex_unlock(&fs->rc_lock);
}

/* Empties every slot: whether a descriptor was closed. */
int fs_rc_forget_all(fs_cache *fs)
{
    if (!fs->rc)
        return 0;
    int closed = 0;
    pthread_mutex_lock(&fs->rc_lock);
    for (int i = 0; i < RC_SLOTS; i++) {
        closed |= fs->rc[i].fd >= 0;
        rc_clear_slot(fs, &fs->rc[i]);
    }
    pthread_mutex_unlock(&fs->rc_lock);
    return closed;
}

/* Empties the read cache of every object: whether a descriptor was
 * closed. */
static int rc_release_everywhere(void)
{
    int closed = 0;
    pthread_mutex_lock(&rc_all_lock);
    for (fs_cache *f = rc_all; f; f = f->all_next)
        closed |= fs_rc_forget_all(f);
    pthread_mutex_unlock(&rc_all_lock);
    return closed;
}

/* Every open of this backend: openat, and when the process or the system
 * is out of descriptors, once more after the read caches gave theirs back
 * (errno is the open's). */
int fs_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    int fd = openat(dirfd, path, flags, mode);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
        int e = errno;
        if (rc_release_everywhere())
            fd = openat(dirfd, path, flags, mode);
        else
            errno = e;
    }
    return fd;
}
