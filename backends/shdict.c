/*
 * shdict.c - SharedDictCache: the cache contract over an nginx
 * lua_shared_dict zone, shared by every worker of the host.
 *
 * It calls the shared-dict functions lua-nginx-module exports for
 * lua-resty-core's FFI (ngx_http_lua_ffi_shdict_get / _store / _incr /
 * _get_ttl / _flush_all / _capacity / _free_space). They are found at open
 * time with dlsym, so core.so loads in any Lua, and SharedDictCache opens
 * only inside nginx. Their signatures are those of lua-nginx-module
 * 0.10.23 (Debian 12), which lua-resty-core 0.1.25 declares the same way;
 * they take the zone (ngx_shm_zone_t *), lock its mutex themselves and call
 * no Lua. The zone comes from the binding: lua/cache.lua looks the dict up
 * in ngx.shared and bindings/shdict.c turns its userdata into the zone
 * (ngx_http_lua_ffi_shdict_udata_to_zone), handed over as option "zone".
 *
 * Entries: an integer within 2^53 is stored as a dict number, so inc/dec
 * are the zone's own atomic increment; every other value as the codec bytes
 * in a string marked with SHDICT_FLAGS (the user flags of the entry). A
 * foreign entry (set by Lua code through ngx.shared) reads as its string,
 * number or boolean.
 *
 * Timeouts: the zone keeps expiry in milliseconds of nginx's cached time,
 * and an entry stays readable through its last millisecond: a ttl is stored
 * as ceil(ttl * 1000) - 1 ms so it never outlives its timeout by rounding,
 * and a ttl under 2 ms (or negative) leaves no entry.
 */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "codec.h"

/* lua-nginx-module's value types (the Lua type numbers) and store ops */
enum { SHD_NIL = 0, SHD_BOOLEAN = 1, SHD_NUMBER = 3, SHD_STRING = 4 };
enum { SHD_OP_SET = 0, SHD_OP_ADD = 0x0001, SHD_OP_SAFE = 0x0004 };
#define SHD_OK 0
#define SHD_DECLINED (-5) /* NGX_DECLINED */
#define SHDICT_FLAGS 0x63616368 /* "cach": our codec bytes */
#define SHD_KEY_MAX 65535
#define SHD_INT_MAX 9007199254740992.0 /* 2^53: exact in a double */

typedef int (*shd_get_fn)(void *zone, const unsigned char *key, size_t key_len,
                          int *value_type, unsigned char **str_value_buf,
                          size_t *str_value_len, double *num_value,
                          int *user_flags, int get_stale, int *is_stale,
                          char **errmsg);
typedef int (*shd_store_fn)(void *zone, int op, const unsigned char *key,
                            size_t key_len, int value_type,
                            const unsigned char *str_value_buf,
                            size_t str_value_len, double num_value,
                            long exptime, int user_flags, char **errmsg,
                            int *forcible);
typedef int (*shd_incr_fn)(void *zone, const unsigned char *key, size_t key_len,
                           double *value, char **err, int has_init,
                           double init, long init_ttl, int *forcible);
typedef long (*shd_ttl_fn)(void *zone, const unsigned char *key, size_t key_len);
typedef int (*shd_flush_fn)(void *zone);
typedef size_t (*shd_size_fn)(void *zone);

typedef struct shd_api {
    shd_get_fn get;
    shd_store_fn store;
    shd_incr_fn incr;
    shd_ttl_fn ttl;
    shd_flush_fn flush_all;
    shd_size_fn capacity, free_space;
} shd_api;

typedef struct shdict {
    cache_backend base;
    shd_api api;
    void *zone;
    int evict;         /* option evict: a full zone drops LRU entries */
    char *prefix;      /* key_prefix */
    size_t plen;
    uint64_t evictions;
    cache_buf key;     /* prefix + key */
} shdict;

/* The functions, or 0 outside nginx (or with a module that lacks one). */
static int resolve_api(shd_api *a)
{
    a->get = (shd_get_fn)dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_shdict_get");
    a->store = (shd_store_fn)dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_shdict_store");
    a->incr = (shd_incr_fn)dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_shdict_incr");
    a->ttl = (shd_ttl_fn)dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_shdict_get_ttl");
    a->flush_all = (shd_flush_fn)dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_shdict_flush_all");
    a->capacity = (shd_size_fn)dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_shdict_capacity");
    a->free_space = (shd_size_fn)dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_shdict_free_space");
    return a->get && a->store && a->incr && a->ttl && a->flush_all && a->capacity;
}

void *cache_shdict_udata_to_zone(void *udata)
{
    void *(*fn)(void *) = (void *(*)(void *))dlsym(
        RTLD_DEFAULT, "ngx_http_lua_ffi_shdict_udata_to_zone");
    return fn && udata ? fn(udata) : NULL;
}

static int full_key(shdict *d, cache_str key, cache_str *out, cache_err *err)
{
    if (d->plen + key.len > SHD_KEY_MAX)
        return cache_fail(err, CACHE_FAIL, "key too long for a shared dict (%d bytes at most)",
                          SHD_KEY_MAX);
    d->key.len = 0;
    if (cache_buf_append(&d->key, d->prefix, d->plen) ||
        cache_buf_append(&d->key, key.ptr, key.len))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    /* a zero-length key would be handed over as a NULL pointer */
    *out = (cache_str){d->key.data ? d->key.data : "", d->key.len};
    return CACHE_OK;
}

/* The zone's expiry for a ttl: 1 on success (ms set, 0 = never), 0 when
 * the entry would already be expired. */
static int exptime_of(double ttl, long *ms)
{
    if (ttl == 0) {
        *ms = 0;
        return 1;
    }
    if (!(ttl > 0))
        return 0;
    double m = ceil(ttl * 1000.0) - 1;
    if (m < 1)
        return 0;
    *ms = m > 1e15 ? (long)1e15 : (long)m;
    return 1;
}

static int shd_failure(const char *what, const char *msg, cache_err *err)
{
    return cache_fail(err, CACHE_FAIL, "shared dict %s: %s", what, msg ? msg : "failed");
}

/* Whether a live entry is under k (get_ttl: remaining ms, 0 = no expiry,
 * negative when expired, NGX_DECLINED when absent). */
static int live(shdict *d, cache_str k)
{
    long r = d->api.ttl(d->zone, (const unsigned char *)k.ptr, k.len);
    return r >= 0;
}

static int sd_get(cache_backend *b, cache_str key, cache_buf *out, cache_err *err)
{
    shdict *d = (shdict *)b;
    cache_str k;
    int rc = full_key(d, key, &k, err);
    if (rc != CACHE_OK)
        return rc;
    unsigned char small[512];
    unsigned char *buf = small;
    size_t len = sizeof small;
    int type = SHD_NIL, flags = 0, stale = 0;
    double num = 0;
    char *msg = NULL;
    if (d->api.get(d->zone, (const unsigned char *)k.ptr, k.len, &type, &buf, &len,
                   &num, &flags, 0, &stale, &msg) != SHD_OK)
        return shd_failure("get", msg, err);
    if (type == SHD_NIL)
        return CACHE_MISS;
    size_t start = out->len;
    cache_writer w;
    cache_writer_init(&w, out);
    rc = CACHE_OK;
    if (type == SHD_STRING && flags == SHDICT_FLAGS) {
        /* bytes another worker wrote: checked before anyone decodes them */
        rc = cache_validate(buf, len, err);
        if (rc == CACHE_OK && cache_buf_append(out, buf, len))
            rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
        if (rc == CACHE_FAIL)
            rc = CACHE_MISS; /* corrupt: a miss, with the reason in err */
    } else if (type == SHD_STRING) {
        cache_write_str(&w, (const char *)buf, len);
    } else if (type == SHD_NUMBER) {
        if (num == floor(num) && fabs(num) <= SHD_INT_MAX)
            cache_write_int(&w, (int64_t)num);
        else
            cache_write_float(&w, num);
    } else if (type == SHD_BOOLEAN) {
        cache_write_bool(&w, buf[0] != 0);
    } else {
        rc = shd_failure("get", "unexpected value type", err);
    }
    if (buf != small)
        free(buf); /* the module malloc()ed it: the value outgrew small */
    if (w.failed)
        rc = cache_fail(err, CACHE_ENOMEM, "out of memory");
    if (rc != CACHE_OK)
        out->len = start;
    return rc;
}

static int sd_has(cache_backend *b, cache_str key, cache_err *err)
{
    shdict *d = (shdict *)b;
    cache_str k;
    int rc = full_key(d, key, &k, err);
    if (rc != CACHE_OK)
        return rc;
    return live(d, k) ? CACHE_OK : CACHE_MISS;
}

static int remove_key(shdict *d, cache_str k, cache_err *err)
{
    char *msg = NULL;
    int forcible = 0;
    if (d->api.store(d->zone, SHD_OP_SET, (const unsigned char *)k.ptr, k.len, SHD_NIL,
                     NULL, 0, 0, 0, 0, &msg, &forcible) != SHD_OK)
        return shd_failure("delete", msg, err);
    return CACHE_OK;
}

static int sd_set(cache_backend *b, cache_str key, cache_str value, double ttl,
                  int only_if_absent, cache_err *err)
{
    shdict *d = (shdict *)b;
    cache_str k;
    int rc = full_key(d, key, &k, err);
    if (rc != CACHE_OK)
        return rc;
    long ms;
    if (!exptime_of(ttl, &ms)) {
        /* already expired: nothing is stored (an add still says whether a
         * live entry is in the way) */
        if (only_if_absent)
            return live(d, k) ? CACHE_EXISTS : CACHE_OK;
        return remove_key(d, k, err);
    }
    int64_t i;
    int type = SHD_STRING, flags = SHDICT_FLAGS;
    double num = 0;
    if (cache_value_as_int(value, &i) && (double)i <= SHD_INT_MAX &&
        (double)i >= -SHD_INT_MAX) {
        type = SHD_NUMBER;
        num = (double)i;
        flags = 0;
    }
    int op = (only_if_absent ? SHD_OP_ADD : SHD_OP_SET) | (d->evict ? 0 : SHD_OP_SAFE);
    char *msg = NULL;
    int forcible = 0;
    int r = d->api.store(d->zone, op, (const unsigned char *)k.ptr, k.len, type,
                         (const unsigned char *)(type == SHD_STRING ? value.ptr : NULL),
                         type == SHD_STRING ? value.len : 0, num, ms, flags, &msg,
                         &forcible);
    if (forcible)
        d->evictions++;
    if (r == SHD_OK)
        return CACHE_OK;
    if (only_if_absent && msg && strcmp(msg, "exists") == 0)
        return CACHE_EXISTS;
    return shd_failure("set", msg, err);
}

static int sd_del(cache_backend *b, cache_str key, cache_err *err)
{
    shdict *d = (shdict *)b;
    cache_str k;
    int rc = full_key(d, key, &k, err);
    if (rc != CACHE_OK)
        return rc;
    int existed = live(d, k);
    rc = remove_key(d, k, err);
    if (rc != CACHE_OK)
        return rc;
    return existed ? CACHE_OK : CACHE_MISS;
}

/* Without a key_prefix: the whole zone. With one, only Lua can list the
 * zone's keys (there is no exported walk): lua/cache.lua gives such an
 * object a clear method of its own, and this one refuses. */
static int sd_clear(cache_backend *b, cache_err *err)
{
    shdict *d = (shdict *)b;
    if (d->plen)
        return cache_fail(err, CACHE_FAIL,
                          "SharedDictCache: clear with a key_prefix runs in Lua (c:clear())");
    d->api.flush_all(d->zone);
    return CACHE_OK;
}

static int sd_incr(cache_backend *b, cache_str key, int64_t delta, double new_ttl,
                   int64_t *result, cache_err *err)
{
    shdict *d = (shdict *)b;
    cache_str k;
    int rc = full_key(d, key, &k, err);
    if (rc != CACHE_OK)
        return rc;
    if ((double)delta > SHD_INT_MAX || (double)delta < -SHD_INT_MAX)
        return cache_fail(err, CACHE_ENOTINT, "delta beyond 2^53 in a shared dict");
    long ms;
    if (!exptime_of(new_ttl, &ms))
        ms = 1; /* a new entry "already expired": gone at the next millisecond */
    double v = (double)delta;
    char *msg = NULL;
    int forcible = 0;
    int r = d->api.incr(d->zone, (const unsigned char *)k.ptr, k.len, &v, &msg, 1, 0, ms,
                        &forcible);
    if (forcible)
        d->evictions++;
    if (r != SHD_OK) {
        if (msg && strcmp(msg, "not a number") == 0)
            return cache_fail(err, CACHE_ENOTINT, "value is not an integer");
        return shd_failure("incr", msg, err);
    }
    if (v != floor(v) || fabs(v) > SHD_INT_MAX)
        return cache_fail(err, CACHE_ENOTINT, "value is not an integer (or beyond 2^53)");
    *result = (int64_t)v;
    return CACHE_OK;
}

static void sd_mem_stats(cache_backend *b, cache_mem_stats *m)
{
    shdict *d = (shdict *)b;
    size_t cap = d->api.capacity(d->zone);
    size_t free_bytes = d->api.free_space ? d->api.free_space(d->zone) : 0;
    m->items = CACHE_MEM_UNKNOWN; /* the zone does not tell */
    m->bytes = cap > free_bytes ? (uint64_t)(cap - free_bytes) : 0;
    m->evictions = d->evictions;
}

static void sd_destroy(cache_backend *b)
{
    shdict *d = (shdict *)b;
    free(d->prefix);
    cache_buf_free(&d->key);
    free(d);
}

static const cache_vtable shdict_vt = {
    .name = "SharedDictCache",
    .values_checked = 1, /* sd_get validates or builds every value */
    .get = sd_get,
    .set = sd_set,
    .del = sd_del,
    .has = sd_has,
    .clear = sd_clear,
    .incr = sd_incr,
    .destroy = sd_destroy,
    .mem_stats = sd_mem_stats,
};

cache_backend *cache_shdict_create(cache_opts *opts, cache_err *err)
{
    const char *name = NULL, *prefix = NULL;
    size_t nlen = 0, plen = 0;
    void *zone = NULL;
    int evict = 1;
    int has_zone;
    if (cache_opt_str(opts, "dict", &name, &nlen, err) < 0 ||
        cache_opt_str(opts, "key_prefix", &prefix, &plen, err) < 0 ||
        cache_opt_bool(opts, "evict", &evict, err) < 0 ||
        (has_zone = cache_opt_ptr(opts, "zone", "ngx_shm_zone", &zone, err)) < 0)
        return NULL;
    /* every option is checked before the environment is: the same errors
     * in plain Lua as in nginx */
    if (cache_opts_check_unused(opts, "SharedDictCache", err) != CACHE_OK)
        return NULL;
    if (!name) {
        cache_fail(err, CACHE_EINVAL, "option 'dict': the name of a lua_shared_dict expected");
        return NULL;
    }
    shd_api api;
    if (!resolve_api(&api)) {
        cache_fail(err, CACHE_EINVAL,
                   "only inside OpenResty: lua-nginx-module's shared dict functions are not loaded");
        return NULL;
    }
    if (!has_zone || !zone) {
        cache_fail(err, CACHE_EINVAL, "option 'dict': no lua_shared_dict '%.*s' in this nginx",
                   (int)(nlen > 100 ? 100 : nlen), name);
        return NULL;
    }
    shdict *d = calloc(1, sizeof *d);
    if (!d || (plen && !(d->prefix = cache_strndup(prefix, plen)))) {
        free(d);
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    d->base.vt = &shdict_vt;
    d->api = api;
    d->zone = zone;
    d->evict = evict;
    d->plen = plen;
    cache_buf_init(&d->key);
    return &d->base;
}
