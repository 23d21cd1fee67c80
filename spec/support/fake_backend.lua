--- A backend written in Lua that follows the cache contract (API.md §2),
-- for the decorator specs: values go through the real codec (so a get
-- returns a fresh copy, as every real backend does), every call is counted
-- in `calls`, and `fail = "message"` makes every call fail as a backend
-- whose server is down (nil/false plus the message, never an error).
local cache = require "cache"

local now = cache.core.monotonic or os.time
local unpack = table.unpack or unpack
local function is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v)
end

local Fake = {}
Fake.__index = Fake

local function new(opts)
  opts = opts or {}
  return setmetatable({ default_timeout = opts.default_timeout or 300,
                        data = {}, calls = {}, fail = nil }, Fake)
end

function Fake:_count(op)
  self.calls[op] = (self.calls[op] or 0) + 1
end

function Fake:_live(key)
  local e = self.data[key]
  if e and e.deadline and e.deadline <= now() then
    self.data[key] = nil
    return nil
  end
  return e
end

local function deadline(self, timeout)
  if timeout == nil then timeout = self.default_timeout end
  if timeout == 0 then return nil end
  return now() + timeout
end

function Fake:get(key)
  self:_count("get")
  if self.fail then return nil, self.fail end
  local e = self:_live(tostring(key))
  if not e then return nil end
  return (cache.decode(e.bytes))
end

function Fake:set(key, value, timeout)
  self:_count("set")
  if self.fail then return false, self.fail end
  self.data[tostring(key)] = { bytes = cache.encode(value), deadline = deadline(self, timeout),
                               timeout = timeout }
  return true
end

function Fake:add(key, value, timeout)
  self:_count("add")
  if self.fail then return false, self.fail end
  if self:_live(tostring(key)) then return false end
  self.data[tostring(key)] = { bytes = cache.encode(value), deadline = deadline(self, timeout),
                               timeout = timeout }
  return true
end

function Fake:delete(key)
  self:_count("delete")
  if self.fail then return false, self.fail end
  local existed = self:_live(tostring(key)) ~= nil
  self.data[tostring(key)] = nil
  return existed
end

function Fake:has(key)
  self:_count("has")
  if self.fail then return false, self.fail end
  return self:_live(tostring(key)) ~= nil
end

function Fake:clear()
  self:_count("clear")
  if self.fail then return false, self.fail end
  self.data = {}
  return true
end

function Fake:get_many(...)
  self:_count("get_many")
  local n = select("#", ...)
  local out = {}
  if self.fail then
    out[n + 1] = self.fail
    return unpack(out, 1, n + 1)
  end
  for i = 1, n do
    local e = self:_live(tostring((select(i, ...))))
    out[i] = e and (cache.decode(e.bytes)) or nil
  end
  return unpack(out, 1, n)
end

function Fake:get_dict(...)
  self:_count("get_dict")
  if self.fail then return nil, self.fail end
  local out = {}
  for i = 1, select("#", ...) do
    local k = tostring((select(i, ...)))
    local e = self:_live(k)
    if e then out[k] = (cache.decode(e.bytes)) end
  end
  return out
end

function Fake:set_many(mapping, timeout)
  self:_count("set_many")
  if self.fail then return false, {}, self.fail end
  local keys = {}
  for k, v in pairs(mapping) do
    self.data[tostring(k)] = { bytes = cache.encode(v), deadline = deadline(self, timeout),
                               timeout = timeout }
    keys[#keys + 1] = tostring(k)
  end
  return true, keys
end

function Fake:delete_many(...)
  self:_count("delete_many")
  if self.fail then return false, {}, self.fail end
  local keys = {}
  for i = 1, select("#", ...) do
    local k = tostring((select(i, ...)))
    if self:_live(k) then keys[#keys + 1] = k end
    self.data[k] = nil
  end
  return #keys == select("#", ...), keys
end

local function incr(self, key, delta)
  self:_count("inc")
  if self.fail then return nil, self.fail end
  key = tostring(key)
  local e = self:_live(key)
  local v = e and cache.decode(e.bytes) or 0
  if not is_integer(v) then return nil, "not an integer" end
  v = v + delta
  self.data[key] = { bytes = cache.encode(v), deadline = e and e.deadline or deadline(self, nil) }
  return v
end

function Fake:inc(key, delta) return incr(self, key, delta or 1) end
function Fake:dec(key, delta) return incr(self, key, -(delta or 1)) end
function Fake:close() end

--- The entry's timeout as given to set/set_many (for the version-key specs).
function Fake:timeout_of(key)
  local e = self.data[key]
  return e and e.timeout
end

return { new = new }
