/*
 * filesystem.c - FileSystemCache: one file per key in one directory, safe to
 * share between processes.
 *
 * File name: the lower-case hex digest of the key bytes with hash_method
 * (md5 of "foo" -> acbd18db4cc2f85cedef654fccc4a4d8).
 *
 * File format (version 1), 16 header bytes then the value:
 *   0..3   magic "LCFS"
 *   4      format version, 1
 *   5..7   reserved, zero (a reader of version 1 refuses anything else)
 *   8..15  expiry: int64 little-endian, milliseconds since the epoch (wall
 *          clock, since files outlive and cross processes); 0 = never; an
 *          entry stored already expired holds a past time, never 0
 *   16..   the value bytes exactly as the codec made them
 * Anything else at an entry's name (bad magic or version, short header, a
 * value that fails cache_validate, a symlink, a FIFO...) is a miss and is
 * removed. A directory at an entry's name is a miss and is left alone.
 *
 * Writes go to a temporary file ".tmp-<8 hex pid><16 hex random>" in the
 * same directory (a name that can never look like a digest), created with
 * O_EXCL|O_NOFOLLOW, given `mode` with fchmod (so the umask does not matter),
 * filled, and moved into place atomically: a free name by a no-replace
 * rename (RENAME_NOREPLACE, else link+unlink), an existing entry by
 * RENAME_EXCHANGE and an unlink of the old file, which now has the
 * temporary name (ext4 starts writing back the data of every file renamed
 * OVER another one - auto_da_alloc - which made overwrites 3x slower here;
 * where exchange is not supported, a plain rename). A reader sees the old
 * entry or the new one, never a torn one, whatever the number of processes.
 * Nothing is fsync'ed: entries are atomic, not durable across a power loss.
 * On any failure the temporary file is unlinked and the call fails naming
 * the path and the system's error text.
 *
 * Reads: openat(O_NOFOLLOW|O_NONBLOCK), readv of header and value straight
 * into the caller's buffer, close - no fstat on a hit: a short read is taken
 * as end of file, and bytes that do not make an entry are re-read to a true
 * end of file before they are called corrupt.
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
 * SIGXFSZ: writing past RLIMIT_FSIZE makes the kernel raise SIGXFSZ, whose
 * default action kills the process; write() only returns EFBIG when the
 * signal is ignored or caught. A library must not change signal dispositions,
 * so set checks the entry's size against the soft RLIMIT_FSIZE before it
 * creates anything and fails with EFBIG itself; the kernel never has to
 * raise the signal. (If the limit shrinks between the check and the write,
 * the process's own SIGXFSZ disposition applies.)
 *
 * Expired entries are removed when get/has/add/incr meet them. Before any
 * removal by get/has the name is checked to still hold the inode that was
 * read, so a fresh entry renamed in meanwhile by another process survives
 * (up to a microsecond window between that check and the unlink).
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
 * hint; see expiry_hint). Other processes' new files are seen only at a
 * prune, so with several writers the directory may overshoot threshold by
 * their share of the slack before it is trimmed. Stale temporary files
 * (older than a minute: a writer crashed) are removed by prune and clear.
 *
 * incr is read-modify-write under an exclusive flock() on a fresh descriptor
 * of the directory, so increments from any number of processes and threads
 * do not lose updates against each other (where the file system supports
 * flock on a directory; without it incr is not atomic across processes).
 * A plain set racing an incr may still win or lose as last writer. The wait
 * for the lock is bounded by the option timeout (see incr_lock): a holder
 * that is stopped or frozen makes incr fail, not hang.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "codec.h"
#include "digest.h"

#define FS_MAGIC "LCFS"
#define FS_VERSION 1
#define FS_HEADER 16
#define FS_NAME_MAX (2 * CACHE_DIGEST_MAX + 1)
#define FS_TMP_PREFIX ".tmp-"
#define FS_TMP_PREFIX_LEN 5
#define FS_TMP_LEN (FS_TMP_PREFIX_LEN + 24)
#define FS_TMP_STALE_SECONDS 60
/* Open flags of every read: never follow a symlink, never block on a FIFO. */
#define FS_READ_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

/* How to put a file in place without replacing an existing one; falls back
 * when the file system refuses the better way. */
enum { NOREPLACE_RENAME2, NOREPLACE_LINK, NOREPLACE_CHECK };

#define RC_SEEN 256 /* see rc_admit */

typedef struct fs_cache {
    cache_backend base;
    int dirfd;
    char *dir;                /* as given, for messages */
    cache_digest_kind kind;
    size_t name_len;          /* hex digest length */
    int64_t threshold;        /* 0 = unlimited */
    mode_t mode;
    double lock_timeout;      /* option timeout: incr's lock wait, 0 = no limit */
    uint64_t seed;            /* random part of temporary names */
    atomic_uint_fast64_t counter;
    atomic_int noreplace;     /* NOREPLACE_* */
    atomic_int exchange;      /* RENAME_EXCHANGE works here */
    pthread_mutex_t lock;     /* guards count and pruning */
    int64_t count;
    int pruning;
    pthread_mutex_t rc_lock;  /* guards rc */
    struct fs_cache *all_prev, *all_next; /* rc_all's links (rc_all_lock) */
    struct rc_slot *rc;       /* the read cache (RC_SLOTS), or NULL */
    uint64_t rc_gen;
    uint32_t rc_seen[RC_SEEN];  /* names read lately (by their first digits) */
} fs_cache;

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

/* What reading an entry found; a failure is a negative cache code instead
 * (CACHE_FAIL, CACHE_ENOMEM) with err set. */
enum { ENT_LIVE, ENT_ABSENT, ENT_EXPIRED, ENT_BAD };

/* ---- small helpers ------------------------------------------------------ */

static const char *errtext(int e, char *buf, size_t n)
{
    return strerror_r(e, buf, n);
}

static int fail_errno(fs_cache *fs, cache_err *err, const char *what,
                      const char *name, int e)
{
    char eb[128];
    return cache_fail(err, CACHE_FAIL, "FileSystemCache: %s %s/%s: %s", what,
                      fs->dir, name, errtext(e, eb, sizeof eb));
}

static int64_t now_ms(void)
{
    return (int64_t)floor(cache_wall_now() * 1000.0);
}

static int is_live(int64_t expiry, int64_t now)
{
    return expiry == 0 || now < expiry;
}

/* The stored expiry of a ttl: 0 = never; a positive ttl rounds up to the
 * millisecond (never expires early), a negative one stores a time already
 * past (never 0). Returns -1 for a ttl that is not a number. */
static int expiry_of_ttl(double ttl, int64_t *out)
{
    const double lim = 4.0e18;
    if (isnan(ttl))
        return -1;
    if (ttl == 0) {
        *out = 0;
        return 0;
    }
    int64_t now = now_ms();
    double d = (double)now + ttl * 1000.0;
    if (ttl > 0) {
        d = ceil(d);
        if (d > lim)
            d = lim;
        int64_t e = (int64_t)d;
        *out = e > now ? e : now + 1;
    } else {
        d = floor(d);
        if (d < -lim)
            d = -lim;
        int64_t e = (int64_t)d;
        if (e >= now)
            e = now - 1;
        *out = e == 0 ? -1 : e;
    }
    return 0;
}

static void put_header(unsigned char h[FS_HEADER], int64_t expiry)
{
    uint64_t u = (uint64_t)expiry;
    memcpy(h, FS_MAGIC, 4);
    h[4] = FS_VERSION;
    h[5] = h[6] = h[7] = 0;
    for (int i = 0; i < 8; i++)
        h[8 + i] = (unsigned char)(u >> (8 * i));
}

/* 0 and the expiry, or -1 when the bytes are not our header. */
static int parse_header(const unsigned char h[FS_HEADER], int64_t *expiry)
{
    if (memcmp(h, FS_MAGIC, 4) != 0 || h[4] != FS_VERSION || h[5] || h[6] ||
        h[7])
        return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)h[8 + i] << (8 * i);
    *expiry = (int64_t)u;
    return 0;
}

static int key_name(fs_cache *fs, cache_str key, char name[FS_NAME_MAX],
                    cache_err *err)
{
    unsigned char d[CACHE_DIGEST_MAX];
    const void *parts[1] = {key.ptr ? key.ptr : ""};
    size_t lens[1] = {key.len};
    size_t n = cache_digest(fs->kind, 1, parts, lens, d);
    if (n == 0)
        return cache_fail(err, CACHE_FAIL, "FileSystemCache: %s digest failed",
                          cache_digest_name(fs->kind));
    cache_hex(d, n, name);
    return CACHE_OK;
}

static int is_hex_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int is_entry_name(const fs_cache *fs, const char *s)
{
    return strlen(s) == fs->name_len && is_hex_lower(s, fs->name_len);
}

static int is_temp_name(const char *s)
{
    return strlen(s) == FS_TMP_LEN &&
           memcmp(s, FS_TMP_PREFIX, FS_TMP_PREFIX_LEN) == 0 &&
           is_hex_lower(s + FS_TMP_PREFIX_LEN, FS_TMP_LEN - FS_TMP_PREFIX_LEN);
}

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

/* ---- removal ------------------------------------------------------------ */

/* Removes name if it still is the inode that was read (st), so that an
 * entry renamed in by another process since then is kept. */
static int remove_if_same(fs_cache *fs, const char *name, const struct stat *st)
{
    struct stat now;
    if (fstatat(fs->dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    if (now.st_dev != st->st_dev || now.st_ino != st->st_ino)
        return -1;
    return unlinkat(fs->dirfd, name, 0);
}

static void count_add(fs_cache *fs, int64_t d)
{
    if (!fs->threshold)
        return;
    pthread_mutex_lock(&fs->lock);
    fs->count += d;
    if (fs->count < 0)
        fs->count = 0;
    pthread_mutex_unlock(&fs->lock);
}

/* A name that is a symlink (or other non-entry) where an entry should be:
 * removed, unless it is a directory. */
static void remove_foreign(fs_cache *fs, const char *name)
{
    struct stat st;
    if (fstatat(fs->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        !S_ISDIR(st.st_mode) && remove_if_same(fs, name, &st) == 0)
        count_add(fs, -1);
}

/* ---- the read cache ------------------------------------------------------ */

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

/* A get served from the read cache: appends the value and returns 1, or 0
 * when the full read must decide. */
static int rc_get(fs_cache *fs, const char *name, cache_buf *out)
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
    if (!found || !is_live(seen.expiry, now_ms()))
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
static void rc_fill(fs_cache *fs, const char *name, int fd, int64_t expiry,
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
static void rc_forget(fs_cache *fs, const char *name)
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
static int rc_forget_all(fs_cache *fs)
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
        closed |= rc_forget_all(f);
    pthread_mutex_unlock(&rc_all_lock);
    return closed;
}

/* Every open of this backend: openat, and when the process or the system
 * is out of descriptors, once more after the read caches gave theirs back
 * (errno is the open's). */
static int fs_openat(int dirfd, const char *path, int flags, mode_t mode)
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

/* ---- reading ------------------------------------------------------------ */

/* Opens an entry for reading: the fd, or -1 with *state ENT_ABSENT,
 * ENT_BAD (a symlink: already removed) or a failure code (err set). */
static int open_entry(fs_cache *fs, const char *name, int *state,
                      cache_err *err)
{
    int fd = fs_openat(fs->dirfd, name, FS_READ_FLAGS, 0);
    if (fd >= 0)
        return fd;
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) {
        *state = ENT_ABSENT;
    } else if (e == ELOOP || e == ENXIO) { /* a symlink, a socket */
        remove_foreign(fs, name);
        *state = ENT_BAD;
    } else {
        *state = fail_errno(fs, err, "open", name, e);
    }
    return -1;
}

/* A read in progress: the header, how many bytes of the file were read
 * (header included; the value bytes sit in out's spare room past out->len)
 * and whether end of file was seen. */
typedef struct reading {
    unsigned char h[FS_HEADER];
    size_t got;
    int eof;
} reading;

#define FS_READ_CHUNK 4096

/* Reads on into r and out's spare room. The size is not known beforehand
 * (no fstat on the hot path): reading stops at end of file, or - unless
 * strict - at the first short read, which on local file systems means end
 * of file; the caller re-reads strictly before calling anything corrupt.
 * ENT_LIVE (bytes read, not judged), ENT_ABSENT (a directory), ENT_BAD (a
 * FIFO or the like), or a failure code. */
static int read_more(fs_cache *fs, const char *name, int fd, cache_buf *out,
                     reading *r, int strict, cache_err *err)
{
    while (!r->eof) {
        size_t vgot = r->got > FS_HEADER ? r->got - FS_HEADER : 0;
        size_t room = out->cap - out->len - vgot;
        if (room < FS_READ_CHUNK) {
            size_t more = vgot > FS_READ_CHUNK ? vgot : FS_READ_CHUNK;
            if (cache_buf_reserve(out, vgot + more) != 0)
                return cache_fail(err, CACHE_ENOMEM, "out of memory");
            room = out->cap - out->len - vgot;
        }
        struct iovec iov[2];
        int cnt = 0;
        if (r->got < FS_HEADER) {
            iov[cnt].iov_base = r->h + r->got;
            iov[cnt++].iov_len = FS_HEADER - r->got;
        }
        iov[cnt].iov_base = out->data + out->len + vgot;
        iov[cnt++].iov_len = room;
        size_t asked = room + (r->got < FS_HEADER ? FS_HEADER - r->got : 0);
        ssize_t n = readv(fd, iov, cnt);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EISDIR)
            return ENT_ABSENT;
        if (n < 0 && errno == EAGAIN)
            return ENT_BAD;
        if (n < 0)
            return fail_errno(fs, err, "read", name, errno);
        if (n == 0)
            r->eof = 1;
        r->got += (size_t)n;
        if (!strict && (size_t)n < asked)
            break;
    }
    return ENT_LIVE;
}

/* Judges what was read: ENT_LIVE (*vlen, *expiry set), ENT_EXPIRED or
 * ENT_BAD. */
static int judge(const reading *r, const cache_buf *out, int64_t *expiry,
                 size_t *vlen)
{
    if (r->got < FS_HEADER || parse_header(r->h, expiry) != 0)
        return ENT_BAD;
    if (!is_live(*expiry, now_ms()))
        return ENT_EXPIRED;
    *vlen = r->got - FS_HEADER;
    if (cache_validate(out->data + out->len, *vlen, NULL) != CACHE_OK)
        return ENT_BAD;
    return ENT_LIVE;
}

/* Reads the header only. */
static int read_header(fs_cache *fs, const char *name, int fd, reading *r,
                       cache_err *err)
{
    ssize_t n;
    do
        n = read(fd, r->h, FS_HEADER);
    while (n < 0 && errno == EINTR);
    if (n == FS_HEADER) {
        r->got = FS_HEADER;
        return ENT_LIVE;
    }
    if (n < 0 && errno == EISDIR)
        return ENT_ABSENT;
    if (n < 0 && errno != EAGAIN)
        return fail_errno(fs, err, "read", name, errno);
    return ENT_BAD;
}

/* Removes an expired or bad entry that fd has open, if the name still
 * holds it (a directory is never removed). */
static void remove_read(fs_cache *fs, const char *name, int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode) &&
        remove_if_same(fs, name, &st) == 0)
        count_add(fs, -1);
}

/* Reads an entry. With out: the value is appended (and validated) when
 * ENT_LIVE; without: the header only. Expired and bad entries are removed
 * (ENT_EXPIRED / ENT_BAD returned). *expiry receives a live entry's expiry.
 * A failure is returned as its negative code. The hot path is openat,
 * readv, close. */
static int read_entry_keep(fs_cache *fs, const char *name, cache_buf *out,
                           int64_t *expiry, int keep, cache_err *err);

static int read_entry(fs_cache *fs, const char *name, cache_buf *out,
                      int64_t *expiry, cache_err *err)
{
    return read_entry_keep(fs, name, out, expiry, 0, err);
}

/* read_entry; with keep, a live entry read goes to the read cache. */
static int read_entry_keep(fs_cache *fs, const char *name, cache_buf *out,
                           int64_t *expiry, int keep, cache_err *err)
{
    int state;
    int fd = open_entry(fs, name, &state, err);
    if (fd < 0)
        return state;
    reading r = {.got = 0, .eof = 0};
    int64_t exp = 0;
    size_t vlen = 0;
    if (!out) {
        state = read_header(fs, name, fd, &r, err);
        if (state == ENT_LIVE && parse_header(r.h, &exp) != 0)
            state = ENT_BAD;
        else if (state == ENT_LIVE && !is_live(exp, now_ms()))
            state = ENT_EXPIRED;
    } else {
        state = read_more(fs, name, fd, out, &r, 0, err);
        if (state == ENT_LIVE)
            state = judge(&r, out, &exp, &vlen);
        if (state == ENT_BAD && !r.eof) { /* be sure before calling it bad */
            state = read_more(fs, name, fd, out, &r, 1, err);
            if (state == ENT_LIVE)
                state = judge(&r, out, &exp, &vlen);
        }
        if (state == ENT_BAD)
            cache_fail(err, CACHE_FAIL,
                       "FileSystemCache: removed corrupt entry %s/%s", fs->dir,
                       name);
    }
    if (state == ENT_EXPIRED || state == ENT_BAD)
        remove_read(fs, name, fd);
    if (state == ENT_LIVE && out && keep)
        rc_fill(fs, name, fd, exp, out->data + out->len, vlen);
    else
        close(fd);
    if (state == ENT_LIVE) {
        *expiry = exp;
        if (out)
            out->len += vlen;
    }
    return state;
}

/* ---- writing ------------------------------------------------------------ */

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

/* How write_entry puts the temporary file in place. */
enum {
    PLACE_REPLACE,  /* over whatever is there; reports whether it was new */
    PLACE_NOREPLACE /* CACHE_EXISTS when the name is taken */
};

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
                      fs->dir, name, errtext(EFBIG, eb, sizeof eb), total,
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
static int write_entry(fs_cache *fs, const char *name, cache_str value,
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
        return fail_errno(fs, err, "create", tmp, errno);
    unsigned char h[FS_HEADER];
    put_header(h, expiry);
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
    return fail_errno(fs, err, what, path, e);
}

/* ---- directory listing and pruning -------------------------------------- */

/* Calls visit for every name in the directory, through a descriptor of its
 * own (the shared one's position must not move under another process that
 * inherited it). */
typedef int (*visit_fn)(fs_cache *, const struct dirent *, void *);

static int list_dir(fs_cache *fs, visit_fn visit, void *ctx, cache_err *err)
{
    int fd = fs_openat(fs->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return fail_errno(fs, err, "list", ".", errno);
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return fail_errno(fs, err, "list", ".", e);
    }
    int rc = CACHE_OK;
    while (rc == CACHE_OK) {
        errno = 0; /* the only way to tell the end from an error */
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = fail_errno(fs, err, "list", ".", errno);
            break;
        }
        rc = visit(fs, de, ctx);
    }
    closedir(d);
    return rc;
}

/* A temporary file a crashed writer left behind. */
static int stale_temp(fs_cache *fs, const char *name)
{
    struct stat st;
    return is_temp_name(name) &&
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
    if (!is_entry_name(fs, de->d_name)) {
        if (stale_temp(fs, de->d_name))
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
        remove_if_same(fs, c->name, &st);
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
        parse_header(h, &exp) != 0 || !is_live(exp, now)) {
        struct stat fst;
        if (fstat(fd, &fst) == 0)
            remove_if_same(fs, c->name, &fst);
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
    if (list_dir(fs, collect, &l, NULL) != CACHE_OK) {
        free(l.v);
        return -1;
    }
    int64_t total = (int64_t)l.n;
    if (total > fs->threshold) {
        int64_t target = fs->threshold - fs->threshold / 10;
        int64_t now = now_ms();
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

/* A set created a new file: count it, and prune when over threshold. One
 * thread prunes at a time; increments made meanwhile are kept. */
static void note_new_entry(fs_cache *fs, const char *name)
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

static int count_one(fs_cache *fs, const struct dirent *de, void *ctx)
{
    if (de->d_type != DT_DIR && is_entry_name(fs, de->d_name))
        ++*(int64_t *)ctx;
    return CACHE_OK;
}

/* ---- the operations ----------------------------------------------------- */

static int fs_get(cache_backend *b, cache_str key, cache_buf *out,
                  cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    char name[FS_NAME_MAX];
    int rc = key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    if (rc_get(fs, name, out))
        return CACHE_OK;
    int64_t exp;
    int st = read_entry_keep(fs, name, out, &exp, 1, err);
    if (st < 0)
        return st;
    return st == ENT_LIVE ? CACHE_OK : CACHE_MISS;
}

static int fs_has(cache_backend *b, cache_str key, cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    char name[FS_NAME_MAX];
    int rc = key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    int64_t exp;
    int st = read_entry(fs, name, NULL, &exp, err);
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
        int st = read_entry(fs, name, NULL, &exp, err);
        if (st < 0)
            return st;
        if (st == ENT_LIVE)
            return CACHE_EXISTS;
        int created;
        int rc = write_entry(fs, name, value, expiry, PLACE_NOREPLACE,
                             &created, err);
        if (rc == CACHE_OK)
            note_new_entry(fs, name);
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
    int rc = key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    int64_t expiry;
    if (expiry_of_ttl(ttl, &expiry) != 0)
        return cache_fail(err, CACHE_EINVAL, "timeout is not a number");
    if (only_if_absent) /* a stale slot is caught by its fstatat */
        return fs_add(fs, name, value, expiry, err);
    rc_forget(fs, name);
    int created;
    rc = write_entry(fs, name, value, expiry,
                     PLACE_REPLACE, &created,
                     err);
    if (rc == CACHE_OK && created)
        note_new_entry(fs, name);
    return rc;
}

static int fs_del(cache_backend *b, cache_str key, cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    char name[FS_NAME_MAX];
    int rc = key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    rc_forget(fs, name);
    if (unlinkat(fs->dirfd, name, 0) == 0) {
        count_add(fs, -1);
        return CACHE_OK;
    }
    if (errno == ENOENT || errno == EISDIR)
        return CACHE_MISS;
    return fail_errno(fs, err, "remove", name, errno);
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
    if (!(is_entry_name(fs, de->d_name) || stale_temp(fs, de->d_name)))
        return CACHE_OK;
    if (unlinkat(fs->dirfd, de->d_name, 0) == 0 || errno == ENOENT)
        return CACHE_OK;
    if (errno == EISDIR)
        return CACHE_OK;
    if (is_entry_name(fs, de->d_name))
        c->left++;
    if (c->rc == CACHE_OK) /* report the first failure, go on with the rest */
        c->rc = fail_errno(fs, c->err, "remove", de->d_name, errno);
    return CACHE_OK;
}

/* Removes this cache's files only: digest-named entries and stale
 * temporary files; anything else in the directory is left alone. */
static int fs_clear(cache_backend *b, cache_err *err)
{
    fs_cache *fs = (fs_cache *)b;
    clear_ctx c = {0, CACHE_OK, err};
    rc_forget_all(fs);
    int rc = list_dir(fs, clear_one, &c, err);
    if (fs->threshold) {
        pthread_mutex_lock(&fs->lock);
        fs->count = c.left;
        pthread_mutex_unlock(&fs->lock);
    }
    return rc != CACHE_OK ? rc : c.rc;
}

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
static int incr_lock(fs_cache *fs, int *lockfd, cache_err *err)
{
    *lockfd = -1;
    int fd = fs_openat(fs->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return fail_errno(fs, err, "open for the incr lock", ".", errno);
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

static int incr_locked(fs_cache *fs, const char *name, int64_t delta,
                       double new_ttl, int64_t *result, cache_err *err)
{
    cache_buf cur;
    cache_buf_init(&cur);
    int64_t exp, base = 0;
    int st = read_entry(fs, name, &cur, &exp, err);
    int rc = st < 0 ? st : CACHE_OK;
    if (st == ENT_LIVE &&
        !cache_value_as_int((cache_str){cur.data, cur.len}, &base))
        rc = cache_fail(err, CACHE_ENOTINT, "value is not an integer");
    if (rc == CACHE_OK && st != ENT_LIVE &&
        expiry_of_ttl(new_ttl, &exp) != 0)
        rc = cache_fail(err, CACHE_EINVAL, "timeout is not a number");
    int64_t sum = 0;
    if (rc == CACHE_OK && __builtin_add_overflow(base, delta, &sum))
        rc = cache_fail(err, CACHE_ENOTINT, "integer overflow");
    if (rc == CACHE_OK) {
        cur.len = 0;
        cache_writer w;
        cache_writer_init(&w, &cur);
        cache_write_int(&w, sum);
        if (w.failed)
            rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    if (rc == CACHE_OK) {
        int created;
        rc = write_entry(fs, name, (cache_str){cur.data, cur.len}, exp,
                         PLACE_REPLACE,
                         &created, err);
        if (rc == CACHE_OK && created)
            note_new_entry(fs, name);
    }
    cache_buf_free(&cur);
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
    int rc = key_name(fs, key, name, err);
    if (rc != CACHE_OK)
        return rc;
    rc_forget(fs, name);
    int lockfd;
    rc = incr_lock(fs, &lockfd, err);
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
    pthread_mutex_lock(&rc_all_lock);
    if (fs->all_prev)
        fs->all_prev->all_next = fs->all_next;
    else
        rc_all = fs->all_next;
    if (fs->all_next)
        fs->all_next->all_prev = fs->all_prev;
    pthread_mutex_unlock(&rc_all_lock);
    if (fs->dirfd >= 0)
        close(fs->dirfd);
    if (fs->rc) {
        rc_forget_all(fs);
        free(fs->rc);
    }
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
                   dir, errtext(e, eb, sizeof eb));
    }
    return fd;
}

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
            ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&s;
    }
    return s;
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
    if (strlen(hm) != hn || cache_digest_lookup(hm, &o->kind) != 0)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'hash_method': unknown hash method '%.*s' "
                          "(md5, sha1, sha256 or sha512)",
                          (int)(hn > 40 ? 40 : hn), hm);
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
    fs->seed = random_seed();
    atomic_init(&fs->counter, 0);
    atomic_init(&fs->noreplace, NOREPLACE_RENAME2);
    atomic_init(&fs->exchange, 1);
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->rc_lock, NULL);
    fs->rc = calloc(RC_SLOTS, sizeof *fs->rc); /* none: every get reads */
    for (int i = 0; fs->rc && i < RC_SLOTS; i++)
        fs->rc[i].fd = -1;
    pthread_mutex_lock(&rc_all_lock);
    fs->all_next = rc_all;
    if (rc_all)
        rc_all->all_prev = fs;
    rc_all = fs;
    pthread_mutex_unlock(&rc_all_lock);
    fs->dirfd = open_cache_dir(fs->dir, err);
    if (fs->dirfd < 0 ||
        (fs->threshold && list_dir(fs, count_one, &fs->count, err) != CACHE_OK)) {
        fs_destroy(&fs->base);
        return NULL;
    }
    return &fs->base;
}
