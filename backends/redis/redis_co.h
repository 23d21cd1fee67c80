/*
 * redis_co.h - the Redis backends' exchanges on the cosocket path (see
 * engine/co.h): what a redis_conn exchange becomes while an operation runs
 * under the cosocket driver.
 */
#ifndef CACHE_BACKENDS_REDIS_CO_H
#define CACHE_BACKENDS_REDIS_CO_H

#include "co.h"
#include "redis_net.h"
#include "redis_proto.h"

/* In place of redis_conn_exchange(c, q, err) while co runs: the replies of
 * an exchange made in an earlier run are parsed into q (CACHE_OK), its
 * failure is returned as it was, or the exchange is recorded for the
 * driver (CACHE_PENDING). The connection c is only read (where to, as
 * whom); its socket is never touched. */
int redis_co_exchange(cache_co *co, const redis_conn *c, redis_req *q,
                      cache_err *err);

/* The exchange of backend b on connection c: redis_co_exchange while an
 * operation of b runs on the cosocket path, else redis_conn_exchange. */
int redis_exchange_on(const cache_backend *b, redis_conn *c, redis_req *q,
                      cache_err *err);

/* The two halves (redis_conn_send, redis_conn_recv) the same way, for a
 * caller that writes to several servers before it reads from any (the
 * cluster's batches): on the cosocket path every request of the batch is
 * sent before any reply is read. */
int redis_send_on(const cache_backend *b, redis_conn *c, redis_req *q,
                  cache_err *err);
int redis_recv_on(const cache_backend *b, redis_conn *c, redis_req *q,
                  cache_err *err);

/* Gives backend b its cosocket path (b->co = co), unless tls: the driver
 * speaks plain TCP, so a backend with TLS keeps the blocking transport
 * everywhere ("cosocket" asked with TLS is refused: CACHE_EINVAL). */
int redis_co_attach(cache_backend *b, const cache_co_opts *co, int tls,
                    cache_err *err);

#endif
