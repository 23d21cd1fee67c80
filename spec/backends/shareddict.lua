-- SharedDictCache for the shared contract: only inside nginx, where
-- spec/shareddict_spec.lua runs the contract (spec/support/fetch_app.lua)
-- on the lua_shared_dict "contract" of spec/support/fetch_nginx.conf, each
-- object under a key prefix of its own (clear then removes only its keys).
local cache = require "cache"
local helpers = require "support.helpers"
local function dict()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and ngx.shared and ngx.shared.contract
end
return {
  name = "SharedDictCache",
  available = function()
    return dict() and true or false, "OpenResty only: spec/shareddict_spec.lua runs the contract inside nginx"
  end,
  new = function(opts)
    local o = { dict = "contract", key_prefix = helpers.unique("sd") }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.SharedDictCache(o)
  end,
  caps = { ttl_granularity = 0.001, atomic_inc = true },
}
