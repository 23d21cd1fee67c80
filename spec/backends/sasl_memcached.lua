-- SASLMemcachedCache on the SASL memcached of spec/servers/memcached.sh.
local cache = require "cache"
local helpers = require "support.helpers"
return {
  name = "SASLMemcachedCache",
  available = function()
    return os.getenv("CACHE_TEST_MEMCACHED_SASL") ~= nil, "memcached (SASL) not started"
  end,
  new = function(opts)
    local o = {
      servers = os.getenv("CACHE_TEST_MEMCACHED_SASL"),
      username = os.getenv("CACHE_TEST_MEMCACHED_USER"),
      password = os.getenv("CACHE_TEST_MEMCACHED_PASS"),
      key_prefix = helpers.unique("sasl"),
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.SASLMemcachedCache(o)
  end,
  caps = { ttl_granularity = 1, max_value = 1900000, atomic_inc = true },
}
