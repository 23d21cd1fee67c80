--- cache: the cachelib / Flask-Caching API for Lua, on a C engine.
--
--   local cache = require "cache"
--   local c = cache.SimpleCache{ threshold = 1000, default_timeout = 60 }
--   c:set("k", { any = "value" })
--
-- The backends and their methods live in the C module cache.core; this file
-- gathers them, and adds the Cache object and the decorators
-- (cache.decorators) when they are installed.
local core = require "cache.core"

local M = {
  _VERSION = "cache 0.1.0",
  core = core,
  --- The methods every backend object has; functions added here become
  -- methods of every backend.
  methods = core.methods,
}

--- Class names of all backends (engine/registry.c), each mapped to true.
function M.backend_types()
  return core.backend_types()
end

for name in pairs(core.backend_types()) do
  M[name] = core[name]
end

--- Encodes a value the way backends store it (MessagePack bytes).
M.encode = core.encode
--- Decodes such bytes: the value and true, or nil and why.
M.decode = core.decode

-- Whether a Lua module can be found on package.path (Lua 5.1 has no
-- package.searchpath: walk the templates by hand).
local function module_exists(name)
  if package.searchpath then
    return package.searchpath(name, package.path) ~= nil
  end
  local file = name:gsub("%.", "/")
  for template in package.path:gmatch("[^;]+") do
    local f = io.open((template:gsub("%?", file)), "r")
    if f then
      f:close()
      return true
    end
  end
  return false
end

-- The OpenResty transport: network objects do their I/O with cosockets
-- where nginx allows them (lua/cache/cosocket.lua).
if module_exists("cache.cosocket") then
  require("cache.cosocket").install(M)
end

--- cache.SharedDictCache{ dict = "name", ... } (OpenResty): the dict is
-- looked up in ngx.shared here and its zone handed to the C backend
-- (backends/shdict.c). With a key_prefix the object gets a clear of its
-- own, in Lua, as only Lua can list a zone's keys. (After the transport's
-- install, which wraps every constructor: this one has no network.)
local shdict_ctor = core.SharedDictCache
if shdict_ctor then
  function M.SharedDictCache(opts)
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then return shdict_ctor(opts) end -- it names the error here
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    if o.zone ~= nil then error("SharedDictCache: unknown option 'zone'", 2) end
    local ngx = rawget(_G, "ngx")
    local shared = type(ngx) == "table" and ngx.shared
    local dict = shared and type(o.dict) == "string" and shared[o.dict] or nil
    if dict then o.zone = core.shdict_zone(dict) end
    -- called by pcall, the constructor's message has no position: the
    -- caller's is added
    local ok, obj = pcall(shdict_ctor, o)
    if not ok then error(obj, 2) end
    local prefix = o.key_prefix
    if dict and type(prefix) == "string" and prefix ~= "" then
      obj.clear = function()
        local keys = dict:get_keys(0)
        for i = 1, #keys do
          if keys[i]:sub(1, #prefix) == prefix then dict:delete(keys[i]) end
        end
        return true
      end
    end
    return obj
  end
end

if module_exists("cache.decorators") then
  require("cache.decorators").install(M)
end
if module_exists("cache.tiered") then
  require("cache.tiered").install(M)
end

return M
