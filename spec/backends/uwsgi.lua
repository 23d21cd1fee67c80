-- UWSGICache against the uWSGI that spec/servers/uwsgi.sh starts. The
-- "lazyc" cache checks expiry on every read (lazy_expire=1), so TTLs hold to
-- the second; uWSGI caches are named and shared, so `new` clears the cache
-- to hand out an empty one.
local cache = require "cache"
return {
  name = "UWSGICache",
  available = function()
    return os.getenv("CACHE_TEST_UWSGI") ~= nil, "uWSGI not started (CACHE_TEST_UWSGI unset)"
  end,
  new = function(opts)
    local o = { cache = "lazyc@" .. os.getenv("CACHE_TEST_UWSGI") }
    for k, v in pairs(opts or {}) do o[k] = v end
    local c = cache.UWSGICache(o)
    assert(c:clear())
    return c
  end,
  -- Whole-second expiry; no remote increment (inc = get + set); items up to
  -- the cache's blocksize (64 KiB by default, codec bytes included).
  caps = { ttl_granularity = 1, atomic_inc = false, max_value = 65000 },
}
