/*
 * memcached.c - MemcachedCache and SASLMemcachedCache on libmemcached,
 * binary protocol, ketama consistent hashing; and the shared layer
 * (memcached.h) that SpreadSASLMemcachedCache builds on.
 *
 * Facts about libmemcached 1.1.4 this file is shaped by (each was checked
 * against memcached 1.6.18, see spec/memcached_spec.lua):
 * - memcached_increment/decrement abort() the process (an assert in
 *   auto.cc) when the server answers "authentication required", which a
 *   SASL server does to a connection that did not authenticate. incr is
 *   therefore only sent on a connection that just answered another command
 *   (see mc_incr).
 * - memcached before 1.6.22 may refuse incr on a value of 2^63 or more (it
 *   looks for a '-' past the end of the value's text, into whatever the
 *   memory holds); mc_incr neither relies on incr nor on undoing one.
 * - A quiet delete (DELETEQ) of a missing key leaves a reply libmemcached
 *   does not expect; it is then read as the answer to the next command and
 *   every later answer is off by one. Quiet sets are safe (libmemcached
 *   skips their error replies). Batches of deletes are therefore buffered
 *   deletes with replies, all read in one go (mc_delete_many_blind).
 * - Auto-ejecting failed servers (REMOVE_FAILED_SERVERS) moved keys
 *   unpredictably and did not recover; without it a dead server's keys fail
 *   with an error, the other servers' keys stay readable, and the server is
 *   retried every second.
 */
#define _DEFAULT_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "codec.h"
#include "digest.h"
#include "hostport.h"
#include "memcached.h"
#include "memcached_co.h"

#define MC_DEFAULT_PORT 11211
#define MC_THIRTY_DAYS 2592000.0
/* Values above this size are sent with a reply even inside a batch, so that
 * "too large for the server" is reported for the right key. */
#define MC_QUIET_MAX (256 * 1024)
/* How often inc retries when the key keeps changing under it, and what a
 * try returns to ask for that. */
#define MC_INCR_ATTEMPTS 16
#define MC_AGAIN 1

/* ---- keys ------------------------------------------------------------------- */

/* memcached's ASCII protocol ends a key at a space or a control byte; such
 * keys are mapped, so no key can ever carry protocol text. */
static int printable(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

void mc_key_make(const mc_backend *b, cache_str key, const char *suffix,
                 size_t suffix_len, mc_key *out)
{
    size_t total = b->prefix_len + key.len + suffix_len;
    int prefix_ok = printable(b->prefix, b->prefix_len);
    /* what follows the prefix: a '#' there is the digest form's (digest.h) */
    int marked = key.len ? cache_key_marked(key.ptr, key.len)
                         : cache_key_marked(suffix, suffix_len);
    if (total >= 1 && total <= MC_MAX_KEY && prefix_ok && !marked &&
        printable(key.ptr, key.len) && printable(suffix, suffix_len)) {
        memcpy(out->s, b->prefix, b->prefix_len);
        if (key.len)
            memcpy(out->s + b->prefix_len, key.ptr, key.len);
        if (suffix_len)
            memcpy(out->s + b->prefix_len + key.len, suffix, suffix_len);
        out->len = total;
        out->s[total] = '\0';
        return;
    }
    /* Keep a readable prefix in front when it fits: "prefix#<64 hex>".
     * Without it (a prefix unprintable or over 185 bytes) the digest form
     * still differs from every key sent as it is: those either start with
     * the prefix, which is then longer than the whole digest form, or there
     * are none (an unprintable prefix). */
    size_t head = prefix_ok && b->prefix_len <= MC_MAX_KEY - CACHE_KEY_DIGEST_LEN
                      ? b->prefix_len
                      : 0;
    const void *parts[3] = {b->prefix_len ? b->prefix : "",
                            key.len ? key.ptr : "", suffix_len ? suffix : ""};
    size_t lens[3] = {b->prefix_len, key.len, suffix_len};
    memcpy(out->s, b->prefix, head);
    if (cache_key_digest_form(3, parts, lens, out->s + head) != 0) {
        /* libcrypto failed (out of memory): an empty key, which libmemcached
         * refuses (a bad-key error for this call). Any fixed stand-in would
         * make every key that fails here share one entry. */
        out->s[0] = '\0';
        out->len = 0;
        return;
    }
    out->len = head + CACHE_KEY_DIGEST_LEN;
}

/* ---- errors ----------------------------------------------------------------- */

/* libmemcached's messages look like "(0x55..) SYSTEM ERROR(Broken pipe),
 * host: 127.0.0.1:1234 -> ./src/libmemcached/io.cc:346": keep the middle,
 * in lower case. */
static void clean_message(const char *in, char *out, size_t cap)
{
    if (in[0] == '(' && strstr(in, ") "))
        in = strstr(in, ") ") + 2;
    size_t n = strlen(in);
    const char *cut = strstr(in, ",  host:");
    if (cut && (size_t)(cut - in) < n)
        n = (size_t)(cut - in);
    cut = strstr(in, " -> ");
    if (cut && (size_t)(cut - in) < n)
        n = (size_t)(cut - in);
    size_t o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        /* "FAILURE(Connection refused)" -> "failure (connection refused)" */
        if (in[i] == '(' && i > 0 && in[i - 1] != ' ')
            out[o++] = ' ';
        out[o++] = (char)tolower((unsigned char)in[i]);
    }
    out[o] = '\0';
}

static void server_label(const memcached_instance_st *in, char *out, size_t cap)
{
    const char *name = memcached_server_name(in);
    in_port_t port = memcached_server_port(in);
    if (!name)
        snprintf(out, cap, "?");
    else
        cache_hostport_format(out, cap, name, name[0] == '/' ? 0 : port);
}

/* The server that libmemcached's last error message of m names (it ends
 * in " host: NAME:PORT" or " socket: PATH" when a server failed), or NULL.
 * The handle's last error is always of its latest call, where the
 * server's own error and its last disconnect may be older. */
static const memcached_instance_st *named_in_last_error(memcached_st *m)
{
    if (memcached_last_error(m) == MEMCACHED_SUCCESS)
        return NULL;
    const char *msg = memcached_last_error_message(m);
    uint32_t count = memcached_server_count(m);
    for (uint32_t i = 0; msg && i < count; i++) {
        const memcached_instance_st *in = memcached_server_instance_by_position(m, i);
        const char *name = memcached_server_name(in);
        if (!name)
            continue;
        char tag[1100];
        in_port_t port = memcached_server_port(in);
        if (name[0] == '/' || port == 0)
            snprintf(tag, sizeof tag, " socket: %s", name);
        else
            snprintf(tag, sizeof tag, " host: %s:%u", name, (unsigned)port);
        size_t tl = strlen(tag);
        for (const char *at = strstr(msg, tag); at; at = strstr(at + 1, tag))
            if (at[tl] == '\0' || at[tl] == ' ' || at[tl] == ',')
                return in; /* whole: ":1234" is not ":12345" */
    }
    return NULL;
}

/* The failure as libmemcached handle m saw it. */
static int fail_on(mc_backend *b, memcached_st *m, const mc_key *k,
                   memcached_return_t rc, cache_err *err)
{
    const memcached_instance_st *in = NULL;
    if (k) {
        memcached_return_t r2;
        in = memcached_server_by_key(m, k->s, k->len, &r2);
    }
    if (!in)
        in = named_in_last_error(m);
    if (!in)
        in = memcached_server_get_last_disconnect(m);
    if (!in && memcached_server_count(m) > 0)
        in = memcached_server_instance_by_position(m, 0);
    char where[300] = "?";
    if (in)
        server_label(in, where, sizeof where);
    char why[160];
    if (mcco_of(b)) { /* the cosocket path: not the handle's state */
        if (rc == MCCO_PENDING)
            return CACHE_PENDING;
        clean_message(mcco_why(b, rc), why, sizeof why);
        return cache_fail(err, CACHE_FAIL, "memcached %s: %s", where, why);
    }
    if (memcached_last_error(m) != MEMCACHED_SUCCESS)
        clean_message(memcached_last_error_message(m), why, sizeof why);
    else
        clean_message(memcached_strerror(m, rc), why, sizeof why);
    int disabled = rc == MEMCACHED_SERVER_TEMPORARILY_DISABLED ||
                   rc == MEMCACHED_SERVER_MARKED_DEAD;
    if (disabled && b->last_cause[0])
        return cache_fail(err, CACHE_FAIL, "memcached %s: %s (after: %s)",
                          where, why, b->last_cause);
    if (!disabled)
        snprintf(b->last_cause, sizeof b->last_cause, "%.95s", why);
    return cache_fail(err, CACHE_FAIL, "memcached %s: %s", where, why);
}

int mc_fail(mc_backend *b, const mc_key *k, memcached_return_t rc,
            cache_err *err)
{
    return fail_on(b, b->m, k, rc, err);
}

/* ---- time and values ---------------------------------------------------------- */

int mc_expiry(double ttl, time_t *out)
{
    if (ttl == 0) {
        *out = 0;
        return 0;
    }
    if (!(ttl > 0))
        return 1;
    /* memcached counts whole seconds, rounded up here. Its clock ticks
     * once a second, so an entry sent with n seconds lives between n - 1
     * and n seconds (as with cachelib's int(now) + t). */
    double secs = ceil(ttl);
    if (secs <= MC_THIRTY_DAYS) {
        *out = (time_t)secs;
        return 0;
    }
    /* Beyond 30 days memcached reads the number as a unix time. */
    double abs = floor(cache_wall_now()) + secs;
    if (abs > 4294967295.0)
        abs = 4294967295.0; /* the protocol's 32-bit field: year 2106 */
    *out = (time_t)abs;
    return 0;
}

void mc_encode(cache_str value, char text_buf[24], cache_str *payload,
               uint32_t *flags)
{
    int64_t i;
    if (cache_value_as_int(value, &i)) {
        /* two's complement for negatives: see MC_FLAG_INT */
        int n = snprintf(text_buf, 24, "%" PRIu64, (uint64_t)i);
        payload->ptr = text_buf;
        payload->len = (size_t)n;
        *flags = MC_FLAG_INT;
        return;
    }
    *payload = value;
    *flags = MC_FLAG_CODEC;
}

/* An integer in decimal text. memcached pads the result of incr/decr with
 * spaces when it is shorter than the old value, so trailing spaces are
 * allowed. With wrap, 2^63 .. 2^64-1 read as negative (two's complement). */
static int stored_int(const char *p, size_t n, int wrap, int64_t *out)
{
    while (n > 0 && p[n - 1] == ' ')
        n--;
    if (cache_parse_int(p, n, out))
        return 1;
    if (!wrap || n == 0 || n > 20)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(p[i] - '0'), &v))
            return 0;
    }
    *out = v > (uint64_t)INT64_MAX ? -(int64_t)(~v) - 1 : (int64_t)v;
    return 1;
}

int mc_decode(const char *p, size_t n, uint32_t flags, cache_buf *out,
              cache_err *err)
{
    int64_t i;
    if (flags == MC_FLAG_CODEC) {
        /* bytes from the server: checked here, once (values_checked) */
        if (cache_validate(p, n, err) != CACHE_OK)
            return CACHE_MISS; /* corrupt: unreadable, as a miss */
        if (cache_buf_append(out, p, n))
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        return CACHE_OK;
    }
    if (flags == MC_FLAG_INT) {
        if (stored_int(p, n, 1, &i))
            return cache_encode_int(i, out, err);
        cache_writer w;
        cache_writer_init(&w, out);
        cache_write_str(&w, p, n);
        return w.failed ? cache_fail(err, CACHE_ENOMEM, "out of memory")
                        : CACHE_OK;
    }
    /* A foreign value. */
    if (stored_int(p, n, 0, &i))
        return cache_encode_int(i, out, err);
    size_t start = out->len;
    int rc = cache_external_decode((cache_str){p, n}, out, err);
    if (rc == CACHE_FAIL) {
        out->len = start;
        return CACHE_MISS; /* '!' and corrupt: unreadable, as a miss */
    }
    return rc;
}

/* ---- options and connection ----------------------------------------------------- */

static int record_server(mc_backend *b, const char *host, in_port_t port,
                         cache_err *err)
{
    mc_server *grown = realloc(b->servers, (b->nservers + 1) * sizeof *grown);
    if (!grown)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    b->servers = grown;
    char *copy = cache_strndup(host, strlen(host));
    if (!copy)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    b->servers[b->nservers++] = (mc_server){copy, port};
    return CACHE_OK;
}

static int add_one_server(mc_backend *b, const char *s, size_t n,
                          cache_err *err)
{
    cache_hostport hp;
    int rc = cache_hostport_parse(s, n, CACHE_HP_PORT_OPTIONAL | CACHE_HP_UNIX,
                                  MC_DEFAULT_PORT, &hp, "servers", err);
    if (rc != CACHE_OK)
        return rc;
    if (hp.path)
        rc = record_server(b, hp.path, 0, err);
    else
        rc = record_server(b, hp.host, (in_port_t)hp.port, err);
    cache_hostport_free(&hp);
    return rc;
}

/* One list element may hold several servers separated by commas. */
static int add_servers(mc_backend *b, const char *s, size_t n, cache_err *err)
{
    if (n == 0 || s[0] == '/')
        return add_one_server(b, s, n, err);
    while (n > 0) {
        const char *comma = memchr(s, ',', n);
        size_t len = comma ? (size_t)(comma - s) : n;
        int rc = add_one_server(b, s, len, err);
        if (rc != CACHE_OK)
            return rc;
        if (!comma)
            break;
        n -= len + 1;
        s = comma + 1;
    }
    return CACHE_OK;
}

/* username and password: both, or neither. One alone is refused, as
 * pylibmc refuses it ("SASL requires both username and password"). */
static int take_sasl(mc_backend *b, cache_opts *opts, cache_err *err)
{
    const char *user = NULL, *pass = NULL;
    size_t ul = 0, pl = 0;
    int rc = cache_opt_str(opts, "username", &user, &ul, err);
    if (rc < 0)
        return rc;
    rc = cache_opt_str(opts, "password", &pass, &pl, err);
    if (rc < 0)
        return rc;
    if (!user && !pass)
        return CACHE_OK;
    if (!user)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'password' given without 'username' (SASL needs both)");
    if (!pass)
        return cache_fail(err, CACHE_EINVAL,
                          "option 'username' given without 'password' (SASL needs both)");
    if (memchr(user, '\0', ul) || memchr(pass, '\0', pl))
        return cache_fail(err, CACHE_EINVAL, "username/password: NUL byte");
    b->user = cache_strndup(user, ul);
    b->pass = cache_strndup(pass, pl);
    if (!b->user || !b->pass)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    return CACHE_OK;
}

/* A new libmemcached handle of b's servers and credentials, unconnected.
 * Every handle b uses comes from here: libmemcached's memcached_clone does
 * not carry the weighted-ketama setting over, and a handle that builds its
 * continuum differently sends a key to another server. Every handle gets
 * the same behaviours, then the same servers in the same order, so every
 * handle builds the same continuum. */
static int new_handle(const mc_backend *b, memcached_st **out, cache_err *err)
{
    memcached_st *m = memcached_create(NULL);
    if (!m)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    /* ketama, weighted, MD5 points: the continuum of libketama and pylibmc */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
    /* milliseconds */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, 1000);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 1000);
    /* microseconds */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SND_TIMEOUT, 1000000);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, 1000000);
    /* One failure disables a server; it is tried again after a second. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
    memcached_return_t rc = MEMCACHED_SUCCESS;
    if (b->user) {
        rc = memcached_set_sasl_auth_data(m, b->user, b->pass);
        if (rc != MEMCACHED_SUCCESS) {
            cache_fail(err, CACHE_FAIL, "memcached: cannot set SASL credentials: %s",
                       memcached_strerror(m, rc));
            memcached_free(m);
            return CACHE_FAIL;
        }
    }
    for (size_t i = 0; i < b->nservers; i++) {
        const mc_server *sv = &b->servers[i];
        rc = sv->port ? memcached_server_add(m, sv->host, sv->port)
                      : memcached_server_add_unix_socket(m, sv->host);
        if (rc != MEMCACHED_SUCCESS) {
            if (sv->port)
                cache_fail(err, CACHE_EINVAL, "servers: cannot add '%s' port %u: %s",
                           sv->host, (unsigned)sv->port, memcached_strerror(m, rc));
            else
                cache_fail(err, CACHE_EINVAL, "servers: cannot add '%s': %s",
                           sv->host, memcached_strerror(m, rc));
            memcached_free(m);
            return CACHE_EINVAL;
        }
    }
    *out = m;
    return CACHE_OK;
}

int mc_open(mc_backend *b, cache_opts *opts, int sasl, cache_err *err)
{
    b->pid = getpid();
    int rc;
    if (sasl && (rc = take_sasl(b, opts, err)) != CACHE_OK)
        return rc;
    const char *prefix = NULL;
    size_t plen = 0;
    if ((rc = cache_opt_str(opts, "key_prefix", &prefix, &plen, err)) < 0)
        return rc;
    if ((rc = cache_co_take_opts(opts, &b->co, err)) != CACHE_OK)
        return rc;
    b->base.co = &b->co;
    b->prefix = cache_strndup(prefix ? prefix : "", plen);
    b->prefix_len = plen;
    if (!b->prefix)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    const cache_opt *servers = NULL;
    if ((rc = cache_opt_list(opts, "servers", &servers, err)) < 0)
        return rc;
    if (servers) {
        if (servers->count == 0)
            return cache_fail(err, CACHE_EINVAL, "servers: empty list");
        for (size_t i = 0; i < servers->count; i++)
            if ((rc = add_servers(b, servers->list[i], servers->list_lens[i],
                                  err)) != CACHE_OK)
                return rc;
    } else if ((rc = add_servers(b, "127.0.0.1:11211", 15, err)) != CACHE_OK) {
        return rc;
    }
    if ((rc = new_handle(b, &b->m, err)) != CACHE_OK)
        return rc;
    if (!memcached_result_create(b->m, &b->result))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    b->result_ready = 1;
    return CACHE_OK;
}

/* What mc_open took from the options (plain memory). */
static void free_config(mc_backend *b)
{
    for (size_t i = 0; i < b->nservers; i++)
        free(b->servers[i].host);
    free(b->servers);
    b->servers = NULL;
    b->nservers = 0;
    free(b->user);
    free(b->pass);
    b->user = b->pass = NULL;
    free(b->prefix);
    b->prefix = NULL;
}

void mc_close(mc_backend *b)
{
    if (b->m && b->pid != getpid()) {
        /* inherited across fork and never used here: see fork_guard */
        free_config(b);
        return;
    }
    if (b->result_ready)
        memcached_result_free(&b->result);
    b->result_ready = 0;
    if (b->del_m) {
        memcached_result_free(&b->del_result);
        memcached_free(b->del_m);
        b->del_m = NULL;
    }
    if (b->m)
        memcached_free(b->m);
    b->m = NULL;
    free_config(b);
}

/* ---- fork -------------------------------------------------------------------------- */

/* A process forked after the handle connected (an nginx master that made
 * the cache before forking its workers) shares the parent's sockets, so
 * each would read answers meant for the other. The child makes a handle of
 * its own (new_handle: same servers, behaviours and credentials, no
 * connections) and leaves the inherited one alone, on purpose: freeing it
 * would send QUIT on the parent's connections. */
static int fork_guard(mc_backend *b, cache_err *err)
{
    pid_t pid = getpid();
    if (pid == b->pid)
        return CACHE_OK;
    memcached_st *fresh;
    int rc = new_handle(b, &fresh, err);
    if (rc != CACHE_OK)
        return rc;
    if (!memcached_result_create(fresh, &b->result)) {
        memcached_free(fresh);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    b->m = fresh;
    b->del_m = NULL; /* a new one is made on first use */
    b->pid = pid;
    return CACHE_OK;
}

#define FORK_GUARD(b, err)                                                   \
    do {                                                                     \
        int fg_ = fork_guard((b), (err));                                    \
        if (fg_ != CACHE_OK)                                                 \
            return fg_;                                                      \
    } while (0)

/* ---- single-key operations ----------------------------------------------------- */

/* Storing n bytes under k failed with rc: the failure, saying what to do
 * about an item too large for the server. */
static int store_failed(mc_backend *b, const mc_key *k, memcached_return_t rc,
                        size_t n, cache_err *err)
{
    mc_fail(b, k, rc, err);
    if (rc == MEMCACHED_E2BIG && err) {
        size_t used = strlen(err->msg);
        snprintf(err->msg + used, sizeof err->msg - used,
                 " (%zu bytes; start memcached with a larger -I)", n);
    }
    return CACHE_FAIL;
}

int mc_store(mc_backend *b, const mc_key *k, const char *v, size_t n,
             uint32_t flags, double ttl, int only_if_absent, cache_err *err)
{
    FORK_GUARD(b, err);
    time_t exp;
    if (mc_expiry(ttl, &exp)) {
        /* Born expired: nothing is stored and nothing older survives. */
        if (only_if_absent) {
            int rc = mc_exists(b, k, err);
            return rc == CACHE_OK ? CACHE_EXISTS : rc == CACHE_MISS ? CACHE_OK : rc;
        }
        int rc = mc_delete(b, k, err);
        return rc == CACHE_MISS ? CACHE_OK : rc;
    }
    memcached_return_t rc =
        mcco_of(b) ? mcco_store(b, k, v, n, exp, flags, only_if_absent, 0)
        : only_if_absent ? memcached_add(b->m, k->s, k->len, v, n, exp, flags)
                         : memcached_set(b->m, k->s, k->len, v, n, exp, flags);
    if (rc == MEMCACHED_SUCCESS)
        return CACHE_OK;
    if (only_if_absent && (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS))
        return CACHE_EXISTS;
    return store_failed(b, k, rc, n, err);
}

int mc_delete(mc_backend *b, const mc_key *k, cache_err *err)
{
    FORK_GUARD(b, err);
    memcached_return_t rc = mcco_of(b) ? mcco_delete(b, k)
                                       : memcached_delete(b->m, k->s, k->len, 0);
    if (rc == MEMCACHED_SUCCESS)
        return CACHE_OK;
    if (rc == MEMCACHED_NOTFOUND)
        return CACHE_MISS;
    return mc_fail(b, k, rc, err);
}

/* libmemcached's exist is an ADD of an empty value whose expiry (2678400)
 * memcached reads as a date in 1970: an existing key answers "exists", a
 * missing one stays missing. Unlike APPEND it copies nothing. */
int mc_exists(mc_backend *b, const mc_key *k, cache_err *err)
{
    FORK_GUARD(b, err);
    memcached_return_t rc = mcco_of(b) ? mcco_exist(b, k)
                                       : memcached_exist(b->m, k->s, k->len);
    if (rc == MEMCACHED_SUCCESS)
        return CACHE_OK;
    if (rc == MEMCACHED_NOTFOUND)
        return CACHE_MISS;
    return mc_fail(b, k, rc, err);
}

/* libmemcached's binary flush reads the replies but ignores what they say,
 * so a reply that timed out only shows as the handle's last error. (A SASL
 * server refusing an unauthenticated flush still reads as success.) */
int mc_flush(mc_backend *b, cache_err *err)
{
    FORK_GUARD(b, err);
    if (mcco_of(b)) {
        memcached_return_t crc = mcco_flush(b);
        return crc == MEMCACHED_SUCCESS ? CACHE_OK : mc_fail(b, NULL, crc, err);
    }
    memcached_return_t rc = memcached_flush(b->m, 0);
    if (rc == MEMCACHED_SUCCESS)
        rc = memcached_last_error(b->m);
    return rc == MEMCACHED_SUCCESS ? CACHE_OK : mc_fail(b, NULL, rc, err);
}

/* ---- the keys of a batch -------------------------------------------------------------- */

typedef struct key_ref {
    const mc_key *k;
    size_t i;
} key_ref;

static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int ref_cmp(const void *x, const void *y)
{
    const key_ref *a = x, *b = y;
    int c = key_cmp(a->k->s, a->k->len, b->k->s, b->k->len);
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

/* First entry of refs whose key is (s, n), or n_refs. */
static size_t find_first(const key_ref *refs, size_t n_refs, const char *s,
                         size_t n)
{
    size_t lo = 0, hi = n_refs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(refs[mid].k->s, refs[mid].k->len, s, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int mc_first_only(size_t n, const mc_key *keys, int *status, cache_err *err)
{
    if (n < 2)
        return CACHE_OK;
    key_ref *refs = malloc(n * sizeof *refs);
    if (!refs)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        refs[i] = (key_ref){&keys[i], i};
    /* equal keys sort together, in the order they were given */
    qsort(refs, n, sizeof *refs, ref_cmp);
    for (size_t j = 1; j < n; j++)
        if (key_cmp(refs[j].k->s, refs[j].k->len, refs[j - 1].k->s,
                    refs[j - 1].k->len) == 0 &&
            status[refs[j].i] == CACHE_OK)
            status[refs[j].i] = CACHE_MISS;
    free(refs);
    return CACHE_OK;
}

/* ---- which servers failed during a call ----------------------------------------------- */

/* libmemcached keeps a server's last error until that server fails again,
 * so it may be from an earlier call. What one call did to each server is
 * read instead from what the call left behind:
 *  - a server that was asked something but owes no reply right after the
 *    requests went out: its connect or write failed;
 *  - one that still owes a reply once the replies were read: libmemcached's
 *    wait on several servers at once gives up without an error and
 *    without closing anything;
 *  - one whose connection is closed afterwards: libmemcached closes a
 *    connection on every read or write error, an answer it refuses (such
 *    as "authentication required") included (TCP only: a unix socket
 *    shows no local port);
 *  - the one that the handle's last error, always this call's, names.
 * Two unix-socket servers failing on a read in one call are the one blind
 * spot: only the last is seen. */
#define W_ASKED 1u /* the call has keys on this server */
#define W_SENT 2u  /* a reply was owed right after the requests went out */
#define W_DOWN 4u  /* failed during the call, or during an earlier step of it */
#define W_LATE 8u  /* still owed a reply when the call ended */

typedef struct call_watch {
    memcached_st *m;
    uint32_t n;
    unsigned char *flags; /* per server, by position */
    unsigned char *down;  /* the caller's, shared by the steps of a batch, or NULL */
    int stuck;            /* some server still owes a reply */
} call_watch;

static int watch_init(call_watch *w, memcached_st *m, unsigned char *down,
                      cache_err *err)
{
    w->m = m;
    w->n = memcached_server_count(m);
    w->down = down;
    w->stuck = 0;
    w->flags = calloc(w->n ? w->n : 1, 1);
    if (!w->flags)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    for (uint32_t s = 0; down && s < w->n; s++)
        w->flags[s] = down[s] ? W_DOWN : 0;
    return CACHE_OK;
}

/* The position of k's server: every handle of a backend builds the same
 * continuum (new_handle), so it is the same on each. */
static uint32_t server_of(memcached_st *m, const mc_key *k)
{
    uint32_t s = memcached_generate_hash(m, k->s, k->len);
    return s < memcached_server_count(m) ? s : 0;
}

uint32_t mc_server_of(mc_backend *b, const mc_key *k)
{
    return server_of(b->m, k);
}

unsigned char *mc_down_new(mc_backend *b)
{
    uint32_t n = memcached_server_count(b->m);
    return calloc(n ? n : 1, 1);
}

static const memcached_instance_st *server_at(memcached_st *m, uint32_t s)
{
    return memcached_server_instance_by_position(m, s);
}

static int owes_reply(memcached_st *m, uint32_t s)
{
    return memcached_server_response_count(server_at(m, s)) > 0;
}

/* TCP (unix sockets show no local port) and its connection closed. */
static int closed_tcp(memcached_st *m, uint32_t s)
{
    const memcached_instance_st *in = server_at(m, s);
    return strcmp(memcached_server_type(in), "SOCKET") != 0 &&
           memcached_server_srcport(in) == 0;
}

/* Right after the requests went out. */
static void watch_sent(call_watch *w)
{
    for (uint32_t s = 0; s < w->n; s++)
        if (owes_reply(w->m, s))
            w->flags[s] |= W_SENT;
}

/* After the replies were read, before anything else runs on the handle:
 * whether any server may have failed (cheap, without knowing which
 * servers were asked). */
static int watch_troubled(call_watch *w, memcached_return_t rc)
{
    if (rc != MEMCACHED_SUCCESS || memcached_last_error(w->m) != MEMCACHED_SUCCESS)
        return 1;
    for (uint32_t s = 0; s < w->n; s++)
        if ((w->flags[s] & W_SENT) && (owes_reply(w->m, s) || closed_tcp(w->m, s)))
            return 1;
    return 0;
}

/* Marks W_DOWN on every asked server that failed during the call. */
static void watch_judge(call_watch *w)
{
    const memcached_instance_st *named = named_in_last_error(w->m);
    for (uint32_t s = 0; s < w->n; s++) {
        unsigned char f = w->flags[s];
        if (!(f & W_ASKED) || (f & W_DOWN))
            continue;
        int stuck = owes_reply(w->m, s);
        if (!(f & W_SENT) || stuck || closed_tcp(w->m, s) || server_at(w->m, s) == named)
            w->flags[s] |= W_DOWN | (stuck ? W_LATE : 0);
        w->stuck |= stuck;
    }
}

/* What to report for server s, which failed: rc when the handle recorded
 * an error in this call (fail_on then shows its message), else what the
 * watch saw (libmemcached records no error when it drops a connection over
 * a reply it refuses, such as "authentication required"). */
static memcached_return_t watch_reason(const call_watch *w, uint32_t s,
                                       memcached_return_t rc)
{
    if (memcached_last_error(w->m) != MEMCACHED_SUCCESS)
        return rc;
    return w->flags[s] & W_LATE ? MEMCACHED_TIMEOUT : MEMCACHED_CONNECTION_FAILURE;
}

/* Closes every connection of m without waiting for what a stalled server
 * still owes: setting BUFFER_REQUESTS makes libmemcached send QUIT and
 * close each connection, draining replies first only while requests are
 * buffered, so it is set to 0 first (and back on a buffered handle). */
static void drop_connections(memcached_st *m)
{
    uint64_t buffered = memcached_behavior_get(m, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 0);
    if (buffered)
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
}

/* Ends the call's watch (after its error message was taken from the
 * handle): the servers that failed go into the caller's down, and a server
 * that still owes a reply loses its connection, or the late reply would be
 * read as the answer to a later request. */
static void watch_done(call_watch *w)
{
    for (uint32_t s = 0; w->down && s < w->n; s++)
        if (w->flags[s] & W_DOWN)
            w->down[s] = 1;
    if (w->stuck)
        drop_connections(w->m);
    free(w->flags);
    w->flags = NULL;
}

/* ---- multi-get -------------------------------------------------------------------- */

/* mc_mget on handle m, fetching into res_buf. */
static int mget_on(mc_backend *b, memcached_st *m, memcached_result_st *res_buf,
                   size_t n, const mc_key *keys, mc_hit_fn hit, void *ctx,
                   int *status, unsigned char *down, cache_err *err)
{
    if (n == 0)
        return CACHE_OK;
    call_watch w;
    const char **ptrs = malloc(n * sizeof *ptrs);
    size_t *lens = malloc(n * sizeof *lens);
    key_ref *refs = malloc(n * sizeof *refs);
    uint32_t *srv = malloc(n * sizeof *srv);
    if (!ptrs || !lens || !refs || !srv || watch_init(&w, m, down, err) != CACHE_OK) {
        free(ptrs), free(lens), free(refs), free(srv);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    int skip = 0; /* some server failed in an earlier step of this call */
    for (uint32_t s = 0; s < w.n; s++)
        skip |= w.flags[s] & W_DOWN;
    size_t ns = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        status[i] = CACHE_MISS;
        if (skip && (w.flags[srv[i] = server_of(m, &keys[i])] & W_DOWN)) {
            status[i] = CACHE_FAIL; /* err tells why already */
            failed++;
            continue;
        }
        ptrs[ns] = keys[i].s;
        lens[ns] = keys[i].len;
        refs[ns++] = (key_ref){&keys[i], i};
    }
    int hit_rc = CACHE_OK, first_fail = -1;
    if (ns > 0) {
        qsort(refs, ns, sizeof *refs, ref_cmp);
        memcached_return_t rc = memcached_mget(m, ptrs, lens, ns);
        watch_sent(&w);
        memcached_result_st *res;
        memcached_return_t frc;
        /* Fetch even after a failed mget: the servers that are up answer. */
        while ((res = memcached_fetch_result(m, res_buf, &frc)) != NULL) {
            const char *rk = memcached_result_key_value(res);
            size_t rl = memcached_result_key_length(res);
            for (size_t j = find_first(refs, ns, rk, rl);
                 j < ns && key_cmp(refs[j].k->s, refs[j].k->len, rk, rl) == 0; j++) {
                size_t i = refs[j].i;
                if (status[i] == CACHE_OK)
                    continue;
                int hr = hit(ctx, i, memcached_result_value(res),
                             memcached_result_length(res), memcached_result_flags(res));
                if (hr < 0)
                    hit_rc = hr;
                else
                    status[i] = hr;
            }
        }
        if (frc != MEMCACHED_END && frc != MEMCACHED_NOTFOUND && frc != MEMCACHED_SUCCESS &&
            rc == MEMCACHED_SUCCESS)
            rc = frc;
        if (watch_troubled(&w, rc)) {
            for (size_t j = 0; j < ns; j++) {
                size_t i = refs[j].i;
                srv[i] = server_of(m, &keys[i]);
                w.flags[srv[i]] |= W_ASKED;
            }
            watch_judge(&w);
            for (size_t j = 0; j < ns; j++) {
                size_t i = refs[j].i;
                if (status[i] == CACHE_MISS && (w.flags[srv[i]] & W_DOWN)) {
                    status[i] = CACHE_FAIL;
                    failed++;
                    if (first_fail < 0 || i < (size_t)first_fail)
                        first_fail = (int)i;
                }
            }
            if (first_fail >= 0)
                fail_on(b, m, &keys[first_fail], watch_reason(&w, srv[first_fail], rc), err);
        }
    }
    watch_done(&w);
    free(ptrs), free(lens), free(refs), free(srv);
    if (hit_rc < 0)
        return hit_rc;
    if (failed == n)
        return CACHE_FAIL;
    return CACHE_OK;
}

int mc_mget(mc_backend *b, size_t n, const mc_key *keys, mc_hit_fn hit,
            void *ctx, int *status, unsigned char *down, cache_err *err)
{
    FORK_GUARD(b, err);
    if (mcco_of(b))
        return mcco_mget(b, n, keys, hit, ctx, status, down, err);
    return mget_on(b, b->m, &b->result, n, keys, hit, ctx, status, down, err);
}

/* One key: memcached_get asks with a plain GETK, one request and one
 * answer, where a multi-get sends GETKQ + NOOP and reads twice (measured
 * about 1.7 times faster on loopback). */
int mc_get_one(mc_backend *b, const mc_key *k, mc_hit_fn hit, void *ctx,
               cache_err *err)
{
    FORK_GUARD(b, err);
    size_t len = 0;
    uint32_t flags = 0;
    memcached_return_t rc;
    if (mcco_of(b)) {
        cache_buf got;
        cache_buf_init(&got);
        uint64_t cas;
        rc = mcco_get(b, k, &got, &flags, &cas);
        int st = rc == MEMCACHED_SUCCESS
                     ? hit(ctx, 0, got.data ? got.data : "", got.len, flags)
                     : rc == MEMCACHED_NOTFOUND ? CACHE_MISS
                                                : mc_fail(b, k, rc, err);
        cache_buf_free(&got);
        return st == CACHE_ENOMEM ? cache_fail(err, CACHE_ENOMEM, "out of memory") : st;
    }
    char *v = memcached_get(b->m, k->s, k->len, &len, &flags, &rc);
    if (rc == MEMCACHED_SUCCESS) {
        int st = hit(ctx, 0, v ? v : "", v ? len : 0, flags);
        free(v);
        return st == CACHE_ENOMEM ? cache_fail(err, CACHE_ENOMEM, "out of memory") : st;
    }
    free(v);
    if (rc == MEMCACHED_NOTFOUND)
        return CACHE_MISS;
    return mc_fail(b, k, rc, err);
}

/* ---- pipelined batches ------------------------------------------------------------- */

static int item_specific(memcached_return_t rc)
{
    return rc == MEMCACHED_E2BIG || rc == MEMCACHED_NOTSTORED ||
           rc == MEMCACHED_DATA_EXISTS ||
           rc == MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE;
}

int mc_store_many(mc_backend *b, size_t n, const mc_key *keys,
                  const cache_str *vals, const uint32_t *flags, double ttl,
                  int *status, cache_err *err)
{
    FORK_GUARD(b, err);
    if (n == 0)
        return CACHE_OK;
    time_t exp;
    if (mc_expiry(ttl, &exp))
        return mc_delete_many_blind(b, n, keys, status, NULL, err);
    if (mcco_of(b))
        return mcco_store_many(b, n, keys, vals, flags, exp, status, err);
    uint32_t servers = memcached_server_count(b->m);
    uint32_t *srv = malloc(n * sizeof *srv);
    size_t *last = malloc((servers ? servers : 1) * sizeof *last);
    memcached_return_t *fail_rc = malloc((servers ? servers : 1) * sizeof *fail_rc);
    memcached_return_t *rcs = malloc(n * sizeof *rcs);
    if (!srv || !last || !fail_rc || !rcs) {
        free(srv), free(last), free(fail_rc), free(rcs);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    for (uint32_t s = 0; s < servers; s++) {
        last[s] = SIZE_MAX;
        fail_rc[s] = MEMCACHED_SUCCESS;
    }
    for (size_t i = 0; i < n; i++) {
        srv[i] = server_of(b->m, &keys[i]);
        if (vals[i].len <= MC_QUIET_MAX)
            last[srv[i]] = i;
    }
    int quiet = 0;
    for (size_t i = 0; i < n; i++) {
        int reply = vals[i].len > MC_QUIET_MAX || last[srv[i]] == i;
        if (fail_rc[srv[i]] != MEMCACHED_SUCCESS) {
            /* its server failed earlier in this batch: one wait is enough */
            rcs[i] = fail_rc[srv[i]];
            continue;
        }
        if (quiet != !reply) {
            quiet = !reply;
            memcached_behavior_set(b->m, MEMCACHED_BEHAVIOR_NOREPLY, (uint64_t)quiet);
        }
        rcs[i] = memcached_set(b->m, keys[i].s, keys[i].len, vals[i].ptr,
                               vals[i].len, exp, flags[i]);
        if (reply && rcs[i] != MEMCACHED_SUCCESS && !item_specific(rcs[i]))
            fail_rc[srv[i]] = rcs[i];
    }
    if (quiet)
        memcached_behavior_set(b->m, MEMCACHED_BEHAVIOR_NOREPLY, 0);
    int any_fail = 0;
    for (size_t i = 0; i < n; i++) {
        memcached_return_t rc = rcs[i];
        /* A quiet set is as good as the reply its server gave last. */
        size_t l = last[srv[i]];
        if (rc == MEMCACHED_SUCCESS && l != SIZE_MAX && l != i &&
            vals[i].len <= MC_QUIET_MAX && rcs[l] != MEMCACHED_SUCCESS &&
            !item_specific(rcs[l]))
            rc = rcs[l];
        if (rc == MEMCACHED_SUCCESS) {
            status[i] = CACHE_OK;
        } else {
            status[i] = CACHE_FAIL;
            if (!any_fail)
                store_failed(b, &keys[i], rc, vals[i].len, err);
            any_fail = 1;
        }
    }
    free(srv), free(last), free(fail_rc), free(rcs);
    /* Any key that failed fails the batch, with the first one's reason;
     * status[] still tells which keys were stored. */
    return any_fail ? CACHE_FAIL : CACHE_OK;
}

static int ignore_hit(void *ctx, size_t i, const char *v, size_t len,
                      uint32_t flags)
{
    (void)ctx, (void)i, (void)v, (void)len, (void)flags;
    return CACHE_OK;
}

/* The handle for batches of deletes: one more of new_handle's (same
 * servers and credentials, its own connections) with buffered requests
 * always on, because switching BUFFER_REQUESTS closes every connection of
 * a handle, dropping what is still buffered (drop_connections uses that). */
static memcached_st *deleter(mc_backend *b)
{
    if (b->del_m)
        return b->del_m;
    memcached_st *d;
    if (new_handle(b, &d, NULL) != CACHE_OK)
        return NULL;
    if (!memcached_result_create(d, &b->del_result)) {
        memcached_free(d);
        return NULL;
    }
    memcached_behavior_set(d, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    b->del_m = d;
    return d;
}

static uint64_t replies_owed(memcached_st *m)
{
    uint64_t owed = 0;
    for (uint32_t s = 0; s < memcached_server_count(m); s++)
        owed += memcached_server_response_count(server_at(m, s));
    return owed;
}

/* Reads every reply the servers of m owe (buffered deletes).
 * memcached_fetch_result reads them as it reads a multi-get's, and closes
 * a server's connection on an error; it stops early after some errors, so
 * it is called again while replies are owed, until a call reads nothing
 * (its wait on several servers at once timed out). */
static void drain_replies(memcached_st *m, memcached_result_st *res)
{
    uint64_t owed = replies_owed(m), before = UINT64_MAX;
    while (owed > 0 && owed < before) {
        memcached_return_t frc;
        before = owed;
        while (memcached_fetch_result(m, res, &frc) != NULL) {
        }
        owed = replies_owed(m);
    }
}

int mc_delete_many_blind(mc_backend *b, size_t n, const mc_key *keys,
                         int *status, unsigned char *down, cache_err *err)
{
    FORK_GUARD(b, err);
    if (n == 0)
        return CACHE_OK;
    if (mcco_of(b))
        return mcco_delete_many(b, n, keys, status, down, err);
    memcached_st *d = deleter(b);
    uint32_t *srv = malloc(n * sizeof *srv);
    call_watch w;
    if (!d || !srv || watch_init(&w, d, down, err) != CACHE_OK) {
        free(srv);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    int told = 0; /* err holds this call's first failure */
    for (size_t i = 0; i < n; i++) {
        srv[i] = server_of(d, &keys[i]);
        if (w.flags[srv[i]] & W_DOWN)
            continue;
        w.flags[srv[i]] |= W_ASKED;
        memcached_return_t rc = memcached_delete(d, keys[i].s, keys[i].len, 0);
        if (rc != MEMCACHED_BUFFERED && rc != MEMCACHED_SUCCESS &&
            rc != MEMCACHED_NOTFOUND) {
            /* its connection failed: what was queued on it is lost too */
            w.flags[srv[i]] |= W_DOWN;
            if (!told++)
                fail_on(b, d, &keys[i], rc, err);
        }
    }
    memcached_flush_buffers(d);
    watch_sent(&w);
    /* A server that read all its deletes has none of the keys left: each
     * was deleted or was not there. One round trip for the whole batch. */
    drain_replies(d, &b->del_result);
    watch_judge(&w);
    int any_fail = 0;
    for (size_t i = 0; i < n; i++) {
        status[i] = w.flags[srv[i]] & W_DOWN ? CACHE_FAIL : CACHE_OK;
        if (status[i] == CACHE_FAIL) {
            any_fail = 1;
            if ((w.flags[srv[i]] & W_ASKED) && !told++)
                fail_on(b, d, &keys[i], watch_reason(&w, srv[i], MEMCACHED_FAILURE), err);
        }
    }
    watch_done(&w);
    free(srv);
    return any_fail ? CACHE_FAIL : CACHE_OK;
}

/* ---- increments ------------------------------------------------------------------------ */

static memcached_return_t server_incr(mc_backend *b, const mc_key *k,
                                      uint64_t offset, uint64_t *value)
{
    if (mcco_of(b))
        return mcco_incr(b, k, offset, value);
    return memcached_increment_by_key(b->m, k->s, k->len, k->s, k->len, offset,
                                      value);
}

static int64_t as_signed(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? -(int64_t)(~v) - 1 : (int64_t)v;
}

/* memcached refused to add to the value (libmemcached reports the server's
 * "non-numeric value" as a read failure). */
static int refused(memcached_return_t rc)
{
    return rc == MEMCACHED_UNKNOWN_READ_FAILURE || rc == MEMCACHED_CLIENT_ERROR ||
           rc == MEMCACHED_PROTOCOL_ERROR;
}

/* A value read for an increment (cas: when read with its CAS). */
typedef struct counter {
    mc_backend *b;
    cache_err *err;
    cache_buf text;
    uint32_t flags;
    uint64_t cas;
} counter;

static int counter_hit(void *ctx, size_t i, const char *v, size_t len,
                       uint32_t flags)
{
    counter *c = ctx;
    (void)i;
    c->flags = flags;
    c->text.len = 0;
    if (cache_buf_append(&c->text, v, len))
        return cache_fail(c->err, CACHE_ENOMEM, "out of memory");
    return CACHE_OK;
}

static int counter_cas_hit(void *ctx, size_t i, const char *v, size_t len,
                           uint32_t flags)
{
    counter *c = ctx;
    /* mc_mget fetches into b->result; the cosocket path keeps the hit's cas */
    c->cas = mcco_of(c->b) ? mcco_last_cas() : memcached_result_cas(&c->b->result);
    return counter_hit(ctx, i, v, len, flags);
}

/* Reads k into c, with one GETK (no CAS): CACHE_OK, CACHE_MISS, or a
 * failure. A connection that did not authenticate to a SASL server reads
 * a miss here (libmemcached's mapping), and the add that follows a miss
 * then fails with "authentication failure". */
static int read_counter(mc_backend *b, const mc_key *k, counter *c,
                        cache_err *err)
{
    return mc_get_one(b, k, counter_hit, c, err);
}

/* The integer c holds: 1 and *v, or 0 when it holds no integer. */
static int counter_value(const counter *c, int64_t *v)
{
    const char *p = c->text.data ? c->text.data : "";
    size_t n = c->text.len;
    if (c->flags == MC_FLAG_CODEC || c->flags == MC_FLAG_SPREAD_HEAD ||
        c->flags == MC_FLAG_SPREAD_PART)
        return 0;
    if (stored_int(p, n, c->flags == MC_FLAG_INT, v))
        return 1;
    if (c->flags == MC_FLAG_INT || n == 0 || p[0] != CACHE_MARKER)
        return 0;
    /* another client's value in the engine's external form ('!' + codec
     * bytes): an integer too when it decodes to one */
    cache_buf dec;
    cache_buf_init(&dec);
    int is_int = cache_external_decode((cache_str){p, n}, &dec, NULL) == CACHE_OK &&
                 cache_value_as_int((cache_str){dec.data, dec.len}, v);
    cache_buf_free(&dec);
    return is_int;
}

/* Writes bits (an integer's two's complement) as the counter k if it
 * still holds what c read: the value is read again with its CAS (a GETK
 * shows none) and compare-and-swapped. CACHE_OK, MC_AGAIN, or a failure.
 * memcached cannot tell a client an entry's expiry, so the entry gets
 * new_ttl. */
static int counter_swap(mc_backend *b, const mc_key *k, const counter *c,
                        uint64_t bits, double new_ttl, cache_err *err)
{
    counter now = {b, err, {0}, 0, 0};
    cache_buf_init(&now.text);
    int st;
    int rc = mc_mget(b, 1, k, counter_cas_hit, &now, &st, NULL, err);
    if (rc >= 0)
        rc = st == CACHE_OK && now.flags == c->flags && now.text.len == c->text.len &&
                     (c->text.len == 0 ||
                      memcmp(now.text.data, c->text.data, c->text.len) == 0)
                 ? CACHE_OK
                 : st < 0 ? st : MC_AGAIN;
    cache_buf_free(&now.text);
    if (rc != CACHE_OK)
        return rc;
    char text[24];
    int tn = snprintf(text, sizeof text, "%" PRIu64, bits);
    time_t exp;
    if (mc_expiry(new_ttl, &exp))
        exp = 0;
    memcached_return_t crc =
        mcco_of(b) ? mcco_store(b, k, text, (size_t)tn, exp, MC_FLAG_INT, 0, now.cas)
                   : memcached_cas(b->m, k->s, k->len, text, (size_t)tn, exp,
                                   MC_FLAG_INT, now.cas);
    if (crc == MEMCACHED_SUCCESS)
        return CACHE_OK;
    if (crc == MEMCACHED_DATA_EXISTS || crc == MEMCACHED_NOTFOUND)
        return MC_AGAIN;
    return mc_fail(b, k, crc, err);
}

/* Takes back an increment by delta that overflowed because another client
 * changed the value between the read and the incr: incr by -delta, or,
 * when memcached refuses that (see mc_incr), compare-and-swap. Only a
 * server failing right here leaves the wrapped value. */
static int take_back(mc_backend *b, const mc_key *k, int64_t delta,
                     double new_ttl, counter *c, cache_err *err)
{
    uint64_t back;
    memcached_return_t rc = server_incr(b, k, (uint64_t)0 - (uint64_t)delta, &back);
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND)
        return CACHE_OK;
    if (!refused(rc))
        return mc_fail(b, k, rc, err);
    for (int attempt = 0; attempt < MC_INCR_ATTEMPTS; attempt++) {
        int64_t now;
        int st = read_counter(b, k, c, err);
        if (st != CACHE_OK)
            return st == CACHE_MISS ? CACHE_OK : st;
        if (!counter_value(c, &now))
            return CACHE_OK; /* replaced by a value that is no integer */
        st = counter_swap(b, k, c, (uint64_t)now - (uint64_t)delta, new_ttl, err);
        if (st != MC_AGAIN)
            return st;
    }
    return cache_fail(err, CACHE_FAIL,
                      "memcached: integer overflow not taken back, the key kept changing");
}

/* One try of mc_incr: CACHE_OK, a failure, or MC_AGAIN when the key
 * changed between the read and the write. */
static int incr_once(mc_backend *b, const mc_key *k, int64_t delta,
                     double new_ttl, counter *c, int64_t *result, cache_err *err)
{
    int st = read_counter(b, k, c, err);
    if (st < 0)
        return st;
    time_t exp;
    int born_expired = mc_expiry(new_ttl, &exp);
    if (st == CACHE_MISS) {
        if (born_expired) { /* created already expired: report it, store nothing */
            *result = delta;
            return CACHE_OK;
        }
        char text[24];
        int tn = snprintf(text, sizeof text, "%" PRIu64, (uint64_t)delta);
        memcached_return_t rc =
            mcco_of(b) ? mcco_store(b, k, text, (size_t)tn, exp, MC_FLAG_INT, 1, 0)
                       : memcached_add(b->m, k->s, k->len, text, (size_t)tn, exp,
                                       MC_FLAG_INT);
        if (rc == MEMCACHED_SUCCESS) {
            *result = delta;
            return CACHE_OK;
        }
        if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS)
            return MC_AGAIN;
        return mc_fail(b, k, rc, err);
    }
    int64_t v, sum;
    if (!counter_value(c, &v))
        return cache_fail(err, CACHE_ENOTINT, "value is not an integer");
    if (__builtin_add_overflow(v, delta, &sum))
        return cache_fail(err, CACHE_ENOTINT, "integer overflow");
    /* memcached's incr where it can: decimal digits, which stay an integer
     * here after the sum (another client's flags read decimal text only up
     * to 2^63 - 1). */
    const char *p = c->text.data;
    if (p && p[0] >= '0' && p[0] <= '9' && (c->flags == MC_FLAG_INT || sum >= 0)) {
        uint64_t r;
        memcached_return_t rc = server_incr(b, k, (uint64_t)delta, &r);
        if (rc == MEMCACHED_SUCCESS) {
            /* r - delta is the value read, unless another client changed
             * it in between, which may make this increment overflow */
            int64_t before = as_signed(r - (uint64_t)delta);
            if (!__builtin_add_overflow(before, delta, &sum)) {
                *result = sum;
                return CACHE_OK;
            }
            int t = take_back(b, k, delta, new_ttl, c, err);
            return t < 0 ? t : cache_fail(err, CACHE_ENOTINT, "integer overflow");
        }
        if (rc == MEMCACHED_NOTFOUND)
            return MC_AGAIN;
        if (!refused(rc))
            return mc_fail(b, k, rc, err);
    }
    /* "-n" (another client's negative), the '!' form, or a value memcached
     * refused: the sum written over the value read */
    st = counter_swap(b, k, c, (uint64_t)sum, new_ttl, err);
    if (st == CACHE_OK)
        *result = sum;
    return st;
}

/* Read, then change: the sum is checked in C before anything is written,
 * so an overflow leaves the value as it was. The change is memcached's
 * incr, which adds delta modulo 2^64 to the stored two's complement (exact
 * signed arithmetic), keeps the entry's expiry and loses no concurrent
 * update. memcached before 1.6.22 may refuse to add to a value of 2^63 or
 * more (it looks for a '-' past the end of the value's text), so a
 * negative counter is then rewritten by compare-and-swap instead. A
 * missing key is created by add; losing that race to another client just
 * means reading again.
 *
 * incr is sent only after the read answered on the same connection: a
 * connection that did not authenticate to a SASL server fails the read,
 * and libmemcached abort()s in incr on an authentication error. */
int mc_incr(mc_backend *b, const mc_key *k, int64_t delta, double new_ttl,
            int64_t *result, cache_err *err)
{
    FORK_GUARD(b, err);
    counter c = {b, err, {0}, 0, 0};
    cache_buf_init(&c.text);
    int rc = MC_AGAIN;
    for (int attempt = 0; attempt < MC_INCR_ATTEMPTS && rc == MC_AGAIN; attempt++)
        rc = incr_once(b, k, delta, new_ttl, &c, result, err);
    cache_buf_free(&c.text);
    if (rc == MC_AGAIN)
        return cache_fail(err, CACHE_FAIL, "memcached: inc gave up, the key kept changing");
    return rc;
}

/* ---- the MemcachedCache / SASLMemcachedCache vtable ----------------------------------------- */

typedef struct decode_ctx {
    cache_buf *out; /* one buffer per key */
    int per_key;
    cache_err *err;
} decode_ctx;

static int decode_hit(void *ctx, size_t i, const char *v, size_t len,
                      uint32_t flags)
{
    decode_ctx *d = ctx;
    cache_buf *out = d->per_key ? &d->out[i] : d->out;
    int rc = mc_decode(v, len, flags, out, d->err);
    return rc == CACHE_ENOMEM ? CACHE_ENOMEM : rc;
}

static int mcb_get(cache_backend *base, cache_str key, cache_buf *out,
                   cache_err *err)
{
    mc_backend *b = (mc_backend *)base;
    mc_key k;
    mc_key_make(b, key, NULL, 0, &k);
    decode_ctx d = {out, 0, err};
    return mc_get_one(b, &k, decode_hit, &d, err);
}

static int mcb_set(cache_backend *base, cache_str key, cache_str value,
                   double ttl, int only_if_absent, cache_err *err)
{
    mc_backend *b = (mc_backend *)base;
    mc_key k;
    mc_key_make(b, key, NULL, 0, &k);
    char text[24];
    cache_str payload;
    uint32_t flags;
    mc_encode(value, text, &payload, &flags);
    return mc_store(b, &k, payload.ptr, payload.len, flags, ttl, only_if_absent,
                    err);
}

static int mcb_del(cache_backend *base, cache_str key, cache_err *err)
{
    mc_backend *b = (mc_backend *)base;
    mc_key k;
    mc_key_make(b, key, NULL, 0, &k);
    return mc_delete(b, &k, err);
}

static int mcb_has(cache_backend *base, cache_str key, cache_err *err)
{
    mc_backend *b = (mc_backend *)base;
    mc_key k;
    mc_key_make(b, key, NULL, 0, &k);
    return mc_exists(b, &k, err);
}

static int mcb_clear(cache_backend *base, cache_err *err)
{
    return mc_flush((mc_backend *)base, err);
}

static int mcb_incr(cache_backend *base, cache_str key, int64_t delta,
                    double new_ttl, int64_t *result, cache_err *err)
{
    mc_backend *b = (mc_backend *)base;
    mc_key k;
    mc_key_make(b, key, NULL, 0, &k);
    return mc_incr(b, &k, delta, new_ttl, result, err);
}

static mc_key *make_keys(mc_backend *b, size_t n, const cache_str *keys)
{
    mc_key *ks = malloc((n ? n : 1) * sizeof *ks);
    if (ks)
        for (size_t i = 0; i < n; i++)
            mc_key_make(b, keys[i], NULL, 0, &ks[i]);
    return ks;
}

static int mcb_get_many(cache_backend *base, size_t n, const cache_str *keys,
                        cache_buf *out, int *status, cache_err *err)
{
    mc_backend *b = (mc_backend *)base;
    mc_key *ks = make_keys(b, n, keys);
    if (!ks)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    decode_ctx d = {out, 1, err};
    int rc = mc_mget(b, n, ks, decode_hit, &d, status, NULL, err);
    free(ks);
    return rc;
}

static int mcb_set_many(cache_backend *base, size_t n, const cache_str *keys,
                        const cache_str *values, double ttl, int *status,
                        cache_err *err)
{
    mc_backend *b = (mc_backend *)base;
    mc_key *ks = make_keys(b, n, keys);
    char(*texts)[24] = malloc((n ? n : 1) * sizeof *texts);
    cache_str *payloads = malloc((n ? n : 1) * sizeof *payloads);
    uint32_t *flags = malloc((n ? n : 1) * sizeof *flags);
    int rc;
    if (!ks || !texts || !payloads || !flags) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++)
            mc_encode(values[i], texts[i], &payloads[i], &flags[i]);
        rc = mc_store_many(b, n, ks, payloads, flags, ttl, status, err);
    }
    free(ks), free(texts), free(payloads), free(flags);
    return rc;
}

static int mcb_del_many(cache_backend *base, size_t n, const cache_str *keys,
                        int *status, cache_err *err)
{
    mc_backend *b = (mc_backend *)base;
    if (n <= 2) { /* one round trip each is no more than the batch's two */
        int rc = CACHE_OK;
        uint32_t failed_server = UINT32_MAX;
        for (size_t i = 0; i < n; i++) {
            mc_key k;
            mc_key_make(b, keys[i], NULL, 0, &k);
            if (failed_server != UINT32_MAX && mc_server_of(b, &k) == failed_server) {
                status[i] = CACHE_FAIL; /* its server just failed: err says so */
                continue;
            }
            status[i] = mc_delete(b, &k, err);
            if (status[i] < 0) {
                rc = status[i];
                if (!b->base.ignore_errors)
                    return rc;
                failed_server = mc_server_of(b, &k);
            }
        }
        return rc == CACHE_OK || b->base.ignore_errors ? CACHE_OK : rc;
    }
    mc_key *ks = make_keys(b, n, keys);
    int *gone = malloc(n * sizeof *gone);
    mc_key *doomed = malloc(n * sizeof *doomed);
    size_t *map = malloc(n * sizeof *map);
    unsigned char *down = mc_down_new(b);
    int rc;
    if (!ks || !gone || !doomed || !map || !down) {
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        goto out;
    }
    /* Which keys exist (a batch of deletes tells only per server that it
     * is done), then delete those; a server that failed in the first step
     * is not asked again. */
    rc = mc_mget(b, n, ks, ignore_hit, NULL, status, down, err);
    if (rc < 0 || (rc = mc_first_only(n, ks, status, err)) < 0)
        goto out;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (status[i] == CACHE_OK) {
            doomed[m] = ks[i];
            map[m++] = i;
        }
    rc = mc_delete_many_blind(b, m, doomed, gone, down, err);
    if (rc < 0 && rc != CACHE_FAIL)
        goto out;
    for (size_t j = 0; j < m; j++)
        status[map[j]] = gone[j];
    rc = CACHE_OK;
    for (size_t i = 0; i < n; i++)
        if (status[i] < 0)
            rc = status[i];
out:
    free(ks), free(gone), free(doomed), free(map), free(down);
    return rc;
}

static void mcb_destroy(cache_backend *base)
{
    mc_backend *b = (mc_backend *)base;
    mc_close(b);
    free(b);
}

/* The two classes differ only in their name (and in create's sasl flag).
 * Every value get hands on has passed mc_decode, which checks it. */
#define MEMCACHED_VTABLE(class_name)                                        \
    {                                                                       \
        .name = class_name, .values_checked = 1, .get = mcb_get,            \
        .set = mcb_set, .del = mcb_del, .has = mcb_has, .clear = mcb_clear, \
        .incr = mcb_incr, .get_many = mcb_get_many,                         \
        .set_many = mcb_set_many, .del_many = mcb_del_many,                 \
        .destroy = mcb_destroy,                                             \
    }

static const cache_vtable memcached_vt = MEMCACHED_VTABLE("MemcachedCache");
static const cache_vtable sasl_memcached_vt = MEMCACHED_VTABLE("SASLMemcachedCache");

static cache_backend *create(cache_opts *opts, int sasl, const cache_vtable *vt,
                             cache_err *err)
{
    mc_backend *b = calloc(1, sizeof *b);
    if (!b) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    b->base.vt = vt;
    if (mc_open(b, opts, sasl, err) != CACHE_OK) {
        mc_close(b);
        free(b);
        return NULL;
    }
    return &b->base;
}

cache_backend *cache_memcached_create(cache_opts *opts, cache_err *err)
{
    return create(opts, 0, &memcached_vt, err);
}

cache_backend *cache_sasl_memcached_create(cache_opts *opts, cache_err *err)
{
    return create(opts, 1, &sasl_memcached_vt, err);
}
