/*
 * redis_cluster_hook.c - exposes the static CLUSTER SLOTS parser of
 * backends/redis/redis_cluster.c to fuzz/fuzz_redis_topology.c, by including the
 * file (so the harness runs the very code the backend runs).
 */
#include "../../backends/redis/redis_cluster.c"

int fuzz_cluster_parse_slots(const redisReply *r, unsigned short *map,
                             size_t *nnodes, cache_err *err);

/* Parses r as the answer of a node at 10.0.0.1:7000 into map (REDIS_SLOTS
 * entries: node index + 1, 0 = none); *nnodes receives how many nodes the
 * backend then knows. */
int fuzz_cluster_parse_slots(const redisReply *r, unsigned short *map,
                             size_t *nnodes, cache_err *err)
{
    cluster_backend *cb = calloc(1, sizeof *cb);
    if (!cb)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    cb->base.vt = &cluster_vtable;
    redis_req_init(&cb->req);
    redis_req_init(&cb->req2);
    redis_req_init(&cb->asking);
    cb->proto.label = "redis cluster";
    int rc = node_index(cb, "10.0.0.1", 7000, err) == 0
                 ? parse_slots(cb, r, cb->nodes[0], map, err)
                 : CACHE_ENOMEM;
    *nnodes = cb->nnodes;
    cluster_destroy(&cb->base);
    return rc;
}
