/*
 * redis_net.h - the blocking transport of the Redis backends: one
 * connection to one server (TCP or unix socket) that sends a request built
 * by redis_proto.h and reads its replies, within timeouts.
 *
 * - connect within connect_timeout (each address of the host in turn), then
 *   TCP_NODELAY and keepalive; with TLS, the handshake (redis_tls.h) within
 *   the same connect_timeout; AUTH [username] password and SELECT db are
 *   sent right after connecting, in one round trip;
 * - timeout bounds every wait on the socket: a request fails when the server
 *   accepts no bytes, or sends none, for that long (as redis-py's
 *   socket_timeout and hiredis's own timeouts), so a big value that keeps
 *   moving is not cut off; 0 means no limit;
 * - a process forked after connecting opens its own connection;
 * - after ANY failure (refused, reset, timeout, protocol error, a reply out
 *   of step) the connection is closed, and the next exchange reconnects.
 *   A failed request is not resent, except in one case: a connection left
 *   open from an earlier call that turns out closed or reset before any
 *   reply byte (the server restarted or dropped it while idle) gets the
 *   request once more on a fresh connection.
 *
 * Everything here is plain POSIX sockets and poll(), the bytes going through
 * a TLS session when the connection has one; the replies are parsed by
 * redis_proto.c, so another transport (OpenResty cosockets) can replace
 * this file without touching the protocol.
 */
#ifndef CACHE_BACKENDS_REDIS_NET_H
#define CACHE_BACKENDS_REDIS_NET_H

#include <sys/types.h>

#include "cache.h"
#include "redis_proto.h"
#include "redis_tls.h"

typedef struct redis_conn {
    /* where */
    char *host; /* NULL when path is set */
    int port;
    char *path; /* unix socket */
    /* session setup */
    char *username, *password; /* AUTH when either is set */
    int64_t db;                /* SELECT when not 0 */
    double connect_timeout, timeout;
    redis_tls *tls;            /* NULL: plain text */
    /* state */
    int fd; /* -1 when not connected */
    redis_tls_sess *sess; /* with tls, once connected */
    pid_t pid; /* the process that connected (see fork in redis_net.c) */
    int blocking; /* blocking I/O bounded by SO_RCVTIMEO / SO_SNDTIMEO */
    int got_bytes;    /* this exchange received reply bytes */
    int closed_early; /* ... and failed on a close/reset before any */
    redisReader *reader;
    redis_req setup; /* AUTH / SELECT */
    char label[160]; /* "redis 127.0.0.1:6379", for messages */
} redis_conn;

typedef struct redis_conn_config {
    const char *kind; /* label word: "redis", "sentinel", "cluster node" */
    const char *host; /* or path */
    int port;
    const char *path;
    const char *username, *password;
    int64_t db;
    double connect_timeout, timeout;
    redis_tls *tls; /* TLS with this context (NULL: plain); not with path */
} redis_conn_config;

/* Copies the configuration (and takes a reference to tls); connects
 * lazily. CACHE_OK or CACHE_ENOMEM. */
int redis_conn_init(redis_conn *c, const redis_conn_config *cfg,
                    cache_err *err);
void redis_conn_close(redis_conn *c); /* disconnects; keeps the config */
void redis_conn_free(redis_conn *c);
int redis_conn_connected(const redis_conn *c);

/* Connects now if not connected. */
int redis_conn_open(redis_conn *c, cache_err *err);

/* The request's commands sent and all their replies read into q->replies
 * (q->nreplies == q->ncmds on success). Connects first when needed. */
int redis_conn_exchange(redis_conn *c, redis_req *q, cache_err *err);

/* The two halves, for a caller that talks to several servers at once (the
 * cluster: write to every node, then read from each). */
int redis_conn_send(redis_conn *c, redis_req *q, cache_err *err);
int redis_conn_recv(redis_conn *c, redis_req *q, cache_err *err);

/* When a wait starting now gives up (cache_monotonic_now() time; 0: never). */
double redis_conn_deadline(const redis_conn *c);

#endif
