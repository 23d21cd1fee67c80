/*
 * memcached_libmc.c - a second baseline for bench/memcached.sh: libmemcached
 * itself, binary protocol, as the memcached backends use it, without the
 * engine or Lua. Shows which part of the gap to the raw text loop is the
 * binary protocol and the library.
 *
 *   memcached_libmc PORT get|set|mget N   ->  operations (keys for mget) per second
 */
#define _POSIX_C_SOURCE 200809L
#include <libmemcached/memcached.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYS 1000
#define BATCH 100

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT get|set|mget N\n", argv[0]);
        return 2;
    }
    memcached_st *m = memcached_create(NULL);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_server_add(m, "127.0.0.1", (in_port_t)atoi(argv[1]));
    const char *op = argv[2];
    long n = atol(argv[3]);
    static char keys[KEYS][32];
    const char *kp[KEYS];
    size_t kl[KEYS];
    for (int i = 0; i < KEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "lib:%06d", i);
        kp[i] = keys[i];
        kl[i] = strlen(keys[i]);
        if (memcached_set(m, kp[i], kl[i], "xxx", 3, 0, 0) != MEMCACHED_SUCCESS) {
            fprintf(stderr, "set failed\n");
            return 1;
        }
    }
    memcached_result_st res;
    memcached_result_create(m, &res);
    double t0 = now();
    long units = 0;
    memcached_return_t rc;
    for (long i = 0; i < n; i++) {
        if (strcmp(op, "get") == 0) {
            size_t len;
            uint32_t flags;
            free(memcached_get(m, kp[i % KEYS], kl[i % KEYS], &len, &flags, &rc));
            units++;
        } else if (strcmp(op, "set") == 0) {
            memcached_set(m, kp[i % KEYS], kl[i % KEYS], "xxx", 3, 0, 0);
            units++;
        } else {
            memcached_mget(m, kp, kl, BATCH);
            while (memcached_fetch_result(m, &res, &rc))
                ;
            units += BATCH;
        }
    }
    printf("%.0f\n", (double)units / (now() - t0));
    memcached_result_free(&res);
    memcached_free(m);
    return 0;
}
