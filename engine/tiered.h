/*
 * tiered.h - TieredCache: a backend made of two backends, an in-process
 * tier (l1) in front of a shared one (l2), behind the same vtable.
 *
 * Reads try l1, then l2, promoting what l2 had into l1 for min(l1_timeout,
 * the entry's remaining time) (l1_timeout when that is unknown: a plain
 * value, or an envelope stored without end). Writes, deletes and clear go
 * to l2, then to l1. Staleness of l1 is bounded by l1_timeout; besides,
 * other processes' l1 copies are invalidated through a generation counter
 * (TIERED_GENERATION_KEY) kept in an ipc backend (l2 itself, or in
 * OpenResty a SharedDictCache every worker shares): every write bumps it,
 * and a tier that sees it change (checked at most every ipc_interval
 * seconds; 0 = on every call) clears its l1. l1 must therefore be this
 * TieredCache's own.
 */
#ifndef CACHE_ENGINE_TIERED_H
#define CACHE_ENGINE_TIERED_H

#include "cache.h"

#define TIERED_GENERATION_KEY "cache.tiered.generation"

/* A new TieredCache owning a reference to l1, l2 and ipc (which may be NULL:
 * no invalidation of other processes). CACHE_EINVAL for bad timings. */
cache_backend *cache_tiered_open(cache_backend *l1, cache_backend *l2,
                                 cache_backend *ipc, double l1_timeout,
                                 double ipc_interval, cache_err *err);

/* 1 when b is a TieredCache. */
int cache_is_tiered(const cache_backend *b);

/* For fetch (fetch.c): the tiers, after the generation check that every
 * call of the TieredCache makes. */
void cache_tiered_tiers(cache_backend *b, cache_backend **l1,
                        cache_backend **l2);
/* Copies an entry read from l2 (codec bytes, an envelope or a plain value)
 * into l1 for min(l1_timeout, its remaining time). */
void cache_tiered_promote(cache_backend *b, cache_str key, cache_str bytes);

#endif
