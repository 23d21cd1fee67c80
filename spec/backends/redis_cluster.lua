-- RedisClusterCache for the shared contract: the 3-master cluster of
-- spec/servers/redis_cluster.sh, a fresh key prefix per object.
local helpers = require "support.helpers"
return {
  name = "RedisClusterCache",
  available = function()
    return os.getenv("CACHE_TEST_REDIS_CLUSTER") ~= nil, "cluster not started (spec/servers/redis_cluster.sh)"
  end,
  new = function(opts)
    local cache = require "cache"
    local o = {
      cluster = os.getenv("CACHE_TEST_REDIS_CLUSTER"),
      -- generous: the shared test machine can be loaded, and 64 MB values
      -- (faults_spec) must not be cut off by the 1 s default
      timeout = 5,
      key_prefix = helpers.unique("cluster"),
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    local c = cache.RedisClusterCache(o)
    assert(c:clear())
    return c
  end,
  caps = { ttl_granularity = 0.001, atomic_inc = true },
}
