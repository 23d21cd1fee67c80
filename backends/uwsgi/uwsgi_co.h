/*
 * uwsgi_co.h - UWSGICache's exchanges on the cosocket path (see
 * engine/co.h).
 */
#ifndef CACHE_BACKENDS_UWSGI_CO_H
#define CACHE_BACKENDS_UWSGI_CO_H

#include "co.h"

/* In place of one blocking round trip while co runs (the same outcome):
 * CACHE_OK with the reply bytes appended to reply (none when the server
 * closed without a word), CACHE_MISS when it reset the connection before
 * any byte, a failure, or CACHE_PENDING while the driver has it to do.
 * host and port, or path, say where; label names the backend in messages. */
int uwsgi_co_roundtrip(cache_co *co, const char *host, int port,
                       const char *path, const char *label, double timeout,
                       const cache_buf *req, cache_buf *reply, cache_err *err);

#endif
