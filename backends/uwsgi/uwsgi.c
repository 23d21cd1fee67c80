/*
 * uwsgi.c - UWSGICache: a cache of a running uWSGI server (--cache2), reached
 * over uWSGI's own socket protocol, as cachelib's UWSGICache reaches
 * "name@host:port".
 *
 * The protocol lives in uwsgi_proto.c (no sockets); this file is the
 * blocking transport (one connection per request, as the server closes after
 * each reply, with connect and I/O bounded by the `timeout` option) and the
 * meaning of each cache operation on top of the server's commands.
 *
 * Atomic on the server: get, set (update), delete, has, clear, and add's
 * create-only store. Not atomic: inc/dec (uWSGI offers no remote increment:
 * get + update, see uw_incr), and add's answer when the server refuses (see
 * uw_add).
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <netinet/in.h>

#include "cache.h"
#include "codec.h"
#include "hostport.h"
#include "uwsgi_co.h"
#include "uwsgi_proto.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

typedef struct uw_backend {
    cache_backend base;
    char *spec;     /* the `cache` option, for messages */
    char *name;     /* cache name (may be empty: the server's first cache) */
    size_t name_len;
    char *path;     /* unix socket path, or NULL */
    char *host;     /* TCP host (no brackets) and port, or NULL */
    char *port;
    double timeout; /* seconds, for connect and for the exchange */
    cache_co_opts co; /* its cosocket path (uwsgi_co.c) */
} uw_backend;

/* ---- options ------------------------------------------------------------ */

/* "name@address": the name up to the first '@' (as uWSGI splits it), the
 * address a unix socket path (starting with '/' or '.') or host:port. */
static int parse_spec(uw_backend *c, const char *s, size_t n, cache_err *err)
{
    if (memchr(s, '\0', n))
        return cache_fail(err, CACHE_EINVAL,
                          "option 'cache': contains a NUL byte");
    const char *at = memchr(s, '@', n);
    if (!at)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'cache': '%.*s' has no address; outside "
                          "uWSGI give 'name@host:port'",
                          (int)(n > 100 ? 100 : n), s);
    c->name_len = (size_t)(at - s);
    if (c->name_len > UWSGI_NAME_MAX)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'cache': the name of %zu bytes is too "
                          "long (max %d)",
                          c->name_len, UWSGI_NAME_MAX);
    c->spec = cache_strndup(s, n);
    c->name = cache_strndup(s, c->name_len);
    if (!c->spec || !c->name)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    const char *addr = at + 1;
    cache_hostport hp;
    int rc = cache_hostport_parse(addr, strlen(addr), CACHE_HP_UNIX, 0, &hp,
                                  "option 'cache'", err);
    if (rc == CACHE_ENOMEM ||
        (rc != CACHE_OK && cache_hostport_is_path(addr, strlen(addr))))
        return rc;
    if (rc != CACHE_OK)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'cache': '%s': the address after '@' "
                          "must be host:port or /path/to.sock",
                          c->spec);
    c->path = hp.path;
    c->host = hp.host;
    if (c->host) {
        char port[8];
        snprintf(port, sizeof port, "%d", hp.port);
        c->port = cache_strndup(port, strlen(port));
        if (!c->port)
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    return CACHE_OK;
}

/* ---- transport ------------------------------------------------------------ */

static int fail_io(uw_backend *c, cache_err *err, const char *what, int e)
{
    return cache_fail(err, CACHE_FAIL, "UWSGICache %s: %s: %s", c->spec, what,
                      strerror(e));
}

static int fail_timeout(uw_backend *c, cache_err *err, const char *what)
{
    return cache_fail(err, CACHE_FAIL, "UWSGICache %s: %s timed out after %gs",
                      c->spec, what, c->timeout);
}

/* Waits for events on fd until the deadline: 1 ready, 0 timed out,
 * -1 error (errno). */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        double left = deadline - cache_monotonic_now();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int ms = (int)ceil(left * 1000);
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* Starts a non-blocking connect and waits for it. fd, or -1 with errno
 * (ETIMEDOUT when the deadline passed). */
static int connect_addr(int family, const struct sockaddr *sa, socklen_t len,
                        double deadline)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, sa, len) == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EINTR)
        goto fail;
    int r = wait_fd(fd, POLLOUT, deadline);
    if (r == 0)
        errno = ETIMEDOUT;
    if (r <= 0)
        goto fail;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        goto fail;
    if (soerr) {
        errno = soerr;
        goto fail;
    }
    return fd;
fail: {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}
}

static int connect_unix(uw_backend *c, double deadline, cache_err *err)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, c->path, strlen(c->path) + 1);
    int fd = connect_addr(AF_UNIX, (struct sockaddr *)&sun, sizeof sun,
                          deadline);
    if (fd < 0)
        return errno == ETIMEDOUT ? fail_timeout(c, err, "connect")
                                  : fail_io(c, err, "connect", errno);
    return fd;
}

/* Resolves on every call: a server that moved is found again, and the
 * backend keeps no state between calls. */
static int connect_tcp(uw_backend *c, double deadline, cache_err *err)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(c->host, c->port, &hints, &ai);
    if (g)
        return cache_fail(err, CACHE_FAIL, "UWSGICache %s: resolve '%s': %s",
                          c->spec, c->host, gai_strerror(g));
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = connect_addr(a->ai_family, a->ai_addr, a->ai_addrlen, deadline);
        if (fd < 0)
            e = errno;
        if (e == ETIMEDOUT)
            break;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return e == ETIMEDOUT ? fail_timeout(c, err, "connect")
                              : fail_io(c, err, "connect", e);
    return fd;
}

/* Sends the whole request. CACHE_OK; CACHE_MISS when the server closed the
 * connection under us (it refused the request without reading it all);
 * CACHE_FAIL on a timeout or another error. */
static int send_all(uw_backend *c, int fd, const cache_buf *req,
                    double deadline, cache_err *err)
{
    size_t off = 0;
    while (off < req->len) {
        ssize_t n = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return CACHE_MISS;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return fail_io(c, err, "send", errno);
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r == 0)
            return fail_timeout(c, err, "send");
        if (r < 0)
            return fail_io(c, err, "poll", errno);
    }
    return CACHE_OK;
}

/* Receives until the reply is complete (as uwsgi_proto_reply_need says) or
 * the server closes. CACHE_OK: reply holds what came (empty when the server
 * closed without a byte); CACHE_MISS: reset before any byte; CACHE_FAIL on
 * a timeout, a reset mid-reply or bytes that are no reply. */
static int recv_reply(uw_backend *c, int fd, cache_buf *reply, double deadline,
                      cache_err *err)
{
    for (;;) {
        size_t need;
        if (uwsgi_proto_reply_need(reply->data, reply->len, &need, err) !=
            CACHE_OK)
            return CACHE_FAIL;
        if (reply->len >= need)
            return CACHE_OK;
        /* Grow by what arrives, not by what the reply claims: a lying size
         * costs a timeout, never a huge allocation. */
        size_t want = need - reply->len;
        if (want < 16384)
            want = 16384;
        if (want > ((size_t)1 << 20))
            want = (size_t)1 << 20;
        if (cache_buf_reserve(reply, want))
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        ssize_t n = recv(fd, reply->data + reply->len, want, 0);
        if (n > 0) {
            reply->len += (size_t)n;
            continue;
        }
        if (n == 0)
            return CACHE_OK; /* closed: the parser judges what came */
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET && reply->len == 0)
            return CACHE_MISS;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return fail_io(c, err, "recv", errno);
        int r = wait_fd(fd, POLLIN, deadline);
        if (r == 0)
            return fail_timeout(c, err, "reply");
        if (r < 0)
            return fail_io(c, err, "poll", errno);
    }
}

/* After a complete reply, waits briefly for the server's close before
 * closing our end: the side that closes first keeps the TIME_WAIT, and with
 * one connection per request a busy client would otherwise run out of
 * ephemeral ports. uWSGI closes right after replying; anything else it sends
 * is ignored. */
static void await_close(int fd, double deadline)
{
    double soon = cache_monotonic_now() + 0.05;
    if (soon > deadline)
        soon = deadline;
    char sink[512];
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = recv(fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN &&
                       errno != EWOULDBLOCK))
            return;
        if (n < 0 && errno != EINTR && wait_fd(fd, POLLIN, soon) <= 0)
            return;
    }
}

/* One request on a connection of its own. CACHE_OK: the server replied
 * (reply holds the bytes; empty = it closed without a word); CACHE_MISS:
 * it reset the connection without a reply; CACHE_FAIL otherwise. */
static int roundtrip(uw_backend *c, const cache_buf *req, cache_buf *reply,
                     cache_err *err)
{
    cache_co *co = cache_co_of(&c->base);
    if (co) {
        char label[CACHE_ERRMSG_MAX / 2];
        snprintf(label, sizeof label, "UWSGICache %s", c->spec);
        return uwsgi_co_roundtrip(co, c->host, c->port ? atoi(c->port) : 0,
                                  c->path, label, c->timeout, req, reply, err);
    }
    double deadline = cache_monotonic_now() + c->timeout;
    int fd = c->path ? connect_unix(c, deadline, err)
                     : connect_tcp(c, deadline, err);
    if (fd < 0)
        return CACHE_FAIL;
    deadline = cache_monotonic_now() + c->timeout;
    int rc = send_all(c, fd, req, deadline, err);
    if (rc == CACHE_OK)
        rc = recv_reply(c, fd, reply, deadline, err);
    if (rc == CACHE_OK && reply->len > 0)
        await_close(fd, deadline);
    close(fd);
    return rc;
}

/* ---- commands ------------------------------------------------------------- */

/* Prefixes the parser's reason with the backend's name. */
static int fail_reply(uw_backend *c, cache_err *err)
{
    char why[CACHE_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", err ? err->msg : "bad reply");
    return cache_fail(err, CACHE_FAIL, "UWSGICache %s: %s", c->spec, why);
}

/* What a command got back. */
enum { ANSWER_OK, ANSWER_NONE, ANSWER_RESET };

/* Sends one command and classifies the answer: ANSWER_OK (status ok; a get's
 * value appended to out and, when deadline is given, the entry's absolute
 * expiry stored there, 0 for none), ANSWER_NONE (closed without a reply, or
 * notfound), ANSWER_RESET (reset without a reply); or a negative failure. */
static int command(uw_backend *c, uwsgi_cmd cmd, cache_str key,
                   cache_str value, uint64_t expires, cache_buf *out,
                   uint64_t *deadline, cache_err *err)
{
    char digest[UWSGI_DIGEST_KEY_LEN + 1];
    cache_str wire_key = {NULL, 0};
    if (cmd != UWSGI_CMD_CLEAR && uwsgi_proto_map_key(key, digest, &wire_key))
        return cache_fail(err, CACHE_FAIL, "UWSGICache %s: key digest failed",
                          c->spec);
    cache_buf req, reply;
    cache_buf_init(&req);
    cache_buf_init(&reply);
    cache_str name = {c->name, c->name_len};
    int rc = uwsgi_proto_request(&req, cmd, name, wire_key, value, expires,
                                 err);
    if (rc == CACHE_OK)
        rc = roundtrip(c, &req, &reply, err);
    int answer = rc;
    if (rc == CACHE_MISS) {
        answer = ANSWER_RESET;
    } else if (rc == CACHE_OK) {
        uwsgi_reply r;
        rc = uwsgi_proto_parse_reply(reply.data, reply.len, &r, err);
        if (rc == CACHE_MISS)
            answer = ANSWER_NONE;
        else if (rc != CACHE_OK)
            answer = fail_reply(c, err);
        else if (out && r.has_value &&
                 cache_buf_append(out, r.value, r.value_len))
            answer = cache_fail(err, CACHE_ENOMEM, "out of memory");
        else
            answer = (out && !(r.has_value && r.value_len > 0)) ? ANSWER_NONE
                                                                 : ANSWER_OK;
        if (answer == ANSWER_OK && deadline)
            *deadline = r.expires;
    }
    cache_buf_free(&req);
    cache_buf_free(&reply);
    return answer;
}

/* The server would not store: it resets the connection when it left the
 * value unread (over the cache's item size), else it just closes. Sets
 * *refused: the failure concerns this value, not the server. */
static int refused_store(uw_backend *c, size_t size, int reset, int *refused,
                         cache_err *err)
{
    *refused = 1;
    if (reset || size > UWSGI_DEFAULT_ITEM_MAX)
        return cache_fail(err, CACHE_FAIL,
                          "UWSGICache %s: value too large or server refused "
                          "(%zu bytes; uWSGI's default item limit is %d)",
                          c->spec, size, UWSGI_DEFAULT_ITEM_MAX);
    return cache_fail(err, CACHE_FAIL,
                      "UWSGICache %s: server refused to store %zu bytes "
                      "(cache full, value over the cache's blocksize, or "
                      "unknown cache name)",
                      c->spec, size);
}

/* ---- the vtable ------------------------------------------------------------ */

static int uw_get(cache_backend *b, cache_str key, cache_buf *out,
                  cache_err *err)
{
    uw_backend *c = (uw_backend *)b;
    size_t start = out->len;
    int a = command(c, UWSGI_CMD_GET, key, (cache_str){NULL, 0}, 0, out, NULL,
                    err);
    if (a == ANSWER_OK)
        return CACHE_OK;
    out->len = start;
    return a < 0 ? a : CACHE_MISS;
}

static int uw_has(cache_backend *b, cache_str key, cache_err *err)
{
    uw_backend *c = (uw_backend *)b;
    int a = command(c, UWSGI_CMD_EXISTS, key, (cache_str){NULL, 0}, 0, NULL,
                    NULL, err);
    return a < 0 ? a : a == ANSWER_OK ? CACHE_OK : CACHE_MISS;
}

static int uw_del(cache_backend *b, cache_str key, cache_err *err)
{
    uw_backend *c = (uw_backend *)b;
    int a = command(c, UWSGI_CMD_DEL, key, (cache_str){NULL, 0}, 0, NULL, NULL,
                    err);
    return a < 0 ? a : a == ANSWER_OK ? CACHE_OK : CACHE_MISS;
}

/* add = the server's create-only `set`. Its silence means "the key exists"
 * as well as "refused" (too large, cache full, unknown cache): a follow-up
 * `exists` tells them apart. That second question is not atomic with the
 * first: should the key vanish in between, a refusal is reported as a
 * failure although the key had been there. */
static int uw_add(uw_backend *c, cache_str key, cache_str value,
                  uint64_t expires, int *refused, cache_err *err)
{
    int a = command(c, UWSGI_CMD_SET, key, value, expires, NULL, NULL, err);
    if (a < 0)
        return a;
    if (a == ANSWER_OK)
        return CACHE_OK;
    int h = uw_has(&c->base, key, err);
    if (h == CACHE_OK)
        return CACHE_EXISTS;
    if (h < 0)
        return h;
    return refused_store(c, value.len, a == ANSWER_RESET, refused, err);
}

/* Create or overwrite with the `expires` var (relative seconds, 0 = never).
 * *refused as for store. */
static int update(uw_backend *c, cache_str key, cache_str value,
                  uint64_t expires, int *refused, cache_err *err)
{
    int a = command(c, UWSGI_CMD_UPDATE, key, value, expires, NULL, NULL, err);
    if (a < 0)
        return a;
    return a == ANSWER_OK ? CACHE_OK
                          : refused_store(c, value.len, a == ANSWER_RESET,
                                          refused, err);
}

/* set / add. *refused is set when a failure concerns this value only (the
 * server would not store it); any other failure is the exchange's. */
static int store(uw_backend *c, cache_str key, cache_str value, double ttl,
                 int only_if_absent, int *refused, cache_err *err)
{
    *refused = 0;
    if (value.len == 0) {
        *refused = 1;
        return cache_fail(err, CACHE_FAIL,
                          "UWSGICache %s: uWSGI cannot store a zero-length "
                          "value",
                          c->spec);
    }
    if (ttl < 0) {
        /* Stored already expired: uWSGI has no such thing, so the key goes
         * (and add only reports whether a live entry was in the way). */
        if (only_if_absent) {
            int h = uw_has(&c->base, key, err);
            return h == CACHE_OK ? CACHE_EXISTS : h < 0 ? h : CACHE_OK;
        }
        int d = uw_del(&c->base, key, err);
        return d < 0 ? d : CACHE_OK;
    }
    uint64_t expires = uwsgi_proto_expires(ttl, cache_wall_now());
    if (only_if_absent)
        return uw_add(c, key, value, expires, refused, err);
    return update(c, key, value, expires, refused, err);
}

static int uw_set(cache_backend *b, cache_str key, cache_str value, double ttl,
                  int only_if_absent, cache_err *err)
{
    int refused;
    return store((uw_backend *)b, key, value, ttl, only_if_absent, &refused,
                 err);
}

/* get + update, as uWSGI has no remote increment (so not atomic: concurrent
 * increments from several clients can be lost). uWSGI's update always sets
 * the TTL anew, so the deadline the get reported is sent back as what is
 * left of it: an existing entry keeps its expiry. One that expired while the
 * server still answered it (caches without lazy_expire answer expired
 * entries until the sweeper runs) counts as missing. */
static int uw_incr(cache_backend *b, cache_str key, int64_t delta,
                   double new_ttl, int64_t *result, cache_err *err)
{
    uw_backend *c = (uw_backend *)b;
    cache_buf cur, next;
    cache_buf_init(&cur);
    cache_buf_init(&next);
    uint64_t deadline = 0, expires = 0;
    int64_t sum = 0;
    int refused;
    int a = command(c, UWSGI_CMD_GET, key, (cache_str){NULL, 0}, 0, &cur,
                    &deadline, err);
    int live = a == ANSWER_OK &&
               uwsgi_proto_keep_expires(deadline, cache_wall_now(),
                                        &expires) == 0;
    int rc = a < 0 ? a : CACHE_OK;
    if (rc == CACHE_OK) {
        cache_str old = {cur.data, cur.len};
        rc = cache_value_add(live ? &old : NULL, delta, &next, &sum, err);
    }
    if (rc == CACHE_OK) {
        cache_str v = {next.data, next.len};
        rc = live ? update(c, key, v, expires, &refused, err)
                  : store(c, key, v, new_ttl, 0, &refused, err);
    }
    if (rc == CACHE_OK)
        *result = sum;
    cache_buf_free(&cur);
    cache_buf_free(&next);
    return rc;
}

/* A failure other than a refused value means the server did not answer (or
 * not in its protocol): each further key would wait as long, so a batch
 * stops at the first one, whatever ignore_errors says, and returns it with
 * its message. The keys not reached get the same failure. */
static int uw_set_many(cache_backend *b, size_t n, const cache_str *keys,
                       const cache_str *values, double ttl, int *status,
                       cache_err *err)
{
    uw_backend *c = (uw_backend *)b;
    int rc = CACHE_OK;
    for (size_t i = 0; i < n; i++) {
        int refused;
        status[i] = store(c, keys[i], values[i], ttl, 0, &refused, err);
        if (status[i] >= 0)
            continue;
        rc = status[i];
        if (!refused) {
            for (size_t j = i + 1; j < n; j++)
                status[j] = rc;
            return rc;
        }
    }
    return rc;
}

/* del fails only when the exchange does (a missing key is a miss), so there
 * is nothing for ignore_errors to go past: the first failure ends the batch
 * (the keys not reached stay misses, as the engine set them). */
static int uw_del_many(cache_backend *b, size_t n, const cache_str *keys,
                       int *status, cache_err *err)
{
    for (size_t i = 0; i < n; i++) {
        status[i] = uw_del(b, keys[i], err);
        if (status[i] < 0)
            return status[i];
    }
    return CACHE_OK;
}

static int uw_clear(cache_backend *b, cache_err *err)
{
    uw_backend *c = (uw_backend *)b;
    int a = command(c, UWSGI_CMD_CLEAR, (cache_str){NULL, 0},
                    (cache_str){NULL, 0}, 0, NULL, NULL, err);
    if (a < 0)
        return a;
    if (a == ANSWER_OK)
        return CACHE_OK;
    return cache_fail(err, CACHE_FAIL,
                      "UWSGICache %s: server refused to clear (unknown cache "
                      "name?)",
                      c->spec);
}

static void uw_destroy(cache_backend *b)
{
    uw_backend *c = (uw_backend *)b;
    if (!c)
        return;
    free(c->spec);
    free(c->name);
    free(c->path);
    free(c->host);
    free(c->port);
    free(c);
}

static const cache_vtable uw_vtable = {
    .name = "UWSGICache",
    .get = uw_get,
    .set = uw_set,
    .del = uw_del,
    .has = uw_has,
    .clear = uw_clear,
    .incr = uw_incr,
    .set_many = uw_set_many,
    .del_many = uw_del_many,
    .destroy = uw_destroy,
};

cache_backend *cache_uwsgi_create(cache_opts *opts, cache_err *err)
{
    const char *spec = "";
    size_t spec_len = 0;
    double timeout = 1.0;
    if (cache_opt_str(opts, "cache", &spec, &spec_len, err) < 0 ||
        cache_opt_num(opts, "timeout", 0.001, 86400, &timeout, err) < 0)
        return NULL;
    cache_co_opts co;
    if (cache_co_take_opts(opts, &co, err) != CACHE_OK)
        return NULL;
    uw_backend *c = calloc(1, sizeof *c);
    if (!c) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    c->base.vt = &uw_vtable;
    c->timeout = timeout;
    c->co = co;
    c->base.co = &c->co;
    if (parse_spec(c, spec, spec_len, err) != CACHE_OK) {
        uw_destroy(&c->base);
        return NULL;
    }
    return &c->base;
}
