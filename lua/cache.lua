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

if module_exists("cache.decorators") then
  require("cache.decorators").install(M)
end

return M
