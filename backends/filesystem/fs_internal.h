/*
 * fs_internal.h - what the files of FileSystemCache share (filesystem.c
 * lists them): the object, the constants of the file format and of the
 * names, and the functions one file offers the others. Nothing outside
 * backends/filesystem/ includes it; the engine knows the backend only by
 * cache_filesystem_create.
 *
 * What must stay true: a function here is defined in exactly one file, the
 * one its group below names; every file includes this header after
 * defining _GNU_SOURCE (renameat2, O_ flags and OFD locks need it). Lock
 * order: rc_all_lock (fs_readcache.c), then an object's rc_lock; fs->lock
 * is never held while taking either.
 */
#ifndef FS_INTERNAL_H
#define FS_INTERNAL_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before the first #include"
#endif

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "cache.h"
#include "digest.h"

#define FS_MAGIC "LCFS"
#define FS_VERSION 1
#define FS_HEADER 16
#define FS_NAME_MAX (2 * CACHE_DIGEST_MAX + 1)
#define FS_TMP_PREFIX ".tmp-"
#define FS_TMP_PREFIX_LEN 5
#define FS_TMP_LEN (FS_TMP_PREFIX_LEN + 24)
/* Open flags of every read: never follow a symlink, never block on a FIFO. */
#define FS_READ_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

/* How to put a file in place without replacing an existing one; falls back
 * when the file system refuses the better way. */
enum { NOREPLACE_RENAME2, NOREPLACE_LINK, NOREPLACE_CHECK };

#define RC_SEEN 256 /* see rc_admit in fs_readcache.c */

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

/* What reading an entry found; a failure is a negative cache code instead
 * (CACHE_FAIL, CACHE_ENOMEM) with err set. */
enum { ENT_LIVE, ENT_ABSENT, ENT_EXPIRED, ENT_BAD };

/* How fs_write_entry puts the temporary file in place. */
enum {
    PLACE_REPLACE,  /* over whatever is there; reports whether it was new */
    PLACE_NOREPLACE /* CACHE_EXISTS when the name is taken */
};

/* ---- fs_entry.c: helpers, names, the format, reading ------------------- */

const char *fs_errtext(int e, char *buf, size_t n);
/* Fails with "FileSystemCache: <what> <dir>/<name>: <error text of e>". */
int fs_fail_errno(fs_cache *fs, cache_err *err, const char *what,
                  const char *name, int e);
int64_t fs_now_ms(void);
int fs_is_live(int64_t expiry, int64_t now);
int fs_expiry_of_ttl(double ttl, int64_t *out);
void fs_put_header(unsigned char h[FS_HEADER], int64_t expiry);
int fs_parse_header(const unsigned char h[FS_HEADER], int64_t *expiry);
int fs_key_name(fs_cache *fs, cache_str key, char name[FS_NAME_MAX],
                cache_err *err);
int fs_is_entry_name(const fs_cache *fs, const char *s);
int fs_is_temp_name(const char *s);
int fs_remove_if_same(fs_cache *fs, const char *name, const struct stat *st);
int fs_read_entry(fs_cache *fs, const char *name, cache_buf *out,
                  int64_t *expiry, cache_err *err);
int fs_read_entry_keep(fs_cache *fs, const char *name, cache_buf *out,
                       int64_t *expiry, int keep, cache_err *err);

/* ---- fs_write.c: writing an entry -------------------------------------- */

int fs_write_entry(fs_cache *fs, const char *name, cache_str value,
                   int64_t expiry, int how, int *created, cache_err *err);

/* ---- fs_readcache.c: the read cache, every open ------------------------ */

void fs_rc_init(fs_cache *fs);
void fs_rc_fini(fs_cache *fs);
int fs_rc_get(fs_cache *fs, const char *name, cache_buf *out);
void fs_rc_fill(fs_cache *fs, const char *name, int fd, int64_t expiry,
                const char *value, size_t vlen);
void fs_rc_forget(fs_cache *fs, const char *name);
int fs_rc_forget_all(fs_cache *fs);
int fs_openat(int dirfd, const char *path, int flags, mode_t mode);

/* ---- fs_prune.c: listing, counting, pruning ---------------------------- */

/* Called by fs_list_dir for every name; anything but CACHE_OK stops the
 * listing and is returned. */
typedef int (*visit_fn)(fs_cache *, const struct dirent *, void *);

int fs_list_dir(fs_cache *fs, visit_fn visit, void *ctx, cache_err *err);
int fs_stale_temp(fs_cache *fs, const char *name);
void fs_count_add(fs_cache *fs, int64_t d);
void fs_note_new_entry(fs_cache *fs, const char *name);
int fs_count_one(fs_cache *fs, const struct dirent *de, void *ctx);

/* ---- fs_lock.c: the increment lock ------------------------------------- */

int fs_incr_lock(fs_cache *fs, int *lockfd, cache_err *err);

#endif
