-- RedisSentinelCache for the shared contract: the master named by the
-- sentinels of spec/servers/redis_sentinel.sh, a fresh key prefix per object.
local helpers = require "support.helpers"
return {
  name = "RedisSentinelCache",
  available = function()
    return os.getenv("CACHE_TEST_SENTINELS") ~= nil, "sentinels not started (spec/servers/redis_sentinel.sh)"
  end,
  new = function(opts)
    local cache = require "cache"
    local o = {
      sentinels = os.getenv("CACHE_TEST_SENTINELS"),
      master = os.getenv("CACHE_TEST_SENTINEL_MASTER") or "mymaster",
      -- generous: the shared test machine can be loaded, and 64 MB values
      -- (faults_spec) must not be cut off by the 1 s default
      timeout = 5,
      key_prefix = helpers.unique("sentinel"),
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    local c = cache.RedisSentinelCache(o)
    assert(c:clear())
    return c
  end,
  caps = { ttl_granularity = 0.001, atomic_inc = true },
}
