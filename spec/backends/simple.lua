local cache = require "cache"
return {
  name = "SimpleCache",
  available = function() return true end,
  new = function(opts)
    local o = { threshold = 10000 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.SimpleCache(o)
  end,
  caps = { ttl_granularity = 0.001, atomic_inc = true },
}
