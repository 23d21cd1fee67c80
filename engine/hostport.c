/*
 * hostport.c - server addresses; the syntax is described in hostport.h.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "hostport.h"

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s))
        (*s)++, (*n)--;
    while (*n && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* A decimal port 1-65535; -1 otherwise. */
static int parse_port(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

static int bad(cache_err *err, const char *what, const char *s, size_t n,
               const char *why)
{
    return cache_fail(err, CACHE_EINVAL, "%s: '%.*s' is not host:port%s",
                      what, (int)(n < 100 ? n : 100), s, why);
}

int cache_hostport_is_path(const char *s, size_t n)
{
    trim(&s, &n);
    return n && (s[0] == '/' || s[0] == '.');
}

int cache_hostport_parse(const char *s, size_t n, unsigned flags,
                         int default_port, cache_hostport *out,
                         const char *what, cache_err *err)
{
    out->host = out->path = NULL;
    out->port = 0;
    trim(&s, &n);
    if (memchr(s, '\0', n))
        return bad(err, what, s, n, " (it holds a NUL byte)");
    if ((flags & CACHE_HP_UNIX) && cache_hostport_is_path(s, n)) {
        size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
        if (n > max)
            return cache_fail(err, CACHE_EINVAL,
                              "%s: the unix socket path of %zu bytes is too "
                              "long (max %zu)",
                              what, n, max);
        out->path = cache_strndup(s, n);
        return out->path ? CACHE_OK
                         : cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    const char *h = s, *port = NULL; /* port: after its ':' */
    size_t hn = n;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return bad(err, what, s, n, " (unclosed '[')");
        h = s + 1;
        hn = (size_t)(close - h);
        if (close + 1 < s + n) {
            if (close[1] != ':')
                return bad(err, what, s, n, " (junk after ']')");
            port = close + 2;
        }
    } else {
        const char *first = memchr(s, ':', n), *last = NULL;
        for (size_t i = n; i > 0 && !last; i--)
            if (s[i - 1] == ':')
                last = s + i - 1;
        if (first != last && (flags & CACHE_HP_PORT_OPTIONAL))
            return bad(err, what, s, n,
                       " (write an IPv6 address as [addr]:port)");
        if (last) {
            hn = (size_t)(last - s);
            port = last + 1;
        }
    }
    if (port) {
        out->port = parse_port(port, (size_t)(s + n - port));
        if (out->port < 0) {
            out->port = 0;
            return bad(err, what, s, n,
                       " (the port must be a number from 1 to 65535)");
        }
    } else if (flags & CACHE_HP_PORT_OPTIONAL) {
        out->port = default_port;
    } else {
        return bad(err, what, s, n, "");
    }
    if (hn == 0) {
        if (flags & CACHE_HP_EMPTY_HOST)
            return CACHE_OK;
        return bad(err, what, s, n, " (no host)");
    }
    out->host = cache_strndup(h, hn);
    return out->host ? CACHE_OK
                     : cache_fail(err, CACHE_ENOMEM, "out of memory");
}

void cache_hostport_free(cache_hostport *hp)
{
    free(hp->host);
    free(hp->path);
    hp->host = hp->path = NULL;
}

int cache_host_needs_brackets(const char *host)
{
    return host[0] != '[' && strchr(host, ':') != NULL;
}

int cache_hostport_format(char *out, size_t cap, const char *host, int port)
{
    if (port <= 0)
        return snprintf(out, cap, "%s", host);
    return snprintf(out, cap, cache_host_needs_brackets(host) ? "[%s]:%d"
                                                              : "%s:%d",
                    host, port);
}
