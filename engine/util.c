/*
 * util.c - errors, byte buffers, string copies and clocks.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "co.h"
#include "cache.h"

int cache_fail(cache_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void cache_buf_init(cache_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void cache_buf_free(cache_buf *b)
{
    free(b->data);
    cache_buf_init(b);
}

int cache_buf_reserve(cache_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int cache_buf_append(cache_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (cache_buf_reserve(b, n))
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int cache_buf_set(cache_buf *b, const void *p, size_t n)
{
    if (n > b->cap) {
        size_t old = b->len;
        b->len = 0;
        if (cache_buf_reserve(b, n)) {
            b->len = old;
            return -1;
        }
    }
    if (n)
        memmove(b->data, p, n);
    b->len = n;
    return 0;
}

char *cache_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double cache_monotonic_now(void) { return clock_seconds(CLOCK_MONOTONIC); }

/* An operation on the cosocket path sees the clock stopped at its start
 * (co.h): each of its runs must ask the same. */
double cache_wall_now(void)
{
    double t = cache_co_wall();
    return t > 0 ? t : clock_seconds(CLOCK_REALTIME);
}

double cache_deadline(double ttl, double now)
{
    if (ttl == 0)
        return 0;
    double d = now + ttl;
    /* An already expired entry must not read as "never" (0). */
    return d == 0 ? -1 : d;
}
