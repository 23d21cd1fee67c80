-- SpreadSASLMemcachedCache on the SASL memcached of spec/servers/memcached.sh
-- (started with -I 2m, so the default 1 MiB chunks fit in an item).
local cache = require "cache"
local helpers = require "support.helpers"
return {
  name = "SpreadSASLMemcachedCache",
  available = function()
    return os.getenv("CACHE_TEST_MEMCACHED_SASL") ~= nil, "memcached (SASL) not started"
  end,
  new = function(opts)
    local o = {
      servers = os.getenv("CACHE_TEST_MEMCACHED_SASL"),
      username = os.getenv("CACHE_TEST_MEMCACHED_USER"),
      password = os.getenv("CACHE_TEST_MEMCACHED_PASS"),
      key_prefix = helpers.unique("spread"),
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.SpreadSASLMemcachedCache(o)
  end,
  caps = { ttl_granularity = 1, max_value = 32 * 1048576, atomic_inc = true },
}
