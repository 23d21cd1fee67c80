/*
 * simple.c - SimpleCache: an in-process cache of key bytes -> value bytes,
 * as cachelib's SimpleCache, safe for the threads of one process.
 *
 * Semantics (cachelib CL >= 0.15 unless said otherwise):
 * - An entry is live iff its deadline is 0 (never) or later than now, on the
 *   MONOTONIC clock (a wall clock step must not expire or revive entries).
 * - get/has miss on an expired entry but do not remove it; del of an expired
 *   entry still answers CACHE_OK (it was present), as cachelib.
 * - add refuses (CACHE_EXISTS) only over a live entry; an expired one is
 *   replaced (cachelib >= 0.14).
 * - incr is atomic under the lock; an existing entry keeps its expiry, a
 *   missing (or expired) one starts at 0 and gets new_ttl.
 * - threshold caps the number of stored entries (expired ones included).
 *   threshold = 0 means 500, as cachelib turns any falsy threshold into 500;
 *   a negative one is an option error. Inserting a NEW key into a full cache
 *   first evicts one entry: an expired one if there is any, else the least
 *   recently used. So there are at most `threshold` entries after any set
 *   (cachelib prunes before inserting and settles at threshold + 1).
 *   Recency is touched by get and has on a live entry, by set/add/incr
 *   (the written entry becomes the most recent); a refused add, a miss and
 *   del touch nothing.
 *
 * Design, O(1) amortised per operation (cachelib sorts the whole table on
 * every set over the threshold):
 * - A chained hash table keyed by SipHash-1-3 with a random per-cache seed
 *   (an attacker choosing keys cannot aim them at one bucket). It doubles
 *   when the entries outnumber the buckets.
 * - An intrusive doubly linked recency ring: most recent at the front, the
 *   eviction candidate at the back.
 * - Expired-first eviction through timeout groups: every entry with the same
 *   ttl belongs to one FIFO ring. Entries of one ttl are created on a
 *   monotonic clock read under the lock, so their deadlines (now + ttl) are
 *   non-decreasing in ring order and a group's head is its soonest expiry.
 *   A min-heap of the groups, keyed by head deadline, finds the soonest
 *   expiry of the whole cache in O(1) and fixes itself in O(log G), where G
 *   is the number of distinct ttls in use (usually 1: the default timeout).
 *   The heap keys are kept lazily: removing a group's head only makes its
 *   true key later, so the stored key stays a lower bound and is corrected
 *   when that group reaches the top during an eviction (each correction is
 *   paid for by an earlier removal). Unlinking an entry from its group thus
 *   needs no group pointer. Emptied groups stay (a later set with the same
 *   ttl reuses them) until they reach the top of the heap or until they
 *   outnumber the entries twice over, when one sweep frees them all
 *   (amortised over the group creations that made them).
 * - One allocation per entry: header, key and value bytes inline. The hash
 *   is not stored (a resize rehashes the keys), lengths are 32-bit, and an
 *   entry that never expires leaves its group links unused. Values or keys
 *   of 4 GiB or more are refused (CACHE_EINVAL).
 *
 * Every operation holds the cache's one mutex for its whole duration.
 */
#define _DEFAULT_SOURCE
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "codec.h"

#define DEFAULT_THRESHOLD 500
#define INITIAL_BUCKETS 16
#define INITIAL_GROUP_BUCKETS 8

/* ---- intrusive rings ------------------------------------------------------ */
typedef struct ring {
    struct ring *prev, *next;
} ring;

static void ring_init(ring *r) { r->prev = r->next = r; }

static int ring_empty(const ring *r) { return r->next == r; }

static void ring_unlink(ring *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Inserts r just after pos (at the front when pos is the sentinel). */
static void ring_insert_after(ring *pos, ring *r)
{
    r->prev = pos;
    r->next = pos->next;
    pos->next->prev = r;
    pos->next = r;
}

/* Inserts r just before pos (at the back when pos is the sentinel). */
static void ring_insert_before(ring *pos, ring *r) { ring_insert_after(pos->prev, r); }

/* Puts r where old was. */
static void ring_replace(ring *old, ring *r)
{
    r->prev = old->prev;
    r->next = old->next;
    r->prev->next = r;
    r->next->prev = r;
}

/* ---- entries and groups --------------------------------------------------- */
typedef struct entry {
    struct entry *chain; /* next in its hash bucket */
    ring lru;            /* recency ring, most recent first */
    ring exp;            /* its timeout group's ring; NULL links: no expiry */
    double deadline;     /* monotonic seconds; 0 = never */
    uint32_t klen, vlen;
    uint32_t hash;       /* low bits of the key's hash: no rehash to unlink,
                            evict or grow, and most chain misses skip memcmp */
    char data[];         /* key bytes, then value bytes */
} entry;

#define ENTRY_OF(r, field) ((entry *)(void *)((char *)(r) - offsetof(entry, field)))

typedef struct group {
    double ttl;           /* every member was stored with this ttl */
    double key;           /* heap key: a lower bound of the head's deadline */
    struct group *chain;  /* next in its map bucket */
    size_t heap_idx;
    ring members;         /* soonest deadline first */
} group;

typedef struct simple_cache {
    cache_backend base;
    pthread_mutex_t lock;
    size_t threshold;
    uint64_t seed[2];
    entry **buckets; /* nbuckets, a power of two */
    size_t nbuckets, count;
    ring lru;
    group **gbuckets; /* ttl -> group map, ngbuckets a power of two */
    size_t ngbuckets;
    group **heap; /* every group, min-heap on key; ngroups of heapcap used */
    size_t ngroups, heapcap;
} simple_cache;

static cache_str entry_key(const entry *e) { return (cache_str){e->data, e->klen}; }

static cache_str entry_value(const entry *e)
{
    return (cache_str){e->data + e->klen, e->vlen};
}

static int is_live(const entry *e, double now)
{
    return e->deadline == 0 || e->deadline > now;
}

static entry *entry_new(cache_str key, cache_str value, double deadline,
                        uint32_t hash)
{
    entry *e = malloc(offsetof(entry, data) + key.len + value.len);
    if (!e)
        return NULL;
    e->chain = NULL;
    e->lru.prev = e->lru.next = NULL;
    e->exp.prev = e->exp.next = NULL;
    e->deadline = deadline;
    e->klen = (uint32_t)key.len;
    e->vlen = (uint32_t)value.len;
    e->hash = hash;
    if (key.len)
        memcpy(e->data, key.ptr, key.len);
    if (value.len)
        memcpy(e->data + key.len, value.ptr, value.len);
    return e;
}

/* ---- hashing -------------------------------------------------------------- */
static uint64_t rotl64(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPROUND(v0, v1, v2, v3)                                       \
    do {                                                               \
        v0 += v1; v1 = rotl64(v1, 13); v1 ^= v0; v0 = rotl64(v0, 32);  \
        v2 += v3; v3 = rotl64(v3, 16); v3 ^= v2;                       \
        v0 += v3; v3 = rotl64(v3, 21); v3 ^= v0;                       \
        v2 += v1; v1 = rotl64(v1, 17); v1 ^= v2; v2 = rotl64(v2, 32);  \
    } while (0)

/* SipHash-1-3: keyed, so bucket collisions cannot be precomputed. */
static uint64_t siphash13(const uint64_t k[2], const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t v0 = k[0] ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k[0] ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k[1] ^ 0x7465646279746573ULL;
    size_t whole = n - n % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t last = (uint64_t)n << 56;
    for (size_t i = whole; i < n; i++)
        last |= (uint64_t)p[i] << (8 * (i - whole));
    v3 ^= last;
    SIPROUND(v0, v1, v2, v3);
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint32_t hash_of(const simple_cache *c, cache_str key)
{
    return (uint32_t)siphash13(c->seed, key.ptr, key.len);
}

/* Bucket arrays never reach 2^32 pointers (32 GiB), so 32 bits of the hash
 * are all a bucket index uses. */
static size_t bucket_of(uint32_t hash, size_t nbuckets)
{
    return (size_t)hash & (nbuckets - 1);
}

/* ---- the hash table ------------------------------------------------------- */
static int key_is(const entry *e, cache_str key, uint32_t hash)
{
    return e->hash == hash && e->klen == key.len &&
           memcmp(e->data, key.ptr, key.len) == 0;
}

/* The link that points at key's entry (to read, replace or unlink it), or
 * NULL when the key is absent. */
static entry **find_link_h(simple_cache *c, cache_str key, uint32_t hash)
{
    entry **link = &c->buckets[bucket_of(hash, c->nbuckets)];
    for (; *link; link = &(*link)->chain)
        if (key_is(*link, key, hash))
            return link;
    return NULL;
}

static entry **find_link(simple_cache *c, cache_str key)
{
    return find_link_h(c, key, hash_of(c, key));
}

/* The link that points at e, which is in the table. */
static entry **link_of(simple_cache *c, entry *e)
{
    entry **link = &c->buckets[bucket_of(e->hash, c->nbuckets)];
    while (*link != e)
        link = &(*link)->chain;
    return link;
}

/* Doubles the bucket array. Running out of memory here is harmless: the
 * chains just grow longer. */
static void table_grow(simple_cache *c)
{
    size_t n = c->nbuckets * 2;
    entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry *e = c->buckets[i];
        while (e) {
            entry *next = e->chain;
            size_t j = bucket_of(e->hash, n);
            e->chain = nb[j];
            nb[j] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
}

/* ---- the group heap ------------------------------------------------------- */
static void heap_place(simple_cache *c, group *g, size_t i)
{
    c->heap[i] = g;
    g->heap_idx = i;
}

static void heap_up(simple_cache *c, size_t i)
{
    group *g = c->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!(g->key < c->heap[parent]->key))
            break;
        heap_place(c, c->heap[parent], i);
        i = parent;
    }
    heap_place(c, g, i);
}

static void heap_down(simple_cache *c, size_t i)
{
    group *g = c->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= c->ngroups)
            break;
        if (child + 1 < c->ngroups &&
            c->heap[child + 1]->key < c->heap[child]->key)
            child++;
        if (!(c->heap[child]->key < g->key))
            break;
        heap_place(c, c->heap[child], i);
        i = child;
    }
    heap_place(c, g, i);
}

/* Restores the heap after g's key changed either way. */
static void heap_fix(simple_cache *c, group *g)
{
    heap_up(c, g->heap_idx);
    heap_down(c, g->heap_idx);
}

static void heap_remove(simple_cache *c, group *g)
{
    group *last = c->heap[--c->ngroups];
    if (last != g) {
        heap_place(c, last, g->heap_idx);
        heap_fix(c, last);
    }
}

/* ---- the ttl -> group map ------------------------------------------------- */
static size_t group_slot(const simple_cache *c, double ttl, size_t nbuckets)
{
    uint64_t x;
    memcpy(&x, &ttl, sizeof x);
    x ^= c->seed[1];
    /* splitmix64's finaliser spreads every bit over the bucket index */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x & (nbuckets - 1);
}

static group *group_lookup(simple_cache *c, double ttl)
{
    for (group *g = c->gbuckets[group_slot(c, ttl, c->ngbuckets)]; g; g = g->chain)
        if (g->ttl == ttl)
            return g;
    return NULL;
}

static void map_insert(simple_cache *c, group *g)
{
    group **slot = &c->gbuckets[group_slot(c, g->ttl, c->ngbuckets)];
    g->chain = *slot;
    *slot = g;
}

static void map_remove(simple_cache *c, group *g)
{
    group **link = &c->gbuckets[group_slot(c, g->ttl, c->ngbuckets)];
    while (*link != g)
        link = &(*link)->chain;
    *link = g->chain;
}

/* Doubles the map; on no memory the chains just grow longer. */
static void map_grow(simple_cache *c)
{
    size_t n = c->ngbuckets * 2;
    group **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;
    free(c->gbuckets);
    c->gbuckets = nb;
    c->ngbuckets = n;
    for (size_t i = 0; i < c->ngroups; i++)
        map_insert(c, c->heap[i]);
}

static void group_drop(simple_cache *c, group *g)
{
    heap_remove(c, g);
    map_remove(c, g);
    free(g);
}

static double head_deadline(const group *g)
{
    return ENTRY_OF(g->members.next, exp)->deadline;
}

/* Frees every empty group and rebuilds map and heap from the rest, with
 * exact keys. O(G), run when empty groups outnumber the entries. */
static void groups_sweep(simple_cache *c)
{
    size_t kept = 0;
    memset(c->gbuckets, 0, c->ngbuckets * sizeof *c->gbuckets);
    for (size_t i = 0; i < c->ngroups; i++) {
        group *g = c->heap[i];
        if (ring_empty(&g->members)) {
            free(g);
            continue;
        }
        g->key = head_deadline(g);
        heap_place(c, g, kept++);
        map_insert(c, g);
    }
    c->ngroups = kept;
    for (size_t i = kept / 2; i-- > 0;)
        heap_down(c, i);
}

/* The group of ttl, created when missing (its key then is deadline, the
 * deadline of the entry about to join it). NULL when memory runs out. */
static group *group_for(simple_cache *c, double ttl, double deadline)
{
    group *g = group_lookup(c, ttl);
    if (g)
        return g;
    if (c->ngroups >= 2 * c->count + 16)
        groups_sweep(c);
    if (c->ngroups == c->heapcap) {
        size_t cap = c->heapcap ? c->heapcap * 2 : 8;
        group **h = realloc(c->heap, cap * sizeof *h);
        if (!h)
            return NULL;
        c->heap = h;
        c->heapcap = cap;
    }
    g = malloc(sizeof *g);
    if (!g)
        return NULL;
    g->ttl = ttl;
    g->key = deadline;
    ring_init(&g->members);
    heap_place(c, g, c->ngroups++);
    heap_up(c, g->heap_idx);
    map_insert(c, g);
    if (c->ngroups > c->ngbuckets)
        map_grow(c);
    return g;
}

/* ---- eviction ------------------------------------------------------------- */

/* The entry with the soonest deadline if it has expired, else NULL. Settles
 * stale heap tops on the way (see the lazy keys above). */
static entry *expired_victim(simple_cache *c, double now)
{
    while (c->ngroups > 0) {
        group *g = c->heap[0];
        if (ring_empty(&g->members)) {
            group_drop(c, g);
            continue;
        }
        double head = head_deadline(g);
        if (head != g->key) {
            g->key = head;
            heap_fix(c, g);
            continue;
        }
        return head <= now ? ENTRY_OF(g->members.next, exp) : NULL;
    }
    return NULL;
}

/* Takes e out of the recency ring and its group (not out of the table). */
static void entry_detach(entry *e)
{
    ring_unlink(&e->lru);
    if (e->exp.next)
        ring_unlink(&e->exp);
}

/* Makes room for one new entry: an expired entry goes first, else the least
 * recently used one. */
static void evict_one(simple_cache *c, double now)
{
    entry *victim = expired_victim(c, now);
    if (!victim) {
        if (ring_empty(&c->lru))
            return;
        victim = ENTRY_OF(c->lru.prev, lru);
    }
    entry **link = link_of(c, victim);
    *link = victim->chain;
    entry_detach(victim);
    free(victim);
    c->count--;
}

static void touch(simple_cache *c, entry *e)
{
    ring_unlink(&e->lru);
    ring_insert_after(&c->lru, &e->lru);
}

/* ---- storing -------------------------------------------------------------- */
static int check_sizes(cache_str key, cache_str value, cache_err *err)
{
    if (key.len >= UINT32_MAX)
        return cache_fail(err, CACHE_EINVAL, "key too large (4 GiB or more)");
    if (value.len >= UINT32_MAX)
        return cache_fail(err, CACHE_EINVAL, "value too large (4 GiB or more)");
    return CACHE_OK;
}

static int check_ttl(double ttl, cache_err *err)
{
    if (isnan(ttl))
        return cache_fail(err, CACHE_EINVAL, "timeout is not a number");
    return CACHE_OK;
}

/* Stores key -> value with ttl, replacing the entry at link (NULL: the key
 * is new). Call with the lock held; now read under that lock, so that each
 * group's deadlines stay in order. A new key may evict one entry first; if
 * memory then runs out, that entry is lost (a cache may forget). */
static int store(simple_cache *c, entry **link, cache_str key, uint32_t hash,
                 cache_str value, double ttl, double now, cache_err *err)
{
    double deadline = cache_deadline(ttl, now);
    entry *e = entry_new(key, value, deadline, hash);
    if (!e)
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    if (!link && c->count >= c->threshold)
        evict_one(c, now);
    group *g = NULL;
    if (deadline != 0 && !(g = group_for(c, ttl, deadline))) {
        free(e);
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    }
    if (link) {
        entry *old = *link;
        e->chain = old->chain;
        *link = e;
        entry_detach(old);
        free(old);
    } else {
        entry **head = &c->buckets[bucket_of(hash, c->nbuckets)];
        e->chain = *head;
        *head = e;
        if (++c->count > c->nbuckets)
            table_grow(c);
    }
    ring_insert_after(&c->lru, &e->lru);
    if (g)
        ring_insert_before(&g->members, &e->exp);
    return CACHE_OK;
}

/* Puts e exactly where old was (table, recency, group) and frees old: for
 * an incr whose encoding changed length and which keeps its expiry. */
static void entry_swap(entry **link, entry *old, entry *e)
{
    e->chain = old->chain;
    *link = e;
    ring_replace(&old->lru, &e->lru);
    if (old->exp.next)
        ring_replace(&old->exp, &e->exp);
    free(old);
}

/* ---- the vtable ----------------------------------------------------------- */
static void lock(simple_cache *c) { pthread_mutex_lock(&c->lock); }
static void unlock(simple_cache *c) { pthread_mutex_unlock(&c->lock); }

/* get under the lock: appends a live entry's value to out. */
static int get_locked(simple_cache *c, cache_str key, double now, cache_buf *out,
                      cache_err *err)
{
    entry **link = find_link(c, key);
    if (!link || !is_live(*link, now))
        return CACHE_MISS;
    cache_str v = entry_value(*link);
    if (cache_buf_append(out, v.ptr, v.len))
        return cache_fail(err, CACHE_ENOMEM, "out of memory");
    touch(c, *link);
    return CACHE_OK;
}

static int simple_get(cache_backend *b, cache_str key, cache_buf *out,
                      cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    lock(c);
    int rc = get_locked(c, key, cache_monotonic_now(), out, err);
    unlock(c);
    return rc;
}

static int set_locked(simple_cache *c, cache_str key, cache_str value,
                      double ttl, int only_if_absent, cache_err *err)
{
    double now = cache_monotonic_now();
    uint32_t hash = hash_of(c, key);
    entry **link = find_link_h(c, key, hash);
    if (link && only_if_absent && is_live(*link, now))
        return CACHE_EXISTS;
    return store(c, link, key, hash, value, ttl, now, err);
}

static int simple_set(cache_backend *b, cache_str key, cache_str value,
                      double ttl, int only_if_absent, cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    int rc = check_sizes(key, value, err);
    if (rc == CACHE_OK)
        rc = check_ttl(ttl, err);
    if (rc != CACHE_OK)
        return rc;
    lock(c);
    rc = set_locked(c, key, value, ttl, only_if_absent, err);
    unlock(c);
    return rc;
}

static int del_locked(simple_cache *c, cache_str key)
{
    entry **link = find_link(c, key);
    if (!link)
        return CACHE_MISS;
    entry *e = *link;
    *link = e->chain;
    entry_detach(e);
    free(e);
    c->count--;
    return CACHE_OK;
}

static int simple_del(cache_backend *b, cache_str key, cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    lock(c);
    int rc = del_locked(c, key);
    unlock(c);
    return rc;
}

static int simple_has(cache_backend *b, cache_str key, cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    lock(c);
    entry **link = find_link(c, key);
    int rc = CACHE_MISS;
    if (link && is_live(*link, cache_monotonic_now())) {
        touch(c, *link);
        rc = CACHE_OK;
    }
    unlock(c);
    return rc;
}

/* Frees every entry and group and returns the arrays to their first size
 * (keeping the old ones when that allocation fails). */
static void clear_locked(simple_cache *c)
{
    while (!ring_empty(&c->lru)) {
        entry *e = ENTRY_OF(c->lru.next, lru);
        ring_unlink(&e->lru);
        free(e);
    }
    c->count = 0;
    entry **nb = calloc(INITIAL_BUCKETS, sizeof *nb);
    if (nb) {
        free(c->buckets);
        c->buckets = nb;
        c->nbuckets = INITIAL_BUCKETS;
    } else {
        memset(c->buckets, 0, c->nbuckets * sizeof *c->buckets);
    }
    for (size_t i = 0; i < c->ngroups; i++)
        free(c->heap[i]);
    c->ngroups = 0;
    memset(c->gbuckets, 0, c->ngbuckets * sizeof *c->gbuckets);
}

static int simple_clear(cache_backend *b, cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    lock(c);
    clear_locked(c);
    unlock(c);
    return CACHE_OK;
}

/* incr of a live entry: rewrite its value in place (same encoded length) or
 * swap in a new entry at the same places; the expiry stays. */
static int incr_existing(simple_cache *c, entry **link, int64_t delta,
                         int64_t *result, cache_buf *buf, cache_err *err)
{
    entry *old = *link;
    cache_str cur = entry_value(old);
    int64_t sum;
    buf->len = 0;
    int rc = cache_value_add(&cur, delta, buf, &sum, err);
    if (rc != CACHE_OK)
        return rc;
    entry *e = old;
    if (buf->len == old->vlen) {
        memcpy(old->data + old->klen, buf->data, buf->len);
    } else {
        e = entry_new(entry_key(old), (cache_str){buf->data, buf->len},
                      old->deadline, old->hash);
        if (!e)
            return cache_fail(err, CACHE_ENOMEM, "out of memory");
        entry_swap(link, old, e);
    }
    touch(c, e);
    *result = sum;
    return CACHE_OK;
}

static int simple_incr(cache_backend *b, cache_str key, int64_t delta,
                       double new_ttl, int64_t *result, cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    int rc = check_sizes(key, (cache_str){NULL, 0}, err);
    if (rc == CACHE_OK)
        rc = check_ttl(new_ttl, err);
    if (rc != CACHE_OK)
        return rc;
    cache_buf buf;
    cache_buf_init(&buf);
    lock(c);
    double now = cache_monotonic_now();
    uint32_t hash = hash_of(c, key);
    entry **link = find_link_h(c, key, hash);
    if (link && is_live(*link, now)) {
        rc = incr_existing(c, link, delta, result, &buf, err);
    } else {
        /* missing or expired: 0 + delta, stored with new_ttl */
        buf.len = 0;
        rc = cache_encode_int(delta, &buf, err);
        if (rc == CACHE_OK)
            rc = store(c, link, key, hash, (cache_str){buf.data, buf.len},
                       new_ttl, now, err);
        if (rc == CACHE_OK)
            *result = delta;
    }
    unlock(c);
    cache_buf_free(&buf);
    return rc;
}

/* The batch calls hold the lock once for the whole batch. */
static int simple_get_many(cache_backend *b, size_t n, const cache_str *keys,
                           cache_buf *out, int *status, cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    int rc = CACHE_OK;
    for (size_t i = 0; i < n; i++)
        status[i] = CACHE_MISS;
    lock(c);
    double now = cache_monotonic_now();
    for (size_t i = 0; i < n && rc == CACHE_OK; i++) {
        status[i] = get_locked(c, keys[i], now, &out[i], err);
        if (status[i] < 0)
            rc = status[i];
    }
    unlock(c);
    return rc;
}

/* As the engine's loop: every key is tried, the last failure is returned. */
static int simple_set_many(cache_backend *b, size_t n, const cache_str *keys,
                           const cache_str *values, double ttl, int *status,
                           cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    int rc = check_ttl(ttl, err);
    if (rc != CACHE_OK) {
        for (size_t i = 0; i < n; i++)
            status[i] = rc;
        return rc;
    }
    lock(c);
    for (size_t i = 0; i < n; i++) {
        status[i] = check_sizes(keys[i], values[i], err);
        if (status[i] == CACHE_OK)
            status[i] = set_locked(c, keys[i], values[i], ttl, 0, err);
        if (status[i] < 0)
            rc = status[i];
    }
    unlock(c);
    return rc;
}

static int simple_del_many(cache_backend *b, size_t n, const cache_str *keys,
                           int *status, cache_err *err)
{
    simple_cache *c = (simple_cache *)b;
    lock(c);
    for (size_t i = 0; i < n; i++)
        status[i] = del_locked(c, keys[i]);
    unlock(c);
    return CACHE_OK;
}

static void simple_destroy(cache_backend *b)
{
    simple_cache *c = (simple_cache *)b;
    clear_locked(c);
    free(c->buckets);
    free(c->gbuckets);
    free(c->heap);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static const cache_vtable simple_vt = {
    .name = "SimpleCache",
    .values_checked = 1,
    .get = simple_get,
    .set = simple_set,
    .del = simple_del,
    .has = simple_has,
    .clear = simple_clear,
    .incr = simple_incr,
    .get_many = simple_get_many,
    .set_many = simple_set_many,
    .del_many = simple_del_many,
    .destroy = simple_destroy,
};

cache_backend *cache_simple_create(cache_opts *opts, cache_err *err)
{
    int64_t threshold = DEFAULT_THRESHOLD;
    int64_t max = SIZE_MAX / 4 < INT64_MAX ? (int64_t)(SIZE_MAX / 4) : INT64_MAX;
    if (cache_opt_int(opts, "threshold", 0, max, &threshold, err) < 0)
        return NULL;
    if (threshold == 0) /* cachelib: a falsy threshold means 500 */
        threshold = DEFAULT_THRESHOLD;
    simple_cache *c = calloc(1, sizeof *c);
    if (!c) {
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    c->buckets = calloc(INITIAL_BUCKETS, sizeof *c->buckets);
    c->gbuckets = calloc(INITIAL_GROUP_BUCKETS, sizeof *c->gbuckets);
    if (!c->buckets || !c->gbuckets || pthread_mutex_init(&c->lock, NULL)) {
        free(c->buckets);
        free(c->gbuckets);
        free(c);
        cache_fail(err, CACHE_ENOMEM, "out of memory");
        return NULL;
    }
    c->base.vt = &simple_vt;
    c->threshold = (size_t)threshold;
    c->nbuckets = INITIAL_BUCKETS;
    c->ngbuckets = INITIAL_GROUP_BUCKETS;
    ring_init(&c->lru);
    cache_random_bytes(c->seed, sizeof c->seed);
    return &c->base;
}
