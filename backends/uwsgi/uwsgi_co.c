/*
 * uwsgi_co.c - UWSGICache exchanges on the cosocket path (see uwsgi_co.h).
 *
 * uWSGI serves one request per connection and closes it: nothing is
 * pooled. The pool name given to the driver is one nothing is ever kept
 * under, so a connect never picks up a connection someone else pooled for
 * the same address.
 */
#include <stdio.h>
#include <string.h>

#include "uwsgi_co.h"
#include "uwsgi_proto.h"

static int frame_begin(cache_co_io *io, int phase, cache_err *err)
{
    return CACHE_OK;
}

/* Complete once the reply is as long as its header says; the machine has
 * appended the bytes to io->reply already. What follows is ignored, as the
 * blocking transport ignores it. */
static int frame_feed(cache_co_io *io, int phase, const char *p, size_t n,
                      cache_err *err)
{
    size_t need;
    if (uwsgi_proto_reply_need(io->reply.data, io->reply.len, &need, err) !=
        CACHE_OK)
        return CACHE_FAIL;
    return io->reply.len >= need;
}

static const cache_co_frame uwsgi_frame = {
    .begin = frame_begin,
    .feed = frame_feed,
    .end = NULL,
    .eof_ends = 1,
};

int uwsgi_co_roundtrip(cache_co *co, const char *host, int port,
                       const char *path, const char *label, double timeout,
                       const cache_buf *req, cache_buf *reply, cache_err *err)
{
    char pool[300];
    snprintf(pool, sizeof pool, "cache %.200s (never pooled)", label);
    cache_co_io *io;
    int got = cache_co_next(co, pool, (cache_str){req->data, req->len}, &io,
                            err);
    if (got == 1) {
        if (io->rc == CACHE_OK &&
            cache_buf_append(reply, io->reply.data, io->reply.len))
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        if (io->rc < 0 && err)
            *err = io->err;
        return io->rc;
    }
    if (got != 0)
        return got;
    if (host && strcmp(host, "localhost") == 0)
        host = "127.0.0.1"; /* no nginx resolver needed for it */
    int rc = cache_co_io_set(io, path ? NULL : host, port, path, label, err);
    if (rc != CACHE_OK) {
        io->rc = rc;
        if (err)
            io->err = *err;
        io->done = 1;
        return rc;
    }
    io->connect_timeout = io->timeout = timeout;
    io->frame = &uwsgi_frame;
    return CACHE_PENDING;
}
