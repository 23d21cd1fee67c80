/*
 * hostport.h - server addresses: "host:port", "[v6]:port", "host",
 * "[v6]" and unix socket paths, parsed and written one way for every
 * backend and for the binding.
 *
 * The syntax, whatever the backend:
 *   - surrounding whitespace is ignored;
 *   - with CACHE_HP_UNIX, text starting with '/' or '.' is a socket path;
 *   - an IPv6 literal is written in brackets: "[::1]:6379", "[::1]";
 *   - without brackets and with several colons the text is host:port split
 *     at the last colon (what Redis writes in MOVED, and "::1:6379" has
 *     always been read so) when a port is required; when the port may be
 *     left out it is ambiguous ("fe80::1" or host "fe80:" port 1) and
 *     refused, naming the bracket form;
 *   - a port is decimal 1-65535.
 * No Lua here: the binding and the backends both use it.
 */
#ifndef CACHE_HOSTPORT_H
#define CACHE_HOSTPORT_H

#include <stddef.h>

#include "cache.h"

enum {
    CACHE_HP_PORT_OPTIONAL = 1, /* no port: the caller's default port */
    CACHE_HP_UNIX = 2,          /* '/' or '.' starts a unix socket path */
    CACHE_HP_EMPTY_HOST = 4,    /* "" and ":port" are fine: host is NULL */
};

typedef struct cache_hostport {
    char *host; /* malloc'd, no brackets; NULL for a path or an empty host */
    char *path; /* malloc'd unix socket path, or NULL */
    int port;   /* 1-65535, default_port when left out, 0 for a path */
} cache_hostport;

/* Whether the (trimmed) text is a unix socket path under CACHE_HP_UNIX. */
int cache_hostport_is_path(const char *s, size_t n);

/* Parses n bytes at s. On an error the message starts with what (say
 * "option 'servers'") and quotes the text; out holds nothing to free. */
int cache_hostport_parse(const char *s, size_t n, unsigned flags,
                         int default_port, cache_hostport *out,
                         const char *what, cache_err *err);
void cache_hostport_free(cache_hostport *hp);

/* Whether host must be written in brackets before ":port" (an IPv6
 * literal not bracketed yet). */
int cache_host_needs_brackets(const char *host);

/* "host:port", "[v6]:port", or host alone when port is 0 (a socket path):
 * the form cache_hostport_parse reads back. snprintf's contract. */
int cache_hostport_format(char *out, size_t cap, const char *host, int port);

#endif
