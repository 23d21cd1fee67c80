-- MemcachedCache on the pool of two plain memcached of spec/servers/memcached.sh.
-- Every `new` gets a key_prefix of its own, so it starts empty.
local cache = require "cache"
local helpers = require "support.helpers"
return {
  name = "MemcachedCache",
  available = function()
    return os.getenv("CACHE_TEST_MEMCACHED") ~= nil, "memcached not started"
  end,
  new = function(opts)
    local o = {
      servers = { os.getenv("CACHE_TEST_MEMCACHED"), os.getenv("CACHE_TEST_MEMCACHED2") },
      key_prefix = helpers.unique("mc"),
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.MemcachedCache(o)
  end,
  caps = { ttl_granularity = 1, max_value = 1000000, atomic_inc = true },
}
