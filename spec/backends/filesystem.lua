local cache = require "cache"
local helpers = require "support.helpers"
return {
  name = "FileSystemCache",
  available = function() return true end,
  new = function(opts)
    local o = { cache_dir = helpers.tmpdir("fs"), threshold = 0 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.FileSystemCache(o)
  end,
  caps = { ttl_granularity = 0.001, atomic_inc = true },
}
