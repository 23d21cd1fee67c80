/*
 * redis_tls.h - TLS (OpenSSL libssl) under the blocking transport of the
 * Redis backends: redis_net.c moves the same bytes through a TLS session
 * instead of send()/recv() when a connection is configured with one. The
 * protocol code (redis_proto.c) never knows which.
 *
 * - One context (redis_tls) per backend object, shared by all its
 *   connections and counted by reference: the CA, the client certificate
 *   and the verification policy, loaded once when the backend is made, so
 *   a missing or bad file is an error in the options, not at first use.
 * - Verification is on unless asked off: the peer's chain must lead to the
 *   CA (ssl_ca_certs, else the system's CAs), and the name connected to
 *   must be in the certificate (a DNS name, or an IP address checked
 *   against the certificate's IP entries). TLS 1.2 at least.
 * - A session never falls back to plain text, never prompts for a key's
 *   passphrase, and never sends a close_notify: freeing one (after a fork,
 *   or on any failure) writes nothing to the socket.
 * - I/O follows send()/recv(): bytes moved, 0 at the peer's end, or -1 with
 *   errno: EAGAIN (wait for *want: POLLIN or POLLOUT, then call again),
 *   EINTR, a socket error, or EPROTO (a TLS error: redis_tls_error says
 *   which). SIGPIPE is never raised (the socket writes use MSG_NOSIGNAL).
 */
#ifndef CACHE_BACKENDS_REDIS_TLS_H
#define CACHE_BACKENDS_REDIS_TLS_H

#include <sys/types.h>

#include "cache.h"

/* What the options (or a rediss:// URL) say; -1 / NULL: not given. */
typedef struct redis_tls_opts {
    int ssl;                 /* TLS asked for */
    char *ca_certs;          /* ssl_ca_certs: PEM file of trusted CAs */
    char *certfile, *keyfile; /* ssl_certfile / ssl_keyfile: client cert */
    int verify;              /* ssl_cert_reqs: 1 "required", 0 "none" */
    int check_hostname;      /* ssl_check_hostname */
} redis_tls_opts;

typedef struct redis_tls redis_tls;
typedef struct redis_tls_sess redis_tls_sess;

/* A context for opts (verify defaults to 1, check_hostname to verify).
 * CACHE_EINVAL naming the option when a file cannot be used. */
int redis_tls_new(const redis_tls_opts *opts, redis_tls **out,
                  cache_err *err);
redis_tls *redis_tls_ref(redis_tls *t);
void redis_tls_unref(redis_tls *t); /* NULL is fine */

/* A session on the connected socket fd to host (the name or address the
 * caller connected to, which verification checks). NULL: out of memory. */
redis_tls_sess *redis_tls_sess_new(redis_tls *t, int fd, const char *host);
void redis_tls_sess_free(redis_tls_sess *s); /* NULL is fine */

/* One step of the handshake: 1 done, 0 wait for *want and call again, -1
 * failed (why says how: "certificate verify failed: hostname mismatch"). */
int redis_tls_handshake(redis_tls_sess *s, short *want, char *why,
                        size_t whylen);

ssize_t redis_tls_read(redis_tls_sess *s, void *buf, size_t n, short *want);
ssize_t redis_tls_write(redis_tls_sess *s, const void *buf, size_t n,
                        short *want);

/* Reply bytes already decrypted and not read yet. */
size_t redis_tls_pending(const redis_tls_sess *s);

/* The TLS error of the last EPROTO. */
const char *redis_tls_error(const redis_tls_sess *s);

#endif
