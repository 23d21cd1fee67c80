/*
 * redis_sentinel_hook.c - exposes the static master-address reader of
 * backends/redis/redis_sentinel.c to fuzz/fuzz_redis_topology.c, by including the
 * file (so the harness runs the very code the backend runs).
 */
#include "../../backends/redis/redis_sentinel.c"

int fuzz_sentinel_master(const redisReply *r, char **host, int *port,
                         cache_err *err);

int fuzz_sentinel_master(const redisReply *r, char **host, int *port,
                         cache_err *err)
{
    return master_from_reply(r, host, port, "sentinel fuzz", err);
}
