/*
 * uwsgi_proto.h - the uWSGI cache protocol without sockets: building a
 * request packet, knowing when a reply is complete and parsing it.
 *
 * Bytes in, bytes out: no socket here, so the blocking transport of
 * uwsgi.c and the fuzzer share it, and any other transport can.
 *
 * The protocol (uWSGI 2.0.21, the "magic" interface of the cache plugin):
 *   packet  = modifier1 (u8 = 111), pktsize (u16 little-endian),
 *             modifier2 (u8 = 17), then pktsize bytes of vars
 *   vars    = repeated u16le keylen, key, u16le vallen, value
 *   request vars: cmd (get|set|update|del|exists|clear), key, cache (name),
 *             and for set/update size (decimal) and expires (decimal,
 *             relative seconds; absent = never); the raw value (size bytes)
 *             follows the vars block and is not counted in pktsize.
 *   reply   = a packet whose vars hold status=ok (get adds size=n and, for
 *             an entry with a TTL, expires=<absolute unix time>), followed
 *             for get by the n value bytes. A miss and every failure are
 *             answered by closing the connection without a byte (EOF), or
 *             with a reset when the server left input unread (value larger
 *             than the cache's item size, vars block over --buffer-size).
 *   The server serves one request per connection, then closes.
 *
 * What the commands mean for a caller (see backends/uwsgi/uwsgi.c):
 *   get     ok+value = hit; no reply = miss
 *   update  create or overwrite, setting the TTL (none when expires is
 *           absent); no reply = refused. There is no "keep the TTL": an
 *           increment reads the deadline with get and sends what is left
 *           (uwsgi_proto_keep_expires).
 *   set     create only; no reply = the key exists OR the store was refused
 *           (too large, cache full, unknown cache): ask `exists` to tell
 *   del     ok = deleted; no reply = there was no such key
 *   exists  ok = present; no reply = absent
 *   clear   ok = cleared; no reply = refused (unknown cache)
 *   There is no remote increment.
 */
#ifndef CACHE_BACKENDS_UWSGI_PROTO_H
#define CACHE_BACKENDS_UWSGI_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "digest.h"

#define UWSGI_MODIFIER1 111
#define UWSGI_MODIFIER2 17

/* Keys are sent as they are up to this many bytes. uWSGI refuses keys over
 * the cache's keysize (2048 by default) and a whole vars block over its
 * --buffer-size (4096 by default): 2000 leaves room for the other vars and a
 * cache name of up to UWSGI_NAME_MAX bytes. Longer (and empty) keys are sent
 * as their digest form, see uwsgi_proto_map_key. */
#define UWSGI_KEY_MAX 2000
#define UWSGI_NAME_MAX 1000

/* The digest form of a key (digest.h): "#" + 64 hex digits of SHA-256. */
#define UWSGI_DIGEST_KEY_LEN CACHE_KEY_DIGEST_LEN

/* A reply claiming more bytes than this is refused as corrupt (uWSGI's own
 * item limit is the cache's blocksize, 64 KiB by default; bitmap caches can
 * hold more). */
#define UWSGI_REPLY_MAX ((size_t)256 << 20)

/* uWSGI's default maximum item size (blocksize), for error messages only:
 * a server may be configured otherwise, so nothing is refused on our side. */
#define UWSGI_DEFAULT_ITEM_MAX 65536

typedef enum {
    UWSGI_CMD_GET,
    UWSGI_CMD_SET,    /* add: create only */
    UWSGI_CMD_UPDATE, /* create or overwrite */
    UWSGI_CMD_DEL,
    UWSGI_CMD_EXISTS,
    UWSGI_CMD_CLEAR
} uwsgi_cmd;

const char *uwsgi_cmd_name(uwsgi_cmd cmd);

/* The key uWSGI is sent for a user key: the key itself when it has 1 to
 * UWSGI_KEY_MAX bytes and does not start with '#', else its digest form,
 * "#" followed by the lower-case hex SHA-256 of the key (digest.h:
 * deterministic, so every client maps a key the same way, and one-to-one).
 * The result points either at key or at buf. Returns 0, or -1 if the
 * digest could not be computed. */
int uwsgi_proto_map_key(cache_str key, char buf[UWSGI_DIGEST_KEY_LEN + 1],
                        cache_str *mapped);

/* The `expires` var for a ttl > 0 set at wall time `now` (seconds since the
 * epoch): uWSGI stores now_server + expires with whole-second clocks and
 * treats the entry as expired once its clock reaches that second, so the
 * deadline is rounded UP to a whole second of the wall clock: the entry
 * lives at least ttl seconds and at most one second more (given clocks that
 * agree). 0 for ttl <= 0 or NaN (no expires var); capped at about 317 years. */
uint64_t uwsgi_proto_expires(double ttl, double now);

/* The `expires` var with which an update keeps the absolute deadline a get
 * reply gave (server seconds since the epoch), sent at wall time `now`:
 * deadline - floor(now), as the server adds its whole-second clock (given
 * clocks that agree, the entry keeps its deadline, or gets one second more
 * should the server's clock tick while the request travels). Returns 0 and
 * sets *expires (0: no deadline, none to keep), or -1 when the deadline is
 * not after floor(now): the entry has expired, whatever a server that sweeps
 * lazily still answers. Capped like uwsgi_proto_expires. */
int uwsgi_proto_keep_expires(uint64_t deadline, double now,
                             uint64_t *expires);

/* Appends a complete request packet to out: header, vars and, for set and
 * update, the value bytes. `name` may be empty (then no cache var is sent:
 * the server's first cache). key is ignored for clear; value and expires
 * for everything but set/update (expires 0 = no expires var). The key must
 * already be mapped. CACHE_OK, CACHE_EINVAL (a field too long for the u16
 * framing or the limits above), or CACHE_ENOMEM. */
int uwsgi_proto_request(cache_buf *out, uwsgi_cmd cmd, cache_str name,
                        cache_str key, cache_str value, uint64_t expires,
                        cache_err *err);

/* How many bytes the complete reply needs, given the first len bytes
 * received: CACHE_OK with *need set (len >= *need means complete; a caller
 * can stop reading there), or CACHE_FAIL when these bytes cannot start a
 * valid reply. Never reads past len. */
int uwsgi_proto_reply_need(const void *buf, size_t len, size_t *need,
                           cache_err *err);

typedef struct uwsgi_reply {
    int has_value;     /* a size var was present */
    const char *value; /* points into the parsed bytes */
    size_t value_len;
    uint64_t expires;  /* absolute unix time from the server, 0 if none */
} uwsgi_reply;

/* Parses everything the server sent before it closed (len 0: it closed at
 * once). Total: any bytes give one of
 *   CACHE_OK    status ok (r filled; value present for a get hit)
 *   CACHE_MISS  no reply at all, or a status of "notfound"/"error"
 *               (which 2.0.21 never sends but its comments announce)
 *   CACHE_FAIL  anything else (truncated, not a cache reply, bad vars),
 *               with the reason in err.
 * Bytes after the value are ignored. */
int uwsgi_proto_parse_reply(const void *buf, size_t len, uwsgi_reply *r,
                            cache_err *err);

#endif
