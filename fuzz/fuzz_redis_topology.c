/*
 * fuzz_redis_topology.c - libFuzzer target for the replies that steer the
 * Redis Cluster and Sentinel backends: CLUSTER SLOTS (the slot map) and
 * SENTINEL get-master-addr-by-name (the master's address). The parsers are
 * static in backends/redis/redis_cluster.c and backends/redis/redis_sentinel.c; the
 * files in fuzz/hooks/ include those files and expose them.
 *
 * The input is a byte stream read with the backends' hiredis reader; each
 * complete reply is handed to both parsers. Checked: every result is a
 * known code and a failure says why; an accepted slot map names only nodes
 * the backend knows; an accepted master has a non-empty host without NUL
 * and a port in 1..65535.
 *
 * Build and run: `make fuzz-redis_topology FUZZ_SECONDS=60`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis/redis_proto.h"

int fuzz_cluster_parse_slots(const redisReply *r, unsigned short *map,
                             size_t *nnodes, cache_err *err);
int fuzz_sentinel_master(const redisReply *r, char **host, int *port,
                         cache_err *err);

#define CHECK(c)                                                             \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "fuzz_redis_topology: check failed at line %d: %s\n", \
                    __LINE__, #c);                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)

static unsigned short map[REDIS_SLOTS];

static void check_reply(const redisReply *r)
{
    cache_err err = {0, ""};
    size_t nnodes = 0;
    int rc = fuzz_cluster_parse_slots(r, map, &nnodes, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_FAIL || rc == CACHE_ENOMEM);
    if (rc != CACHE_OK) {
        CHECK(err.msg[0] != '\0');
    } else {
        CHECK(nnodes >= 1);
        for (size_t s = 0; s < REDIS_SLOTS; s++)
            CHECK(map[s] <= nnodes);
    }

    char *host = NULL;
    int port = 0;
    err = (cache_err){0, ""};
    rc = fuzz_sentinel_master(r, &host, &port, &err);
    CHECK(rc == CACHE_OK || rc == CACHE_MISS || rc == CACHE_FAIL ||
          rc == CACHE_ENOMEM);
    if (rc == CACHE_OK) {
        CHECK(host != NULL && host[0] != '\0');
        CHECK(port >= 1 && port <= 65535);
        free(host);
    } else {
        CHECK(host == NULL);
        CHECK(err.msg[0] != '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    CHECK(p != NULL);
    memcpy(p, data, size);
    redisReader *rd = redis_reader_new();
    CHECK(rd != NULL);
    CHECK(redisReaderFeed(rd, p, size) == REDIS_OK);
    for (int i = 0; i < 16; i++) {
        redisReply *reply = NULL;
        cache_err err = {0, ""};
        int rc = redis_reader_next(rd, &reply, &err);
        if (rc != 1)
            break;
        check_reply(reply);
        freeReplyObject(reply);
    }
    redisReaderFree(rd);
    free(p);
    return 0;
}
