--- cache.tiered: cache.TieredCache{ l1, l2, l1_timeout, ipc, ipc_interval }
-- (API.md §4). The tiers, the promotion and the invalidation are C
-- (engine/tiered.c); this file checks the options, picks the ipc backend
-- and gives the object its fetch method.
local core = require "cache.core"
local config = require "cache.config"
local fetch = require "cache.fetch"
local raise = config.raise
config.internal(debug.getinfo(1, "S").source)

local T = {}
local M -- the cache module, set by install

local known = { l1 = true, l2 = true, l1_timeout = true, ipc = true, ipc_interval = true }

-- In OpenResty (ngx.shared exists): where a dict name can be the ipc.
local function openresty()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and ngx.shared ~= nil
end

-- A backend object given for option k (a Cache object stands for its
-- backend).
local function tier(opts, k)
  local v = opts[k]
  if M and M.Cache and getmetatable(v) == M.Cache then v = v.cache end
  if not core.is_backend(v) then
    raise(("TieredCache: option '%s': a backend object expected, got %s"):format(k, type(v)))
  end
  return v
end

local function seconds(opts, k, default, positive)
  local v = opts[k]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < 0 or (positive and v == 0) or v == math.huge then
    raise(("TieredCache: option '%s': a %s number of seconds expected, got %s")
          :format(k, positive and "positive" or "non-negative", tostring(v)))
  end
  return v
end

function T.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    raise(("TieredCache: options table expected, got %s"):format(type(opts)))
  end
  for k in pairs(opts) do
    if not known[k] then raise(("TieredCache: unknown option '%s'"):format(tostring(k))) end
  end
  local l1, l2 = tier(opts, "l1"), tier(opts, "l2")
  if rawequal(l1, l2) then raise("TieredCache: l1 and l2 must be two backend objects") end
  local l1_timeout = seconds(opts, "l1_timeout", 5, true)
  local ipc, interval = opts.ipc, nil
  local ipc_backend
  if ipc == nil then
    -- plain Lua: a generation key in l2; OpenResty: no broadcast unless asked
    if not openresty() then ipc_backend, interval = l2, 1 end
  elseif ipc == true then
    ipc_backend, interval = l2, 1
  elseif type(ipc) == "string" then
    if not openresty() then
      raise("TieredCache: option 'ipc': a lua_shared_dict name needs OpenResty (use true or false here)")
    end
    ipc_backend, interval = M.SharedDictCache { dict = ipc }, 0
  elseif ipc ~= false then
    raise(("TieredCache: option 'ipc': a lua_shared_dict name, true or false expected, got %s"):format(type(ipc)))
  end
  interval = seconds(opts, "ipc_interval", interval or 1)
  local obj = core.tiered_open(l1, l2, ipc_backend, l1_timeout, interval)
  -- raw fields: the tiers (for the user), and fetch, which backends lack,
  -- with its state
  obj.l1, obj.l2 = l1, l2
  obj.fetch = fetch.backend_fetch
  obj._fetch = fetch.state()
  return obj
end

function T.install(module)
  M = module
  M.TieredCache = T.new
end

return T
