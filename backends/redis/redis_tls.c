/*
 * redis_tls.c - TLS sessions for the Redis transport (see redis_tls.h), on
 * OpenSSL libssl over the connection's own socket.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "redis_tls.h"

struct redis_tls {
    SSL_CTX *ctx;
    BIO_METHOD *bio; /* the socket, written with MSG_NOSIGNAL */
    int check_hostname;
    int refs; /* a backend object is used by one thread at a time */
};

struct redis_tls_sess {
    SSL *ssl;
    char err[160]; /* the last TLS error, for EPROTO */
};

/* ---- the socket BIO --------------------------------------------------------- */

/* OpenSSL's own socket BIO writes with write(), which raises SIGPIPE when
 * the server has gone; a library must not kill its host process, so this
 * one sends with MSG_NOSIGNAL. Retry flags follow errno, as OpenSSL's do:
 * EAGAIN (a timeout on a blocking socket, or nothing yet on a non-blocking
 * one) and EINTR ask the caller to call again. */
static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int retryable(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

static int bio_write(BIO *b, const char *p, int n)
{
    BIO_clear_retry_flags(b);
    ssize_t r = send(bio_fd(b), p, (size_t)n, MSG_NOSIGNAL);
    if (r < 0 && retryable(errno))
        BIO_set_retry_write(b);
    return (int)r;
}

static int bio_read(BIO *b, char *p, int n)
{
    BIO_clear_retry_flags(b);
    ssize_t r = recv(bio_fd(b), p, (size_t)n, 0);
    if (r < 0 && retryable(errno))
        BIO_set_retry_read(b);
    return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH; /* every write goes straight out */
}

/* ---- errors ------------------------------------------------------------------ */

/* The reason of OpenSSL's latest error ("tlsv13 alert certificate
 * required"); the thread's error queue is left empty, so that nothing
 * stale is read later by this code or another user of libcrypto. */
static void take_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(buf, n, "%s", r);
    else if (e)
        snprintf(buf, n, "error %lx", e);
    else
        snprintf(buf, n, "unknown error");
    ERR_clear_error();
}

/* ---- the context ------------------------------------------------------------- */

/* A private key with a passphrase fails to load instead of prompting on
 * the terminal (OpenSSL's default). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

static void tls_free(redis_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    if (t->bio)
        BIO_meth_free(t->bio);
    free(t);
}

/* A file the option names must be readable: the error then says so in
 * plain words rather than in OpenSSL's. */
static int readable(const char *path, const char *option, cache_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cache_fail(err, CACHE_EINVAL, "option '%s': cannot read '%s': %s",
                          option, path, strerror(errno));
    fclose(f);
    return CACHE_OK;
}

static int load_fail(const char *option, const char *path, cache_err *err)
{
    char why[120];
    take_reason(why, sizeof why);
    return cache_fail(err, CACHE_EINVAL, "option '%s': cannot use '%s': %s",
                      option, path, why);
}

static int load_files(redis_tls *t, const redis_tls_opts *o, int verify,
                      cache_err *err)
{
    if (o->ca_certs) {
        if (readable(o->ca_certs, "ssl_ca_certs", err) != CACHE_OK)
            return CACHE_EINVAL;
        if (SSL_CTX_load_verify_locations(t->ctx, o->ca_certs, NULL) != 1)
            return load_fail("ssl_ca_certs", o->ca_certs, err);
    } else if (verify && SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        char why[120];
        take_reason(why, sizeof why);
        return cache_fail(err, CACHE_FAIL, "TLS: cannot load the system's CAs: %s",
                          why);
    }
    if (o->keyfile && !o->certfile)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'ssl_keyfile': needs ssl_certfile");
    if (!o->certfile)
        return CACHE_OK;
    /* Without a keyfile the key is in the certificate file (as redis-py). */
    const char *key = o->keyfile ? o->keyfile : o->certfile;
    const char *key_option = o->keyfile ? "ssl_keyfile" : "ssl_certfile";
    if (readable(o->certfile, "ssl_certfile", err) != CACHE_OK ||
        readable(key, key_option, err) != CACHE_OK)
        return CACHE_EINVAL;
    if (SSL_CTX_use_certificate_chain_file(t->ctx, o->certfile) != 1)
        return load_fail("ssl_certfile", o->certfile, err);
    if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (o->keyfile)
            return load_fail(key_option, key, err);
        ERR_clear_error();
        return cache_fail(err, CACHE_EINVAL,
                          "option 'ssl_certfile': no private key in '%s' "
                          "(name its file with ssl_keyfile)", key);
    }
    if (SSL_CTX_check_private_key(t->ctx) != 1) {
        ERR_clear_error();
        return cache_fail(err, CACHE_EINVAL,
                          "option '%s': the key does not match ssl_certfile",
                          key_option);
    }
    return CACHE_OK;
}

int redis_tls_new(const redis_tls_opts *o, redis_tls **out, cache_err *err)
{
    *out = NULL;
    int verify = o->verify != 0;
    if (o->check_hostname > 0 && !verify)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'ssl_check_hostname': needs ssl_cert_reqs = "
                          "'required' (a name is only worth checking on a "
                          "verified certificate)");
    redis_tls *t = calloc(1, sizeof *t);
    if (!t)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    t->refs = 1;
    t->check_hostname = verify && o->check_hostname != 0;
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_client_method());
    t->bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                          "cache redis socket");
    if (!t->ctx || !t->bio || !BIO_meth_set_write(t->bio, bio_write) ||
        !BIO_meth_set_read(t->bio, bio_read) ||
        !BIO_meth_set_ctrl(t->bio, bio_ctrl)) {
        ERR_clear_error();
        tls_free(t);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    long options = SSL_OP_NO_RENEGOTIATION;
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A server that closes without close_notify has simply closed (as in
     * OpenSSL 1.1): the transport's reconnect-once rule depends on seeing
     * a close as a close. */
    options |= SSL_OP_IGNORE_UNEXPECTED_EOF;
#endif
    SSL_CTX_set_options(t->ctx, options);
    /* send()-like writes: partial, and from a buffer that may move. */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Whole socket reads, not a record header then its body: one recv
     * per reply instead of two. */
    SSL_CTX_set_read_ahead(t->ctx, 1);
    SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase);
    SSL_CTX_set_verify(t->ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    int rc = load_files(t, o, verify, err);
    if (rc != CACHE_OK) {
        tls_free(t);
        return rc;
    }
    *out = t;
    return CACHE_OK;
}

redis_tls *redis_tls_ref(redis_tls *t)
{
    if (t)
        t->refs++;
    return t;
}

void redis_tls_unref(redis_tls *t)
{
    if (t && --t->refs == 0)
        tls_free(t);
}

/* ---- sessions ---------------------------------------------------------------- */

redis_tls_sess *redis_tls_sess_new(redis_tls *t, int fd, const char *host)
{
    redis_tls_sess *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    ERR_clear_error();
    s->ssl = SSL_new(t->ctx);
    BIO *b = s->ssl ? BIO_new(t->bio) : NULL;
    if (!b)
        goto fail;
    BIO_set_data(b, (void *)(intptr_t)fd);
    BIO_set_init(b, 1);
    SSL_set_bio(s->ssl, b, b); /* the session owns it now */
    SSL_set_connect_state(s->ssl);
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 ||
                inet_pton(AF_INET6, host, addr) == 1;
    /* SNI carries names only; one the server cannot take is not fatal. */
    if (!is_ip && !SSL_set_tlsext_host_name(s->ssl, host))
        ERR_clear_error();
    if (t->check_hostname) {
        int ok;
        if (is_ip) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), host);
        } else {
            SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(s->ssl, host);
        }
        if (ok != 1)
            goto fail;
    }
    return s;
fail:
    ERR_clear_error();
    redis_tls_sess_free(s);
    return NULL;
}

void redis_tls_sess_free(redis_tls_sess *s)
{
    if (!s)
        return;
    SSL_free(s->ssl); /* no SSL_shutdown: nothing is written */
    free(s);
}

int redis_tls_handshake(redis_tls_sess *s, short *want, char *why,
                        size_t whylen)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(s->ssl);
    if (r == 1)
        return 1;
    int saved = errno;
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return 0;
    }
    long v = SSL_get_verify_result(s->ssl);
    unsigned long last = ERR_peek_last_error();
    if (e == SSL_ERROR_SSL && v != X509_V_OK &&
        ERR_GET_REASON(last) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(why, whylen, "TLS handshake: certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else if (e == SSL_ERROR_SSL) {
        char reason[120];
        take_reason(reason, sizeof reason);
        snprintf(why, whylen, "TLS handshake failed: %s", reason);
    } else if (e == SSL_ERROR_SYSCALL && saved != 0) {
        snprintf(why, whylen, "TLS handshake: %s", strerror(saved));
        ERR_clear_error();
    } else {
        snprintf(why, whylen, "TLS handshake: connection closed by the server");
        ERR_clear_error();
    }
    return -1;
}

/* What a failed SSL_read / SSL_write means, as send()/recv() would say it. */
static ssize_t io_result(redis_tls_sess *s, int r, int saved, short *want)
{
    int e = SSL_get_error(s->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        errno = saved == EINTR ? EINTR : EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (saved == 0)
            return 0; /* the end of the stream without close_notify */
        errno = saved;
        return -1;
    default:
        take_reason(s->err, sizeof s->err);
        errno = EPROTO;
        return -1;
    }
}

ssize_t redis_tls_read(redis_tls_sess *s, void *buf, size_t n, short *want)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(s->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    return io_result(s, r, errno, want);
}

ssize_t redis_tls_write(redis_tls_sess *s, const void *buf, size_t n,
                        short *want)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(s->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    ssize_t got = io_result(s, r, errno, want);
    if (got == 0) { /* closed: for a writer, a broken pipe */
        errno = EPIPE;
        return -1;
    }
    return got;
}

size_t redis_tls_pending(const redis_tls_sess *s)
{
    int n = SSL_pending(s->ssl);
    return n > 0 ? (size_t)n : 0;
}

const char *redis_tls_error(const redis_tls_sess *s)
{
    return s->err[0] ? s->err : "TLS error";
}
