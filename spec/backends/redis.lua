-- RedisCache for the shared contract: a fresh key prefix per object, so each
-- starts empty without touching what other specs keep on the same server.
local helpers = require "support.helpers"
return {
  name = "RedisCache",
  available = function()
    return os.getenv("CACHE_TEST_REDIS_PORT") ~= nil, "redis not started (spec/servers/redis.sh)"
  end,
  new = function(opts)
    local cache = require "cache"
    local o = {
      host = os.getenv("CACHE_TEST_REDIS_HOST") or "127.0.0.1",
      port = tonumber(os.getenv("CACHE_TEST_REDIS_PORT")),
      -- generous: the shared test machine can be loaded, and 64 MB values
      -- (faults_spec) must not be cut off by the 1 s default
      timeout = 5,
      key_prefix = helpers.unique("redis"),
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    local c = cache.RedisCache(o)
    assert(c:clear())
    return c
  end,
  caps = { ttl_granularity = 0.001, atomic_inc = true },
}
