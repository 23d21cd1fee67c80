/*
 * fs_entry.c - FileSystemCache's entries: their names, their file format,
 * reading one and judging what was read (writing one is fs_write.c), and
 * the small helpers every part of the backend uses.
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
 * Reads: openat(O_NOFOLLOW|O_NONBLOCK), readv of header and value straight
 * into the caller's buffer, close - no fstat on a hit: a short read is taken
 * as end of file, and bytes that do not make an entry are re-read to a true
 * end of file before they are called corrupt - unless their header already
 * is not ours: then reading stops at the first chunk, so that a huge or
 * sparse foreign file costs one chunk of memory, not its size.
 *
 * Expired entries are removed when get/has/add/incr meet them. Before any
 * removal by get/has the name is checked to still hold the inode that was
 * read, so a fresh entry renamed in meanwhile by another process survives
 * (up to a microsecond window between that check and the unlink).
 *
 * What must stay true: the bytes at an entry's name are untrusted (any
 * process or program may put a file there), so no value leaves here that
 * fs_parse_header and cache_validate did not accept; and nothing is removed
 * unless the name still holds the file that was judged (fs_remove_if_same),
 * nor ever a directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cache.h"
#include "codec.h"
#include "digest.h"
#include "fs_internal.h"

/* ---- small helpers ------------------------------------------------------ */

const char *fs_errtext(int e, char *buf, size_t n)
{
    return strerror_r(e, buf, n);
}

int fs_fail_errno(fs_cache *fs, cache_err *err, const char *what,
                  const char *name, int e)
{
    char eb[128];
    return cache_fail(err, CACHE_FAIL, "FileSystemCache: %s %s/%s: %s", what,
                      fs->dir, name, fs_errtext(e, eb, sizeof eb));
}

int64_t fs_now_ms(void)
{
    return (int64_t)floor(cache_wall_now() * 1000.0);
}

int fs_is_live(int64_t expiry, int64_t now)
{
    return expiry == 0 || now < expiry;
}

/* The stored expiry of a ttl: 0 = never; a positive ttl rounds up to the
 * millisecond (never expires early), a negative one stores a time already
 * past (never 0). Returns -1 for a ttl that is not a number. */
int fs_expiry_of_ttl(double ttl, int64_t *out)
{
    const double lim = 4.0e18;
    if (isnan(ttl))
        return -1;
    if (ttl == 0) {
        *out = 0;
        return 0;
    }
    int64_t now = fs_now_ms();
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

void fs_put_header(unsigned char h[FS_HEADER], int64_t expiry)
{
    uint64_t u = (uint64_t)expiry;
    memcpy(h, FS_MAGIC, 4);
    h[4] = FS_VERSION;
    h[5] = h[6] = h[7] = 0;
    for (int i = 0; i < 8; i++)
        h[8 + i] = (unsigned char)(u >> (8 * i));
}

/* 0 and the expiry, or -1 when the bytes are not our header. */
int fs_parse_header(const unsigned char h[FS_HEADER], int64_t *expiry)
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

int fs_key_name(fs_cache *fs, cache_str key, char name[FS_NAME_MAX],
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

int fs_is_entry_name(const fs_cache *fs, const char *s)
{
    return strlen(s) == fs->name_len && is_hex_lower(s, fs->name_len);
}

int fs_is_temp_name(const char *s)
{
    return strlen(s) == FS_TMP_LEN &&
           memcmp(s, FS_TMP_PREFIX, FS_TMP_PREFIX_LEN) == 0 &&
           is_hex_lower(s + FS_TMP_PREFIX_LEN, FS_TMP_LEN - FS_TMP_PREFIX_LEN);
}

/* ---- removal ------------------------------------------------------------ */

/* Removes name if it still is the inode that was read (st), so that an
 * entry renamed in by another process since then is kept. */
int fs_remove_if_same(fs_cache *fs, const char *name, const struct stat *st)
{
    struct stat now;
    if (fstatat(fs->dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    if (now.st_dev != st->st_dev || now.st_ino != st->st_ino)
        return -1;
    return unlinkat(fs->dirfd, name, 0);
}

/* A name that is a symlink (or other non-entry) where an entry should be:
 * removed, unless it is a directory. */
static void remove_foreign(fs_cache *fs, const char *name)
{
    struct stat st;
    if (fstatat(fs->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        !S_ISDIR(st.st_mode) && fs_remove_if_same(fs, name, &st) == 0)
        fs_count_add(fs, -1);
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
        *state = fs_fail_errno(fs, err, "open", name, e);
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
 * FIFO or the like, or a header that is not ours: nothing past the chunk
 * that held it is read or allocated), or a failure code. */
static int read_more(fs_cache *fs, const char *name, int fd, cache_buf *out,
                     reading *r, int strict, cache_err *err)
{
    while (!r->eof) {
        int64_t expiry;
        if (r->got >= FS_HEADER && fs_parse_header(r->h, &expiry) != 0)
            return ENT_BAD; /* whatever follows: read no further */
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
            return fs_fail_errno(fs, err, "read", name, errno);
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
    if (r->got < FS_HEADER || fs_parse_header(r->h, expiry) != 0)
        return ENT_BAD;
    if (!fs_is_live(*expiry, fs_now_ms()))
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
        return fs_fail_errno(fs, err, "read", name, errno);
    return ENT_BAD;
}

/* Removes an expired or bad entry that fd has open, if the name still
 * holds it (a directory is never removed). */
static void remove_read(fs_cache *fs, const char *name, int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode) &&
        fs_remove_if_same(fs, name, &st) == 0)
        fs_count_add(fs, -1);
}

/* Reads an entry. With out: the value is appended (and validated) when
 * ENT_LIVE; without: the header only. Expired and bad entries are removed
 * (ENT_EXPIRED / ENT_BAD returned). *expiry receives a live entry's expiry.
 * A failure is returned as its negative code. The hot path is openat,
 * readv, close. */
int fs_read_entry(fs_cache *fs, const char *name, cache_buf *out,
                  int64_t *expiry, cache_err *err)
{
    return fs_read_entry_keep(fs, name, out, expiry, 0, err);
}

/* fs_read_entry; with keep, a live entry read goes to the read cache. */
int fs_read_entry_keep(fs_cache *fs, const char *name, cache_buf *out,
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
        if (state == ENT_LIVE && fs_parse_header(r.h, &exp) != 0)
            state = ENT_BAD;
        else if (state == ENT_LIVE && !fs_is_live(exp, fs_now_ms()))
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
        fs_rc_fill(fs, name, fd, exp, out->data + out->len, vlen);
    else
        close(fd);
    if (state == ENT_LIVE) {
        *expiry = exp;
        if (out)
            out->len += vlen;
    }
    return state;
}
