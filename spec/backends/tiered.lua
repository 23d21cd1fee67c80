-- TieredCache for the shared contract: a SimpleCache in front of a
-- FileSystemCache (no server needed), invalidation checked on every call.
local cache = require "cache"
local helpers = require "support.helpers"
return {
  name = "TieredCache",
  available = function() return cache.TieredCache ~= nil, "cache.tiered is not installed" end,
  new = function(opts)
    local o = { cache_dir = helpers.tmpdir("tiered"), threshold = 0 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.TieredCache { l1 = cache.SimpleCache { threshold = 10000 },
                               l2 = cache.FileSystemCache(o), ipc_interval = 0 }
  end,
  caps = { ttl_granularity = 0.001, atomic_inc = true },
}
