/*
 * redis_net.c - the blocking transport of the Redis backends (see
 * redis_net.h): sockets bounded by deadlines or socket timeouts, so that no
 * call waits past its timeouts whatever the server does; plain text or TLS
 * (redis_tls.c) behind the same two I/O calls.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "hostport.h"
#include "redis_net.h"

/* ---- configuration ------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? cache_strndup(s, strlen(s)) : NULL;
}

int redis_conn_init(redis_conn *c, const redis_conn_config *cfg,
                    cache_err *err)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    redis_req_init(&c->setup);
    c->port = cfg->port;
    c->db = cfg->db;
    c->connect_timeout = cfg->connect_timeout;
    c->timeout = cfg->timeout;
    c->host = dup_or_null(cfg->path ? NULL : cfg->host);
    c->path = dup_or_null(cfg->path);
    c->username = dup_or_null(cfg->username);
    c->password = dup_or_null(cfg->password);
    c->tls = redis_tls_ref(cfg->tls);
    if ((cfg->path && !c->path) || (!cfg->path && !c->host) ||
        (cfg->username && !c->username) || (cfg->password && !c->password)) {
        redis_conn_free(c);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    const char *kind = cfg->kind ? cfg->kind : "redis";
    if (c->path) {
        snprintf(c->label, sizeof c->label, "%s unix:%s", kind, c->path);
    } else {
        int n = snprintf(c->label, sizeof c->label, "%s ", kind);
        if (n > 0 && (size_t)n < sizeof c->label)
            cache_hostport_format(c->label + n, sizeof c->label - (size_t)n,
                                  c->host, c->port);
    }
    return CACHE_OK;
}

void redis_conn_close(redis_conn *c)
{
    redis_tls_sess_free(c->sess); /* writes nothing: see redis_tls.h */
    c->sess = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->reader)
        redisReaderFree(c->reader);
    c->reader = NULL;
}

void redis_conn_free(redis_conn *c)
{
    redis_conn_close(c);
    redis_req_free(&c->setup);
    free(c->host);
    free(c->path);
    free(c->username);
    if (c->password) /* do not leave the secret in freed memory */
        memset(c->password, 0, strlen(c->password));
    free(c->password);
    c->host = c->path = c->username = c->password = NULL;
    redis_tls_unref(c->tls);
    c->tls = NULL;
}

int redis_conn_connected(const redis_conn *c)
{
    return c->fd >= 0;
}

double redis_conn_deadline(const redis_conn *c)
{
    return c->timeout > 0 ? cache_monotonic_now() + c->timeout : 0;
}

/* ---- waiting ------------------------------------------------------------- */

/* 1 when fd is ready for events, 0 when the deadline passed, -1 on error. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - cache_monotonic_now();
            if (left <= 0)
                return 0;
            ms = (int)ceil(left * 1000.0);
        }
        struct pollfd p = {fd, events, 0};
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 1;
        if (n == 0)
            continue; /* re-check the clock: poll may wake a bit early */
        if (errno != EINTR)
            return -1;
    }
}

/* A failure of the connection itself: closes it, so the next call starts
 * afresh. */
static int conn_fail(redis_conn *c, redis_req *q, cache_err *err,
                     const char *what)
{
    redis_conn_close(c);
    if (q)
        redis_req_drop_replies(q);
    return cache_fail(err, CACHE_FAIL, "%s: %s", c->label, what);
}

static int conn_fail_errno(redis_conn *c, redis_req *q, cache_err *err,
                           const char *doing, int e)
{
    char what[128];
    snprintf(what, sizeof what, "%s: %s", doing, strerror(e));
    return conn_fail(c, q, err, what);
}

/* ---- moving bytes ------------------------------------------------------------ */

/* send() and recv(), or their TLS equivalents: bytes moved, 0 (recv: the
 * server closed), or -1 with errno; on EAGAIN *want is what to poll for
 * (a TLS session may need to read in order to write, or the reverse). */
static ssize_t io_send(redis_conn *c, const char *p, size_t n, short *want)
{
    *want = POLLOUT;
    if (c->sess)
        return redis_tls_write(c->sess, p, n, want);
    return send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t io_recv(redis_conn *c, char *p, size_t n, short *want)
{
    *want = POLLIN;
    if (c->sess)
        return redis_tls_read(c->sess, p, n, want);
    return recv(c->fd, p, n, 0);
}

/* A failed io_send / io_recv: a TLS error says what TLS said. */
static int io_fail(redis_conn *c, redis_req *q, cache_err *err,
                   const char *doing, int e)
{
    if (e == EPROTO && c->sess) {
        char what[200];
        snprintf(what, sizeof what, "%s: TLS: %s", doing,
                 redis_tls_error(c->sess));
        return conn_fail(c, q, err, what);
    }
    return conn_fail_errno(c, q, err, doing, e);
}

/* ---- connecting ------------------------------------------------------------- */

/* Once connected, the socket blocks, each read and write bounded by the
 * socket's own timeouts (SO_RCVTIMEO / SO_SNDTIMEO = timeout): a request
 * then costs one send and one recv, where a non-blocking socket would add a
 * poll and a second recv whenever the reply is not there yet. The semantics
 * are those of a poll loop: a call fails after `timeout` seconds without
 * progress (EAGAIN then means exactly that). 1 when set (0: the socket stays
 * non-blocking, and is polled). */
static int make_blocking(int fd, double timeout)
{
    if (timeout > 0) {
        struct timeval tv;
        tv.tv_sec = (time_t)timeout;
        tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
        if (tv.tv_sec == 0 && tv.tv_usec == 0)
            tv.tv_usec = 1; /* 0 would mean no timeout at all */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
            return 0;
    }
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0;
}

/* Connects a non-blocking socket to addr before deadline: the socket, or -1
 * with *why set (an errno, or ETIMEDOUT). */
static int connect_addr(int family, const struct sockaddr *addr,
                        socklen_t len, double deadline, int *why)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *why = errno;
        return -1;
    }
    if (connect(fd, addr, len) == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR) {
        *why = errno;
        close(fd);
        return -1;
    }
    int ready = wait_fd(fd, POLLOUT, deadline);
    if (ready <= 0) {
        *why = ready == 0 ? ETIMEDOUT : errno;
        close(fd);
        return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr) {
        *why = soerr;
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_unix(redis_conn *c, double deadline, int *why)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(c->path) >= sizeof sa.sun_path) {
        *why = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, c->path);
    return connect_addr(AF_UNIX, (struct sockaddr *)&sa, sizeof sa, deadline,
                        why);
}

/* Tries each address of the host in turn (localhost may be ::1 first). */
static int connect_tcp(redis_conn *c, double deadline, int *why,
                       const char **gai)
{
    char port[16];
    snprintf(port, sizeof port, "%d", c->port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(c->host, port, &hints, &res);
    if (rc != 0) {
        *gai = gai_strerror(rc);
        return -1;
    }
    int fd = -1;
    *why = ECONNREFUSED;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next)
        fd = connect_addr(a->ai_family, a->ai_addr, a->ai_addrlen, deadline,
                          why);
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    return fd;
}

/* AUTH and SELECT, in one round trip. */
static int setup_session(redis_conn *c, cache_err *err)
{
    redis_req *q = &c->setup;
    redis_req_reset(q);
    char db[24];
    int rc = CACHE_OK;
    /* A user without a password: AUTH user "" (an ACL user with nopass
     * accepts any password), as redis-py does. */
    if (c->username)
        rc = redis_req_addz(q, err, 3, "AUTH", c->username,
                            c->password ? c->password : "");
    else if (c->password)
        rc = redis_req_addz(q, err, 2, "AUTH", c->password);
    if (rc == CACHE_OK && c->db != 0) {
        snprintf(db, sizeof db, "%lld", (long long)c->db);
        rc = redis_req_addz(q, err, 2, "SELECT", db);
    }
    if (rc != CACHE_OK || q->ncmds == 0)
        return rc;
    rc = redis_conn_send(c, q, err);
    if (rc == CACHE_OK)
        rc = redis_conn_recv(c, q, err);
    if (rc != CACHE_OK)
        return rc;
    for (size_t i = 0; i < q->nreplies; i++) {
        const redisReply *r = q->replies[i];
        if (r->type != REDIS_REPLY_STATUS) {
            const char *what =
                i == 0 && (c->password || c->username) ? "AUTH" : "SELECT";
            char msg[200];
            snprintf(msg, sizeof msg, "%s failed: %.*s", what,
                     r->type == REDIS_REPLY_ERROR ? (int)(r->len < 150 ? r->len : 150) : 15,
                     r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            redis_req_reset(q);
            return conn_fail(c, NULL, err, msg);
        }
    }
    redis_req_reset(q);
    return CACHE_OK;
}

/* The TLS handshake on the fresh non-blocking socket, before deadline
 * (limit seconds from the start, for the message). A failure closes the
 * connection: nothing is ever sent in plain text. */
static int tls_handshake(redis_conn *c, double deadline, double limit,
                         cache_err *err)
{
    c->sess = redis_tls_sess_new(c->tls, c->fd, c->host);
    if (!c->sess) {
        redis_conn_close(c);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    for (;;) {
        short want = POLLIN;
        char why[200];
        int r = redis_tls_handshake(c->sess, &want, why, sizeof why);
        if (r > 0)
            return CACHE_OK;
        if (r < 0)
            return conn_fail(c, NULL, err, why);
        int ready = wait_fd(c->fd, want, deadline);
        if (ready == 0) {
            snprintf(why, sizeof why,
                     "TLS handshake timed out after %gs (does the server "
                     "speak TLS on this port?)", limit);
            return conn_fail(c, NULL, err, why);
        }
        if (ready < 0)
            return conn_fail_errno(c, NULL, err, "TLS handshake", errno);
    }
}

/* This process's id, kept in memory: getpid() is a system call (glibc no
 * longer caches it) and every request asked three times, a tenth of a get
 * on loopback. fork() refreshes it in the child through pthread_atfork. */
static pid_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_after_fork(void)
{
    cached_pid = getpid();
}

static void pid_init(void)
{
    cached_pid = getpid();
    pthread_atfork(NULL, NULL, pid_after_fork);
}

static pid_t self_pid(void)
{
    pthread_once(&pid_once, pid_init);
    return cached_pid;
}

/* A connection opened before fork() is shared with the other process: its
 * replies would be read by whichever asks first. The child drops its copy
 * (without a word to the server) and opens its own. */
static void drop_if_forked(redis_conn *c)
{
    if (c->fd >= 0 && c->pid != self_pid()) {
        close(c->fd);
        c->fd = -1;
        redis_conn_close(c);
    }
}

int redis_conn_open(redis_conn *c, cache_err *err)
{
    drop_if_forked(c);
    if (c->fd >= 0)
        return CACHE_OK;
    double deadline = c->connect_timeout > 0
                          ? cache_monotonic_now() + c->connect_timeout
                          : 0;
    int why = 0;
    const char *gai = NULL;
    int fd = c->path ? connect_unix(c, deadline, &why)
                     : connect_tcp(c, deadline, &why, &gai);
    if (fd < 0) {
        if (gai)
            return cache_fail(err, CACHE_FAIL, "%s: cannot resolve host: %s",
                              c->label, gai);
        if (why == ETIMEDOUT)
            return cache_fail(err, CACHE_FAIL,
                              "%s: connect timed out after %gs", c->label,
                              c->connect_timeout);
        return cache_fail(err, CACHE_FAIL, "%s: connect: %s", c->label,
                          strerror(why));
    }
    c->reader = redis_reader_new();
    if (!c->reader) {
        close(fd);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    c->fd = fd;
    c->pid = self_pid();
    if (c->tls) {
        /* no connect_timeout: the handshake is still bounded, by timeout */
        double limit = c->connect_timeout;
        if (deadline == 0 && c->timeout > 0) {
            limit = c->timeout;
            deadline = cache_monotonic_now() + limit;
        }
        int rc = tls_handshake(c, deadline, limit, err);
        if (rc != CACHE_OK)
            return rc;
    }
    c->blocking = make_blocking(fd, c->timeout);
    return setup_session(c, err);
}

/* ---- exchanging -------------------------------------------------------------- */

int redis_conn_send(redis_conn *c, redis_req *q, cache_err *err)
{
    redis_req_drop_replies(q);
    int rc = redis_conn_open(c, err);
    if (rc != CACHE_OK)
        return rc;
    rc = redis_req_reserve_replies(q, err);
    if (rc != CACHE_OK)
        return rc;
    size_t done = 0;
    while (done < q->bytes.len) {
        short want;
        ssize_t n = io_send(c, q->bytes.data + done, q->bytes.len - done,
                            &want);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* blocking: the send timeout already ran out */
            int ready = c->blocking ? 0 : wait_fd(c->fd, want, redis_conn_deadline(c));
            if (ready > 0)
                continue;
            if (ready == 0) {
                char what[64];
                snprintf(what, sizeof what, "write stalled for %gs",
                         c->timeout);
                return conn_fail(c, q, err, what);
            }
        }
        c->closed_early = errno == EPIPE || errno == ECONNRESET;
        return io_fail(c, q, err, "write", errno);
    }
    return CACHE_OK;
}

int redis_conn_recv(redis_conn *c, redis_req *q, cache_err *err)
{
    drop_if_forked(c);
    if (c->fd < 0)
        return conn_fail(c, q, err, "not connected");
    char chunk[65536];
    while (q->nreplies < q->ncmds) {
        redisReply *reply;
        int got = redis_reader_next(c->reader, &reply, err);
        if (got < 0) {
            char what[CACHE_ERRMSG_MAX];
            snprintf(what, sizeof what, "%s", err ? err->msg : "protocol error");
            return conn_fail(c, q, err, what);
        }
        if (got) {
            q->replies[q->nreplies++] = reply;
            continue;
        }
        short want;
        ssize_t n = io_recv(c, chunk, sizeof chunk, &want);
        if (n > 0) {
            c->got_bytes = 1;
            if (redisReaderFeed(c->reader, chunk, (size_t)n) != REDIS_OK)
                return conn_fail(c, q, err, "out of memory reading a reply");
            continue;
        }
        if (n == 0 || errno == ECONNRESET) {
            c->closed_early = !c->got_bytes;
            return n == 0 ? conn_fail(c, q, err, "connection closed by the server")
                          : conn_fail_errno(c, q, err, "read", errno);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* blocking: the receive timeout already ran out */
            int ready = c->blocking ? 0 : wait_fd(c->fd, want, redis_conn_deadline(c));
            if (ready > 0)
                continue;
            if (ready == 0) {
                char what[64];
                snprintf(what, sizeof what, "timed out after %gs without a reply",
                         c->timeout);
                return conn_fail(c, q, err, what);
            }
        }
        return io_fail(c, q, err, "read", errno);
    }
    /* Bytes beyond what was asked for: the server and we disagree on where
     * replies start, and any later reply could be misread. */
    if (redis_reader_has_leftover(c->reader) ||
        (c->sess && redis_tls_pending(c->sess) > 0))
        return conn_fail(c, q, err, "unexpected data after the replies");
    return CACHE_OK;
}

static int exchange_once(redis_conn *c, redis_req *q, cache_err *err)
{
    c->got_bytes = c->closed_early = 0;
    int rc = redis_conn_send(c, q, err);
    if (rc == CACHE_OK)
        rc = redis_conn_recv(c, q, err);
    return rc;
}

/* A connection that sat idle may have been closed by the server (restart,
 * its `timeout` setting, a proxy): when one that was already open fails
 * at once with a reset or a close, before a single reply byte, the request
 * is sent again on a new connection, once. A server that executed it and
 * died before answering is the rare case where this repeats a command. */
int redis_conn_exchange(redis_conn *c, redis_req *q, cache_err *err)
{
    drop_if_forked(c);
    int reused = c->fd >= 0;
    int rc = redis_conn_open(c, err);
    if (rc != CACHE_OK)
        return rc;
    rc = exchange_once(c, q, err);
    if (rc == CACHE_FAIL && reused && c->closed_early)
        rc = exchange_once(c, q, err);
    return rc;
}
