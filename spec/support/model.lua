-- Model-based random testing of the cache contract (API.md §2).
--
-- A seeded generator produces operations — every contract call, on awkward
-- keys and values, with timeouts of every kind — and runs them against a real
-- backend and against a small reference model held here in Lua, comparing
-- every result. Around the plain calls it also:
--   - forks (a true fork(2), through spec/support/forkhelper.c): the child
--     runs operations on its own share of the keys with the inherited object
--     while the parent runs operations on the rest at the same time; both
--     are checked, and what the child wrote is then expected by the parent
--     (on backends whose data is shared between processes);
--   - runs operations from __gc finalizers that fire while another call is
--     inside the C binding, on keys no other operation uses, so that the
--     order of the two does not matter to the model;
--   - pauses servers (SIGSTOP, SIGCONT after a fixed time): calls may then
--     fail, but only with a failure value and a message, and within a
--     bound; a write that failed leaves its keys unknown until they are
--     deleted again after the resume.
--
-- Entry points: M.backends() (what can be tested here), M.run_isolated(b,
-- opts) (one run in a forked child; M.run(b, opts) in this process), which
-- return a report for M.summary(report) and M.format_divergence(report, d).
local core = require "cache.core"
local helpers = require "support.helpers"

local M = {}

local unpack = table.unpack or unpack
local loadstring = loadstring or load
local now = core.monotonic
local mtype = math.type
local is_luajit = type(jit) == "table"
local maxint = math.maxinteger
local minint = math.mininteger
local ROOT = os.getenv("CACHE_ROOT") or "."

local function pack(...)
  return { n = select("#", ...), ... }
end

------------------------------------------------------------------------------
-- Values: integers, equality, printing, serialising.

-- Whether v is what the contract calls an integer. Without a separate
-- integer type (Lua 5.1, LuaJIT), numbers with no fraction in the 64-bit
-- range (int_add says when such a number is too big to be exact).
local function is_int(v)
  if type(v) ~= "number" then return false end
  if mtype then return mtype(v) == "integer" end
  return v == math.floor(v) and v >= -2 ^ 63 and v < 2 ^ 63
end

-- a + b; or nil, "overflow" when it leaves the 64-bit range; or nil,
-- "inexact" without an integer type when a number involved is beyond 2^53
-- (the backend adds exactly, the result comes back as a double).
local function int_add(a, b)
  if mtype then
    if (b > 0 and a > maxint - b) or (b < 0 and a < minint - b) then return nil, "overflow" end
    return a + b
  end
  local s = a + b
  if math.abs(a) >= 2 ^ 53 or math.abs(b) >= 2 ^ 53 or math.abs(s) >= 2 ^ 53 then
    return nil, "inexact"
  end
  return s
end

local function deq(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if a ~= a then return b ~= b end
    if mtype and mtype(a) ~= mtype(b) then return false end
    if a == 0 and b == 0 then return 1 / a == 1 / b end
    return a == b
  end
  if type(a) == "table" then
    for k, v in pairs(a) do
      if not deq(v, rawget(b, k)) then return false end
    end
    for k in pairs(b) do
      if rawget(a, k) == nil then return false end
    end
    return true
  end
  return a == b
end

local function number_text(v)
  if v ~= v then return "(0/0)" end
  if v == math.huge then return "(1/0)" end
  if v == -math.huge then return "(-1/0)" end
  if mtype and mtype(v) == "integer" then
    if v == minint then return "math.mininteger" end
    return ("%d"):format(v)
  end
  if not mtype and v == math.floor(v) and math.abs(v) < 2 ^ 63 then
    return ("%.0f"):format(v)
  end
  if v == 0 and 1 / v < 0 then return "(-0.0)" end
  local s = ("%.17g"):format(v)
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

local function quote(s, limit)
  local shown = s
  if limit and #s > limit then shown = s:sub(1, limit) end
  shown = '"' .. shown:gsub('[%c"\\\128-\255]', function(ch)
    return ("\\%03d"):format(ch:byte())
  end) .. '"'
  if shown ~= s and limit and #s > limit then
    shown = ("%s..(%d bytes)"):format(shown, #s)
  end
  return shown
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  local rank = { boolean = 1, number = 2, string = 3 }
  table.sort(ks, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return (rank[ta] or 9) < (rank[tb] or 9) end
    if ta == "boolean" then return (not a) and b end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return ks
end

-- Lua source for v: loads back to an equal value (limit = nil), or a short
-- description for messages (long strings cut at `limit` bytes).
local function ser(v, limit)
  local t = type(v)
  if t == "nil" or t == "boolean" then return tostring(v) end
  if t == "number" then return number_text(v) end
  if t == "string" then return quote(v, limit) end
  if t == "table" then
    local parts = {}
    for _, k in ipairs(sorted_keys(v)) do
      parts[#parts + 1] = "[" .. ser(k, limit) .. "]=" .. ser(v[k], limit)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "<" .. t .. ">"
end

-- A description for messages: strings cut at 40 bytes, the whole at 240.
local function show(v)
  local s = ser(v, 40)
  if #s > 240 then s = s:sub(1, 240) .. ("..(%d chars)"):format(#s) end
  return s
end

local function unser(text)
  local f = assert(loadstring("return " .. text))
  if setfenv then setfenv(f, { math = math }) end
  return f()
end

------------------------------------------------------------------------------
-- A portable seeded generator (Park-Miller): the same sequence on every Lua,
-- whatever math.random does there.

local Rng = {}
Rng.__index = Rng

function Rng.new(seed)
  local x = math.floor(seed) % 2147483646 + 1
  return setmetatable({ x = x }, Rng)
end

function Rng:next()
  self.x = self.x * 48271 % 2147483647
  return self.x
end

function Rng:int(a, b) return a + self:next() % (b - a + 1) end
function Rng:chance(p) return self:next() / 2147483647 < p end
function Rng:pick(list) return list[self:int(1, #list)] end

-- One of the names of `weights` ({name = weight, ...}), by weight.
function Rng:weighted(weights, order)
  local total = 0
  for _, name in ipairs(order) do total = total + weights[name] end
  local r = self:int(1, total)
  for _, name in ipairs(order) do
    r = r - weights[name]
    if r <= 0 then return name end
  end
  return order[#order]
end

function Rng:bytes(n)
  local b = {}
  for i = 1, n do b[i] = string.char(self:int(0, 255)) end
  return table.concat(b)
end

------------------------------------------------------------------------------
-- Awkward values.

local negzero = -1 / math.huge
local nan = math.huge - math.huge

local INTEGERS = { 0, 1, -1, 42, -7, 255, 65536, 2147483647, 2147483648, 4294967296,
  9007199254740991, 9007199254740992, -9007199254740993 }
if mtype then
  for _, v in ipairs { 9007199254740993, 4611686018427387904, 1000000000000000000,
    maxint, maxint - 1, minint, minint + 1, -4611686018427387904 } do
    INTEGERS[#INTEGERS + 1] = v
  end
end
if is_luajit then
  -- without an integer type only numbers within 2^53 are exact
  local keep = {}
  for _, v in ipairs(INTEGERS) do
    if v >= -2 ^ 53 and v <= 2 ^ 53 then keep[#keep + 1] = v end
  end
  INTEGERS = keep
end

-- Without an integer type a float with no fraction is an integer, and
-- -0.0 one that reads back as 0.
local FLOATS = { 1.5, -2.25, 0.1, 1e300, -1e-300, 5e-324, math.huge, -math.huge, nan }
if mtype then
  for _, v in ipairs { negzero, 1e16, 2.0, 0.0, 2 ^ 53, 2 ^ 63, -2 ^ 63, 1e15 + 0.0 } do
    FLOATS[#FLOATS + 1] = v
  end
end

local STRINGS = { "", "x", "hello world", "ünï€ 😀", "\0", "a\0b", "\r\n", "42", "-7",
  "1.5", "9223372036854775808", " 12", "0x10", "!", "!\192", "\255\254", "nil", "true",
  ("z"):rep(300) }

local DELTAS = { 1, -1, 2, 5, 1000, -1000, 2147483648, 9007199254740992, 0 }
if mtype then
  for _, v in ipairs { maxint, -maxint, 4611686018427387904 } do DELTAS[#DELTAS + 1] = v end
end

local function gen_scalar(rng)
  local kind = rng:int(1, 100)
  if kind <= 30 then return rng:pick(INTEGERS) end
  if kind <= 40 then return rng:int(-1000, 1000) end
  if kind <= 52 then return rng:pick(FLOATS) end
  if kind <= 58 then return kind % 2 == 0 end
  if kind <= 85 then return rng:pick(STRINGS) end
  if kind <= 97 then return rng:bytes(rng:int(0, 40)) end
  return rng:bytes(rng:int(1000, 3000))
end

local TABLE_KEYS = { "a", "b", "", "key with spaces", "ü", 0, -1, 2.5, true, false, 7 }
if mtype then TABLE_KEYS[#TABLE_KEYS + 1] = maxint end

local gen_value

local function gen_table(rng, depth)
  local t = {}
  local shape = rng:int(1, 5)
  local n = rng:int(0, 6)
  if shape == 1 then -- an array
    for i = 1, n do t[i] = gen_value(rng, depth + 1, true) end
  elseif shape == 2 then -- a map with string keys
    for i = 1, n do t["k" .. i .. rng:pick(STRINGS):sub(1, 8)] = gen_value(rng, depth + 1, true) end
  elseif shape == 3 then -- keys of every kind
    for _ = 1, n do t[rng:pick(TABLE_KEYS)] = gen_value(rng, depth + 1, true) end
  elseif shape == 4 then -- sparse
    t[1] = gen_value(rng, depth + 1, true)
    t[3] = gen_value(rng, depth + 1, true)
  end -- shape 5: empty
  return t
end

function gen_value(rng, depth, no_nil)
  depth = depth or 0
  local r = rng:int(1, 100)
  if r <= 3 and not no_nil then return nil end
  if r <= 25 and depth < 3 then return gen_table(rng, depth) end
  return gen_scalar(rng)
end

-- A value whose decoding allocates a lot (finalizer steps read these).
local function fat_value(rng)
  local t = {}
  for i = 1, 150 do
    t[i] = { i, tostring(i) .. rng:pick(STRINGS):sub(1, 4), { x = i * 1.5 } }
  end
  return t
end

------------------------------------------------------------------------------
-- Awkward keys.

local BASE_KEYS = { "a", "b", "c", "key with spaces", " lead", "trail ", "tab\tkey",
  "line\nkey", "crlf\r\nkey", "nul\0key", "\1\2\3", "del\127", "ünïcödé-ключ-鍵", "😀", "",
  "#", "#hash", "#" .. ("0"):rep(64), "12", "-0", "1.5", "%s%d%%", "key:with:colons",
  "{tag}a", "{tag}b", "a{b}c", "\255\254bin", ("L"):rep(3000), ("k"):rep(200),
  ("m"):rep(251), ("u"):rep(2000), ("u"):rep(2001), "get", "quit\r\nflush_all" }

-- Keys only finalizers use.
local FIN_KEYS = { "fin:1", "fin 2", "fin:ü", "fin\0nul" }

-- Lower-case hex SHA-256 of s (sha256sum: the test must not trust the
-- product's own digest to build the keys that probe it).
local function sha256_hex(s)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  local out = helpers.sh("sha256sum '" .. path .. "'")
  os.remove(path)
  return (assert(out:match("^(%x+)"), "sha256sum failed"))
end

------------------------------------------------------------------------------
-- The reference model.
--
-- state[key] is nil (absent), UNKNOWN, EXPIRED (absent: its timeout passed)
-- or { v = value, lo = t, hi = t }: present, and when lo is set, sure to be
-- there until lo and sure to be gone after hi (monotonic seconds); between
-- the two nothing is checked.

local UNKNOWN = setmetatable({}, { __tostring = function() return "<unknown>" end })
local EXPIRED = setmetatable({}, { __tostring = function() return "<expired>" end })

local Model = {}
Model.__index = Model

-- caps: g (timeout granularity, s), default_timeout, delete_expired (delete
-- may say true for an entry whose timeout passed, one stored with a negative
-- timeout included: cachelib's SimpleCache counts expired entries as present
-- (reference/behaviour.md §2), and README says FileSystemCache removes one
-- still on disk and says true), negative_incr_rewrites (inc/dec of a negative
-- counter may give it default_timeout: README, memcached).
function Model.new(caps)
  return setmetatable({ state = {}, caps = caps, expired_seen = 0 }, Model)
end

function Model:entry(v, timeout, t0, t1)
  if timeout == nil then timeout = self.caps.default_timeout end
  if timeout < 0 then return EXPIRED end
  if timeout == 0 then return { v = v } end
  -- A whole-second server (memcached, uWSGI) may expire an entry up to a
  -- second early or late; the margin after covers a server's clock tick
  -- that comes late on a loaded machine.
  local g = self.caps.g
  local margin = g >= 1 and 0.75 or 0.25
  return { v = v, lo = t0 + timeout - g - 0.02, hi = t1 + timeout + g + margin }
end

-- "present", "absent" or "unknown", for a call made between t0 and t1.
function Model:status(k, t0, t1)
  local e = self.state[k]
  if e == nil or e == EXPIRED then return "absent" end
  if e == UNKNOWN then return "unknown" end
  if e.lo then
    if t0 > e.hi then
      self.state[k] = EXPIRED
      self.expired_seen = self.expired_seen + 1
      return "absent"
    end
    if t1 >= e.lo then return "unknown" end
  end
  return "present"
end

------------------------------------------------------------------------------
-- Operations: how to call each, which keys it touches, and what the model
-- accepts as its result (nil, or a message saying what was expected).

local function is_fail(v, err, failed_value)
  return v == failed_value and type(err) == "string"
end

local function want(expected, got)
  return ("expected %s, got %s"):format(expected, got)
end

local function results_text(r)
  local parts = {}
  for i = 1, r.n do parts[i] = show(r[i]) end
  return table.concat(parts, ", ")
end

local OPS = {}

-- Keys an operation names (in order, duplicates kept).
local function op_keys(op)
  if op.keys then return op.keys end
  if op.mapping then return sorted_keys(op.mapping) end
  if op.key ~= nil then return { op.key } end
  return {}
end

local function op_text(op)
  local args = {}
  if op.name == "set_many" then
    local parts = {}
    for _, k in ipairs(sorted_keys(op.mapping)) do
      parts[#parts + 1] = "[" .. show(k) .. "]=" .. show(op.mapping[k])
    end
    args[1] = "{" .. table.concat(parts, ",") .. "}"
    if op.has_timeout then args[2] = show(op.timeout) end
  elseif op.keys then
    for i, k in ipairs(op.keys) do args[i] = show(k) end
  elseif op.key ~= nil then
    args[1] = show(op.key)
    if op.name == "set" or op.name == "add" then
      args[2] = show(op.value)
      if op.has_timeout then args[3] = show(op.timeout) end
    elseif (op.name == "inc" or op.name == "dec") and op.delta ~= nil then
      args[2] = show(op.delta)
    end
  end
  return ("%s(%s)"):format(op.name, table.concat(args, ", "))
end

-- Where two unequal values first differ: "" at the top, else a path such
-- as [3]["x"], with the two values found there.
local function first_diff(a, b, path)
  path = path or ""
  if type(a) == "table" and type(b) == "table" then
    for _, k in ipairs(sorted_keys(a)) do
      if not deq(a[k], b[k]) then return first_diff(a[k], b[k], path .. "[" .. show(k) .. "]") end
    end
    for _, k in ipairs(sorted_keys(b)) do
      if a[k] == nil then return path .. "[" .. show(k) .. "]", nil, b[k] end
    end
  end
  return path, a, b
end

-- Shared by get, get_many and get_dict: the value read for k is acceptable.
-- partial: a batch while a server is paused, which gives nil for the keys
-- of the paused server (memcached_spec: "the live server's hits, nil for
-- the dead one's keys"), and its error after the values.
local function check_read(model, k, got, t0, t1, in_dict, partial)
  local st = model:status(k, t0, t1)
  if st == "unknown" or (partial and got == nil) then return nil end
  local expected = nil
  if st == "present" then expected = model.state[k].v end
  if deq(expected, got) then return nil end
  local text = ("key %s: %s"):format(show(k), want(show(expected) .. (st == "absent" and
    " (absent)" or in_dict and expected == nil and " (a stored nil is not in the dict)" or ""),
    show(got)))
  local path, x, y = first_diff(expected, got)
  if path ~= "" then
    text = text .. ("; first difference at %s: %s"):format(path, want(show(x), show(y)))
  end
  return text
end

OPS.get = {
  call = function(c, op) return c:get(op.key) end,
  check = function(m, op, r, t0, t1, lenient)
    if is_fail(r[1], r[2], nil) then
      return not lenient and "unexpected failure: " .. r[2] or nil
    end
    if r[2] ~= nil then return "extra results: " .. results_text(r) end
    return check_read(m, op.key, r[1], t0, t1)
  end,
}

OPS.has = {
  call = function(c, op) return c:has(op.key) end,
  check = function(m, op, r, t0, t1, lenient)
    if is_fail(r[1], r[2], false) then
      return not lenient and "unexpected failure: " .. r[2] or nil
    end
    local st = m:status(op.key, t0, t1)
    if type(r[1]) ~= "boolean" then return want("a boolean", results_text(r)) end
    if st == "unknown" or r[1] == (st == "present") then return nil end
    return want(tostring(st == "present"), results_text(r))
  end,
}

local function write_failed(m, op)
  for _, k in ipairs(op_keys(op)) do m.state[k] = UNKNOWN end
end

OPS.set = {
  call = function(c, op)
    if op.has_timeout then return c:set(op.key, op.value, op.timeout) end
    return c:set(op.key, op.value)
  end,
  check = function(m, op, r, t0, t1, lenient)
    if is_fail(r[1], r[2], false) then
      write_failed(m, op)
      return not lenient and "unexpected failure: " .. r[2] or nil
    end
    if r[1] ~= true or r.n > 1 then
      m.state[op.key] = UNKNOWN
      return want("true", results_text(r))
    end
    m.state[op.key] = m:entry(op.value, op.timeout, t0, t1)
    return nil
  end,
}

OPS.add = {
  call = function(c, op)
    if op.has_timeout then return c:add(op.key, op.value, op.timeout) end
    return c:add(op.key, op.value)
  end,
  check = function(m, op, r, t0, t1, lenient)
    if is_fail(r[1], r[2], false) then
      write_failed(m, op)
      return not lenient and "unexpected failure: " .. r[2] or nil
    end
    local st = m:status(op.key, t0, t1)
    if type(r[1]) ~= "boolean" or r.n > 1 then
      m.state[op.key] = UNKNOWN
      return want("a boolean", results_text(r))
    end
    if st ~= "unknown" and r[1] ~= (st == "absent") then
      return want(tostring(st == "absent") .. " (key " .. st .. ")", results_text(r))
    end
    if r[1] then m.state[op.key] = m:entry(op.value, op.timeout, t0, t1) end
    return nil
  end,
}

OPS.delete = {
  call = function(c, op) return c:delete(op.key) end,
  check = function(m, op, r, t0, t1, lenient)
    if is_fail(r[1], r[2], false) then
      write_failed(m, op)
      return not lenient and "unexpected failure: " .. r[2] or nil
    end
    local st = m:status(op.key, t0, t1)
    local expired = m.state[op.key] == EXPIRED
    m.state[op.key] = nil
    if type(r[1]) ~= "boolean" or r.n > 1 then return want("a boolean", results_text(r)) end
    if st == "unknown" or r[1] == (st == "present") then return nil end
    if r[1] and expired and m.caps.delete_expired then return nil end
    return want(tostring(st == "present") .. " (key " .. st .. ")", results_text(r))
  end,
}

local function check_incr(m, op, r, t0, t1, lenient, sign)
  local delta = op.delta
  if delta == nil then delta = 1 end
  if sign < 0 then delta = -delta end
  local k = op.key
  local st = m:status(k, t0, t1)
  local e = m.state[k]
  local expected, reason -- expected number, or nil with the reason it fails
  if st == "present" then
    if is_int(e.v) then
      expected, reason = int_add(e.v, delta)
      if reason == "inexact" then st = "unknown" end
    else
      reason = "not an integer"
    end
  elseif st == "absent" then
    expected, reason = int_add(0, delta)
    if reason == "inexact" then st = "unknown" end
  end
  local got, err = r[1], r[2]
  if got == nil and type(err) == "string" and r.n == 2 then
    if st == "unknown" then
      m.state[k] = UNKNOWN
      return nil
    end
    if reason then return nil end
    if lenient then
      m.state[k] = UNKNOWN
      return nil
    end
    m.state[k] = UNKNOWN
    return want(show(expected), "failure: " .. err)
  end
  if not is_int(got) or r.n > 1 then
    m.state[k] = UNKNOWN
    return want(st == "unknown" and "an integer" or reason and "nil, err (" .. reason .. ")"
      or show(expected), results_text(r))
  end
  if st == "unknown" then
    m.state[k] = UNKNOWN
    return nil
  end
  if reason then
    m.state[k] = UNKNOWN
    return want("nil, err (" .. reason .. ")", results_text(r))
  end
  if got ~= expected then
    m.state[k] = UNKNOWN
    return want(show(expected), show(got))
  end
  if st == "present" and m.caps.negative_incr_rewrites and e.v < 0 then
    -- README: memcached before 1.6.22 sometimes refuses incr on a negative
    -- counter, which is then rewritten with default_timeout: it keeps its
    -- own expiry or gets that one
    local again = m:entry(got, nil, t0, t1)
    m.state[k] = { v = got, lo = math.min(e.lo or again.lo, again.lo), hi = e.lo and
      math.max(e.hi, again.hi) or math.huge }
  elseif st == "present" then
    m.state[k] = { v = got, lo = e.lo, hi = e.hi } -- keeps its expiry
  else
    m.state[k] = m:entry(got, nil, t0, t1)
  end
  return nil
end

OPS.inc = {
  call = function(c, op)
    if op.delta == nil then return c:inc(op.key) end
    return c:inc(op.key, op.delta)
  end,
  check = function(m, op, r, t0, t1, lenient) return check_incr(m, op, r, t0, t1, lenient, 1) end,
}

OPS.dec = {
  call = function(c, op)
    if op.delta == nil then return c:dec(op.key) end
    return c:dec(op.key, op.delta)
  end,
  check = function(m, op, r, t0, t1, lenient) return check_incr(m, op, r, t0, t1, lenient, -1) end,
}

OPS.get_many = {
  call = function(c, op) return c:get_many(unpack(op.keys, 1, #op.keys)) end,
  check = function(m, op, r, t0, t1, lenient)
    local n = #op.keys
    if r.n == n + 1 and type(r[n + 1]) == "string" then
      if not lenient then return "unexpected failure: " .. r[n + 1] end
      -- while a server is paused: the values of the others, then the error
      for i, k in ipairs(op.keys) do
        local bad = check_read(m, k, r[i], t0, t1, false, true)
        if bad then return ("result %d, %s"):format(i, bad) end
      end
      return nil
    end
    if r.n ~= n then return want(n .. " results", r.n .. ": " .. results_text(r)) end
    for i, k in ipairs(op.keys) do
      local bad = check_read(m, k, r[i], t0, t1, false, lenient)
      if bad then return ("result %d, %s"):format(i, bad) end
    end
    return nil
  end,
}

OPS.get_dict = {
  call = function(c, op) return c:get_dict(unpack(op.keys, 1, #op.keys)) end,
  check = function(m, op, r, t0, t1, lenient)
    if type(r[2]) == "string" then
      return not lenient and "unexpected failure: " .. r[2] or nil
    end
    local d = r[1]
    if type(d) ~= "table" or r.n > 1 then return want("a table", results_text(r)) end
    local asked = {}
    for _, k in ipairs(op.keys) do
      asked[k] = true
      local bad = check_read(m, k, d[k], t0, t1, true, lenient)
      if bad then return bad end
    end
    for k in pairs(d) do
      if not asked[k] then return "a key not asked for: " .. show(k) end
    end
    return nil
  end,
}

-- Sorted copies of two lists of keys are equal.
local function same_keys(a, b)
  if #a ~= #b then return false end
  local x, y = {}, {}
  for i = 1, #a do x[i], y[i] = a[i], b[i] end
  table.sort(x)
  table.sort(y)
  for i = 1, #x do
    if x[i] ~= y[i] then return false end
  end
  return true
end

local function key_list_text(list)
  if type(list) ~= "table" then return show(list) end
  local parts = {}
  for i, k in ipairs(list) do parts[i] = show(k) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

OPS.set_many = {
  call = function(c, op)
    if op.has_timeout then return c:set_many(op.mapping, op.timeout) end
    return c:set_many(op.mapping)
  end,
  check = function(m, op, r, t0, t1, lenient)
    local keys = sorted_keys(op.mapping)
    if r[1] == false and type(r[3]) == "string" then
      write_failed(m, op)
      return not lenient and "unexpected failure: " .. r[3] or nil
    end
    if lenient and r[1] == false and type(r[2]) == "table" then
      -- a batch while a server is paused: what it lists was set
      write_failed(m, op)
      for _, k in ipairs(r[2]) do
        if op.mapping[k] == nil then return "lists a key not given: " .. show(k) end
        m.state[k] = m:entry(op.mapping[k], op.timeout, t0, t1)
      end
      return nil
    end
    if r[1] ~= true or type(r[2]) ~= "table" or not same_keys(r[2], keys) then
      write_failed(m, op)
      return want("true, " .. key_list_text(keys), results_text(r) .. " " .. key_list_text(r[2]))
    end
    for _, k in ipairs(keys) do m.state[k] = m:entry(op.mapping[k], op.timeout, t0, t1) end
    return nil
  end,
}

OPS.delete_many = {
  call = function(c, op) return c:delete_many(unpack(op.keys, 1, #op.keys)) end,
  check = function(m, op, r, t0, t1, lenient)
    -- Deleted one after the other: a key given twice is deleted once.
    local must, maybe, gone = {}, {}, {}
    local expired_maybe = {}
    for _, k in ipairs(op.keys) do
      if not gone[k] then
        gone[k] = true
        local st = m:status(k, t0, t1)
        if st == "present" then must[k] = true
        elseif st == "unknown" then maybe[k] = true
        elseif m.state[k] == EXPIRED and m.caps.delete_expired then
          expired_maybe[k] = true
        end
      end
    end
    local failed = r[1] == false and type(r[3]) == "string"
    local list = r[2]
    if type(r[1]) ~= "boolean" or type(list) ~= "table" then
      write_failed(m, op)
      return want("a boolean and a list", results_text(r))
    end
    local count = {}
    for _, k in ipairs(list) do count[k] = (count[k] or 0) + 1 end
    for _, k in ipairs(op.keys) do
      local left = not count[k] and (failed or lenient and (must[k] or maybe[k]))
      m.state[k] = left and UNKNOWN or nil
    end
    if failed then return not lenient and "unexpected failure: " .. r[3] or nil end
    local bad
    for k, n in pairs(count) do
      if n > 1 then bad = "key " .. show(k) .. " listed twice" end
      if not must[k] and not maybe[k] and not expired_maybe[k] then
        bad = "key " .. show(k) .. " listed but absent"
      end
    end
    for k in pairs(must) do
      -- while a server is paused, its keys may be left (and are unknown)
      if not count[k] and not lenient then
        bad = "key " .. show(k) .. " was present but is not listed"
      end
    end
    if not bad and r[1] ~= (#list == #op.keys) then
      bad = ("all_deleted is %s with %d of %d keys deleted"):format(tostring(r[1]), #list, #op.keys)
    end
    if bad then return bad .. "; got " .. results_text(r) .. " " .. key_list_text(list) end
    return nil
  end,
}

OPS.clear = {
  call = function(c) return c:clear() end,
  check = function(m, _, r, _, _, lenient)
    if is_fail(r[1], r[2], false) then
      for k in pairs(m.state) do m.state[k] = UNKNOWN end
      m.cleared_unknown = true
      return not lenient and "unexpected failure: " .. r[2] or nil
    end
    m.state = {}
    m.cleared_unknown = false
    if r[1] ~= true or r.n > 1 then return want("true", results_text(r)) end
    return nil
  end,
}

------------------------------------------------------------------------------
-- The operation generator. What it generates depends only on the seed and
-- the key pool, never on results, so a seed replays the same sequence.

local OP_ORDER = { "get", "set", "add", "delete", "has", "inc", "dec", "get_many",
  "set_many", "delete_many", "get_dict", "clear" }
local OP_WEIGHTS = { get = 14, set = 16, add = 8, delete = 7, has = 7, inc = 8, dec = 5,
  get_many = 7, set_many = 6, delete_many = 5, get_dict = 6, clear = 1 }

local Gen = {}
Gen.__index = Gen

-- keys: the pool; hot: a few keys picked more often (so that sequences on
-- one key happen); short: whether short timeouts (that expire during the
-- run) may be generated; skip: operation names never to generate, and
-- "dup" for no key twice in one call.
function Gen.new(rng, keys, hot, short, short_ttls, skip)
  skip = skip or {}
  local weights, no_clear = {}, {}
  for name, w in pairs(OP_WEIGHTS) do
    weights[name] = skip[name] and 0 or w
    no_clear[name] = weights[name]
  end
  no_clear.clear = 0
  return setmetatable({ rng = rng, keys = keys, hot = hot, short = short,
    short_ttls = short_ttls or { 1, 2, 0.001, 0.5 }, weights = weights,
    weights_no_clear = no_clear, no_dup = skip.dup }, Gen)
end

function Gen:key(keys)
  keys = keys or self.keys
  if keys == self.keys and self.rng:chance(0.5) then return self.rng:pick(self.hot) end
  return self.rng:pick(keys)
end

function Gen:timeout()
  local rng = self.rng
  local r = rng:int(1, 100)
  if r <= 35 then return nil, false end
  if r <= 50 then return nil, true end -- explicitly nil
  if r <= 65 then return 0, true end
  if r <= 80 then
    return rng:pick { 1000, 3600.5, 2592000, 2592001, 1e10, 86400 * 365 * 50 }, true
  end
  if r <= 92 or not self.short then return rng:pick { -1, -0.001, -1e10, -2592001 }, true end
  return rng:pick(self.short_ttls), true
end

function Gen:key_list(keys, lo, hi)
  local list, seen = {}, {}
  for _ = 1, self.rng:int(lo, hi) do
    local k = self:key(keys)
    if not (self.no_dup and seen[k]) then list[#list + 1] = k end
    seen[k] = true
  end
  return list
end

-- One contract call; keys from `keys` (default: the whole pool).
function Gen:op(keys, no_clear)
  local rng = self.rng
  local name = rng:weighted(no_clear and self.weights_no_clear or self.weights, OP_ORDER)
  local op = { name = name }
  if name == "get" or name == "has" or name == "delete" then
    op.key = self:key(keys)
  elseif name == "set" or name == "add" then
    op.key = self:key(keys)
    op.value = gen_value(rng)
    op.timeout, op.has_timeout = self:timeout()
  elseif name == "inc" or name == "dec" then
    op.key = self:key(keys)
    if rng:chance(0.6) then op.delta = rng:pick(DELTAS) end
  elseif name == "get_many" or name == "get_dict" or name == "delete_many" then
    op.keys = self:key_list(keys, 0, 5)
  elseif name == "set_many" then
    op.mapping = {}
    for _ = 1, rng:int(0, 4) do op.mapping[self:key(keys)] = gen_value(rng, 0, true) end
    op.timeout, op.has_timeout = self:timeout()
  end
  return op
end

-- A short sequence on one key that reaches the interesting cases of inc:
-- an integer near a boundary, then increments across it.
function Gen:counter_ops(keys)
  local rng = self.rng
  local k = self:key(keys)
  local ops = { { name = "set", key = k, value = rng:pick(INTEGERS), has_timeout = rng:chance(0.3), timeout = 0 } }
  for _ = 1, rng:int(1, 3) do
    local op = { name = rng:chance(0.6) and "inc" or "dec", key = k }
    if rng:chance(0.7) then op.delta = rng:pick(DELTAS) end
    if self.weights[op.name] > 0 then ops[#ops + 1] = op end
  end
  ops[#ops + 1] = { name = "get", key = k }
  return ops
end

-- Writes to one key of a pair, reads from the other: keys that must stay
-- apart (hashed forms, boundaries) but a backend might map to one name.
function Gen:pair_ops(pairs_list)
  local rng = self.rng
  local p = rng:pick(pairs_list)
  local a, b = p[1], p[2]
  if rng:chance(0.5) then a, b = b, a end
  return {
    { name = "set", key = a, value = gen_value(rng, 0, true) },
    { name = "get", key = b },
    { name = "set", key = b, value = gen_value(rng, 0, true) },
    { name = "get", key = a },
    { name = "has", key = b },
    { name = "delete", key = a },
    { name = "get", key = b },
  }
end

------------------------------------------------------------------------------
-- The fork helper, compiled for the Lua that runs this.

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local forkhelper
function M.forkhelper()
  if forkhelper then return forkhelper end
  local pc = is_luajit and "luajit" or "lua" .. _VERSION:match("(%d+%.%d+)")
  local dir = os.getenv("CACHE_TEST_STATE") or "/tmp"
  local src = ROOT .. "/spec/support/forkhelper.c"
  -- named by a checksum of the source: a build of another version is not
  -- picked up
  local text = assert(read_file(src), "no " .. src)
  local sum = 0
  for i = 1, #text do sum = (sum * 31 + text:byte(i)) % 2147483647 end
  local so = ("%s/forkhelper-%s-%d.so"):format(dir, pc, sum)
  local f = io.open(so, "rb")
  if f then
    f:close()
  else
    local tmp = ("%s.%d.%d"):format(so, os.time(), math.random(1, 1e9))
    local cmd = ("cc -std=c11 -O1 -Wall -Wextra -Werror -shared -fPIC $(pkg-config --cflags %s) "
      .. "'%s' -o '%s' 2>&1 && mv -f '%s' '%s'"):format(pc, src, tmp, tmp, so)
    local out = helpers.sh(cmd)
    if not io.open(so, "rb") then error("cannot build the fork helper: " .. out) end
  end
  forkhelper = assert(package.loadlib(so, "luaopen_forkhelper"))()
  return forkhelper
end

local function pid_file(path)
  local s = path and read_file(path)
  return s and tonumber(s:match("%d+"))
end

-- The pid and its children (uWSGI's master and worker).
local function with_children(pid)
  local list = { pid }
  local s = read_file(("/proc/%d/task/%d/children"):format(pid, pid)) or ""
  for child in s:gmatch("%d+") do list[#list + 1] = tonumber(child) end
  return list
end

local function port_open(port)
  local r = os.execute(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d' 2>/dev/null"):format(port))
  return r == true or r == 0
end

-- A memcached of the run's own, a child of this process on a free port
-- below the ephemeral range: { pid, addr }.
local function start_memcached()
  local fh = M.forkhelper()
  local as_root = helpers.sh("id -u") == "0"
  for _ = 1, 5 do
    local port = tonumber(helpers.sh(ROOT .. "/spec/support/freeport.sh"))
    local argv = { "memcached", "-l", "127.0.0.1", "-p", tostring(port), "-U", "0", "-m", "16" }
    if as_root then argv[#argv + 1] = "-u"; argv[#argv + 1] = "root" end
    local log = helpers.tmpdir("model-mc") .. "/log"
    local pid = assert(fh.spawn(argv, log))
    local deadline = now() + 5
    while now() < deadline and not port_open(port) do
      if fh.wait(pid, true) then break end
      helpers.sleep(0.05)
    end
    if port_open(port) then return { pid = pid, addr = "127.0.0.1:" .. port } end
    fh.signal(pid, "KILL")
    fh.wait(pid)
  end
  error("could not start an extra memcached")
end

local function stop_child(server)
  local fh = M.forkhelper()
  fh.signal(server.pid, "CONT")
  fh.signal(server.pid, "TERM")
  local deadline = now() + 5
  while now() < deadline do
    if fh.wait(server.pid, true) then return end
    helpers.sleep(0.05)
  end
  fh.signal(server.pid, "KILL")
  fh.wait(server.pid)
end

------------------------------------------------------------------------------
-- What can be tested here: the spec descriptors of spec/backends/, with the
-- options and the knowledge the model needs.

local STATE = os.getenv("CACHE_TEST_STATE")

local function descriptor(name)
  for _, f in ipairs(helpers.backends()) do
    if f.name == name then return f end
  end
  error("no descriptor for " .. name)
end

-- family: backends of one family share servers (soak runs a family's
-- backends one after the other, families side by side).
-- shared: what a forked child writes, the parent reads.
-- pause(): pids to stop for a while, and for how long (nil: not here).
local BACKENDS = {
  { name = "SimpleCache", family = "simple", shared = false, g = 0.001, delete_expired = true,
    opts = { threshold = 100000 } },
  { name = "FileSystemCache", family = "filesystem", shared = true, g = 0.001,
    delete_expired = true, opts = { threshold = 0 } },
  { name = "RedisCache", family = "redis", shared = true, g = 0.001, op_timeout = 2,
    opts = { timeout = 2 },
    pause = function()
      local pid = STATE and pid_file(STATE .. "/servers/redis/main.pid")
      return pid and { pid }, 2.5
    end },
  { name = "RedisClusterCache", family = "redis", shared = true, g = 0.001, op_timeout = 2,
    opts = { timeout = 2 },
    -- shorter than the cluster's node timeout (2 s): no failover starts
    pause = function()
      local pid = STATE and pid_file(STATE .. "/servers/redis_cluster/n1.pid")
      return pid and { pid }, 1.2
    end },
  { name = "RedisSentinelCache", family = "redis", shared = true, g = 0.001, op_timeout = 2,
    opts = { timeout = 2 },
    -- shorter than the sentinels' down-after (1 s): no failover starts
    pause = function()
      local dir = os.getenv("CACHE_TEST_SENTINEL_DIR")
      local pid = dir and pid_file(dir .. "/master.pid")
      return pid and { pid }, 0.5
    end },
  { name = "MemcachedCache", family = "memcached", shared = true, g = 1, op_timeout = 1,
    alias = "prefix", own_server = true, negative_incr_rewrites = true,
    pause = function(ctx) return { ctx.own.pid }, 2.2 end },
  { name = "SASLMemcachedCache", family = "memcached", shared = true, g = 1, op_timeout = 1,
    alias = "prefix", negative_incr_rewrites = true,
    pause = function()
      local pid = STATE and pid_file(STATE .. "/servers/memcached/sasl.pid")
      return pid and { pid }, 2.2
    end },
  { name = "SpreadSASLMemcachedCache", family = "memcached", shared = true, g = 1,
    op_timeout = 1, opts = { chunksize = 1024 }, negative_incr_rewrites = true,
    pause = function()
      local pid = STATE and pid_file(STATE .. "/servers/memcached/sasl.pid")
      return pid and { pid }, 2.2
    end },
  { name = "UWSGICache", family = "uwsgi", shared = true, g = 1, op_timeout = 1,
    alias = "plain", opts = { timeout = 1 },
    pause = function()
      local pid = STATE and pid_file(STATE .. "/servers/uwsgi/uwsgi.pid")
      return pid and with_children(pid), 2.2
    end },
}

function M.backends()
  local list = {}
  for _, b in ipairs(BACKENDS) do
    local d = descriptor(b.name)
    local entry = {}
    for k, v in pairs(b) do entry[k] = v end
    entry.available = d.available
    entry.descriptor = d
    list[#list + 1] = entry
  end
  return list
end

------------------------------------------------------------------------------
-- The runner.

local DEFAULT_TIMEOUT = 3600

local Runner = {}
Runner.__index = Runner

function Runner:diverge(where, op, why)
  local d = {
    index = self.index, where = where, op = op and op_text(op) or "", why = why,
    history = {},
  }
  -- the last calls on the same keys and the two calls just before, oldest
  -- first
  local keys = op and op_keys(op) or {}
  local found = 0
  for i = #self.history, 1, -1 do
    local h = self.history[i]
    local related = i > #self.history - 2
    for _, k in ipairs(keys) do
      if h.keys[k] then related = true end
    end
    if related then
      table.insert(d.history, 1, h.text)
      found = found + 1
    end
    if found >= 6 then break end
  end
  self.divergences[#self.divergences + 1] = d
  if op then
    for _, k in ipairs(keys) do self.model.state[k] = UNKNOWN end
  end
end

function Runner:remember(op, ok_text)
  local keys = {}
  for _, k in ipairs(op_keys(op)) do keys[k] = true end
  local h = self.history
  h[#h + 1] = { keys = keys, text = ("#%d %s -> %s"):format(self.index, op_text(op), ok_text) }
  if #h > 200 then table.remove(h, 1) end
end

-- Runs one call and checks it. where: "" for the main sequence, else what
-- ran it ("finalizer", "forked child", "parent during fork").
function Runner:exec(op, where)
  where = where or ""
  local spec = OPS[op.name]
  if self.progress then
    self.progress:write(("#%d %s%s\n"):format(self.index, where ~= "" and "(" .. where .. ") " or "",
      op_text(op)))
    self.progress:flush()
  end
  local t0 = now()
  local was_in_call = self.in_call
  self.in_call = true
  local pre_call = self.pre_call
  if pre_call then
    self.pre_call = nil
    pre_call()
  end
  local r = pack(pcall(spec.call, self.c, op))
  self.in_call = was_in_call
  local t1 = now()
  self.ops = self.ops + 1
  if not r[1] then
    self:diverge(where, op, "raised: " .. tostring(r[2]))
    return
  end
  local res = { n = r.n - 1 }
  for i = 2, r.n do res[i - 1] = r[i] end
  local lenient = self.degraded
  local why = spec.check(self.model, op, res, t0, t1, lenient)
  local took = t1 - t0
  if not why then
    if not lenient and took > self.stall then
      why = ("took %.1f s (no server was paused)"):format(took)
    elseif lenient and took > self.fail_bound then
      why = ("took %.1f s while a server was paused (bound %.1f s)"):format(took, self.fail_bound)
    end
  end
  self:remember(op, results_text(res))
  if self.trace then
    self.trace:write(("#%d %s%s -> %s%s [%.3f..%.3f]%s\n"):format(self.index,
      where ~= "" and "(" .. where .. ") " or "", op_text(op), results_text(res),
      lenient and " (a server is paused)" or "", t0, t1, why and " DIVERGES: " .. why or ""))
    self.trace:flush()
  end
  if why then self:diverge(where, op, why) end
end

function Runner:run_ops(ops, where)
  for _, op in ipairs(ops) do
    if self:stopped() then return end
    self:exec(op, where)
  end
end

function Runner:stopped()
  return #self.divergences > 0 and not self.keep_going
end

-- Deletes every key the model does not know, until each delete succeeds.
function Runner:resync()
  local deadline = now() + 20
  for k, e in pairs(self.model.state) do
    if e == UNKNOWN then
      repeat
        local ok, err = self.c:delete(k)
        if ok ~= nil and err == nil then break end
        helpers.sleep(0.2)
      until now() > deadline
      if now() > deadline then
        self:diverge("resync", { name = "delete", key = k }, "still failing 20 s after the resume")
        return
      end
      self.model.state[k] = nil
    end
  end
end

-- A server paused (SIGSTOP) for a fixed time while calls go on; they may
-- fail then, fast. Then the keys that failed writes touched are resynced.
function Runner:pause_step()
  local pids, duration = self.backend.pause(self.ctx)
  if not pids or #pids == 0 then return end
  local fh = M.forkhelper()
  for _, pid in ipairs(pids) do fh.signal(pid, "STOP") end
  local resumer = fh.resume_after(pids, duration)
  local t_end = now() + duration
  self.degraded = true
  local n = 0
  while now() < t_end and n < 200 and not self:stopped() do
    self.index = self.index + 1
    self:exec(self.gen:op())
    n = n + 1
  end
  fh.wait(resumer)
  for _, pid in ipairs(pids) do fh.signal(pid, "CONT") end
  -- a request a paused server had already received is still carried out
  -- when it resumes: give it time before the unknown keys are rewritten
  helpers.sleep(0.5)
  self:resync()
  self.degraded = false
  self.pauses = self.pauses + 1
end

-- Calls from __gc finalizers, while a read decodes big tables in C.
function Runner:finalizer_step()
  local rng = self.rng
  local outer_keys = {}
  for i = 1, 3 do
    local k = self.gen:key()
    outer_keys[i] = k
    self.index = self.index + 1
    self:exec({ name = "set", key = k, value = fat_value(rng) })
  end
  -- writes first, so that the reads after them hit
  local fin_ops = {}
  for i, k in ipairs(FIN_KEYS) do fin_ops[i] = { name = "set", key = k, value = gen_value(rng) } end
  for i = #fin_ops + 1, 40 do fin_ops[i] = self.gen:op(FIN_KEYS, true) end
  local outer = { name = rng:pick { "get", "get", "get", "get_many", "get_dict" } }
  if outer.name == "get" then outer.key = outer_keys[1] else outer.keys = outer_keys end
  local inside, ran = 0, 0
  local runner = self
  local function finalizer(i)
    return function()
      ran = ran + 1
      -- the outer call is still inside the binding (a finalizer's own
      -- call cannot nest: Lua runs no finalizer from a finalizer)
      if runner.in_call then inside = inside + 1 end
      local ok, err = pcall(runner.exec, runner, fin_ops[i], "finalizer")
      if not ok then runner:diverge("finalizer", fin_ops[i], "raised: " .. tostring(err)) end
    end
  end
  -- The garbage is made with the collector stopped, and it restarts just
  -- before the outer call: the first allocation inside the binding then
  -- runs a collection that calls the finalizers (Lua 5.4: a young
  -- collection calls all pending finalizers; elsewhere one step is made
  -- big enough to finish a cycle).
  collectgarbage("collect")
  local restore
  if _VERSION == "Lua 5.4" then
    local mode = collectgarbage("generational", 1, 100)
    restore = function() collectgarbage(mode) end
  else
    local pause = collectgarbage("setpause", 0)
    local stepmul = collectgarbage("setstepmul", 1000000)
    restore = function()
      collectgarbage("setpause", pause)
      collectgarbage("setstepmul", stepmul)
    end
  end
  collectgarbage("stop")
  for i = 1, #fin_ops do
    if newproxy then
      local p = newproxy(true)
      getmetatable(p).__gc = finalizer(i)
    else
      setmetatable({}, { __gc = finalizer(i) })
    end
  end
  self.index = self.index + 1
  self.pre_call = function() collectgarbage("restart") end
  self:exec(outer)
  self.pre_call = nil
  collectgarbage("restart")
  restore()
  collectgarbage("collect")
  collectgarbage("collect")
  self.fin_ran = self.fin_ran + ran
  self.fin_inside = self.fin_inside + inside
end

-- The state of `keys` as Lua source, for a forked child to hand back.
local function state_text(model, keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local e = model.state[k]
    local v
    if e == nil then v = "nil"
    elseif e == UNKNOWN then v = '"unknown"'
    elseif e == EXPIRED then v = '"expired"'
    else
      v = ("{v=%s,lo=%s,hi=%s}"):format(ser(e.v), e.lo and number_text(e.lo) or "nil",
        e.hi and number_text(e.hi) or "nil")
    end
    parts[#parts + 1] = "{" .. ser(k) .. "," .. v .. "}"
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function divergences_text(list)
  local parts = {}
  for i, d in ipairs(list) do
    parts[i] = ("{index=%d,where=%s,op=%s,why=%s,history=%s}"):format(d.index, ser(d.where),
      ser(d.op), ser(d.why), ser(d.history))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- A true fork: the child runs calls on its keys with the inherited object
-- while the parent runs calls on the others, at the same time.
function Runner:fork_step()
  local fh = M.forkhelper()
  local child_keys, parent_keys = {}, {}
  for i, k in ipairs(self.keys) do
    if i % 2 == 0 then child_keys[#child_keys + 1] = k else parent_keys[#parent_keys + 1] = k end
  end
  local child_ops, parent_ops = {}, {}
  for i = 1, 25 do
    child_ops[i] = self.gen:op(child_keys, true)
    parent_ops[i] = self.gen:op(parent_keys, true)
  end
  local report = ("%s/model-fork-%d-%d"):format(STATE or "/tmp", fh.getpid(), self.index)
  local base = self.index
  local pid = assert(fh.fork())
  if pid == 0 then
    local ok, err = pcall(function()
      self.divergences = {}
      self.keep_going = false
      for i, op in ipairs(child_ops) do
        self.index = base + i
        self:exec(op, "forked child")
        if #self.divergences > 0 then break end
      end
      local f = assert(io.open(report .. ".tmp", "wb"))
      f:write("return {divergences=", divergences_text(self.divergences), ",state=",
        state_text(self.model, child_keys), ",ops=", tostring(self.ops), "}")
      f:close()
      assert(os.rename(report .. ".tmp", report))
    end)
    if not ok then
      local f = io.open(report, "wb")
      if f then
        f:write("return {error=", ser(tostring(err)), "}")
        f:close()
      end
    end
    fh.exit(0)
  end
  for i, op in ipairs(parent_ops) do
    if self:stopped() then break end
    self.index = base + i
    self:exec(op, "parent while a forked child runs")
  end
  local deadline = now() + 60
  local how, code
  repeat
    how, code = fh.wait(pid, true)
    if not how then helpers.sleep(0.02) end
  until how or now() > deadline
  if not how then
    fh.signal(pid, "KILL")
    fh.wait(pid)
    self:diverge("forked child", nil, "did not finish within 60 s")
    return
  end
  self.index = base + #child_ops
  local text = read_file(report)
  os.remove(report)
  if how ~= "exited" or code ~= 0 or not text then
    self:diverge("forked child", nil, ("ended %s %s without a report"):format(how, tostring(code)))
    return
  end
  local got = unser(text:gsub("^return ", ""))
  if got.error then
    self:diverge("forked child", nil, "raised: " .. got.error)
    return
  end
  for _, d in ipairs(got.divergences) do self.divergences[#self.divergences + 1] = d end
  self.ops = math.max(self.ops, got.ops)
  if self.backend.shared then
    for _, pair in ipairs(got.state) do
      local k, e = pair[1], pair[2]
      if e == "unknown" then e = UNKNOWN elseif e == "expired" then e = EXPIRED end
      self.model.state[k] = e
    end
  end
  self.forks = self.forks + 1
end

-- Writes a few keys with short timeouts, for a later expiry_step to see
-- expire (with whatever other calls do to them in between).
function Runner:expiry_set_step()
  local rng, gen = self.rng, self.gen
  -- from the whole pool: the hot keys would be overwritten before they expire
  local function key() return rng:pick(self.keys) end
  local ops = {}
  for i = 1, 4 do
    ops[i] = { name = "set", key = key(), value = gen_value(rng), has_timeout = true,
      timeout = rng:pick(gen.short_ttls) }
    if i == 1 then ops[i].value = rng:int(-1000, 1000) end -- for inc, which keeps expiry
  end
  ops[5] = { name = "add", key = key(), value = gen_value(rng), has_timeout = true,
    timeout = rng:pick(gen.short_ttls) }
  ops[6] = { name = "set_many", mapping = { [key()] = gen_value(rng, 0, true) },
    has_timeout = true, timeout = rng:pick(gen.short_ttls) }
  for _, op in ipairs(ops) do
    if self:stopped() then return end
    self.index = self.index + 1
    self:exec(op)
  end
end

-- Counts on short timeouts (inc and dec keep an entry's expiry), then
-- waits until every pending timeout has passed its window (bounded) and
-- reads those keys.
function Runner:expiry_step()
  local rng = self.rng
  -- long enough to be surely there when the increment runs (a whole-second
  -- server may expire an entry up to a second early)
  local ttl = self.backend.g >= 1 and 2 or 0.5
  for _ = 1, 2 do
    local k = rng:pick(self.keys)
    local ops = {
      { name = "set", key = k, value = rng:int(-1000, 1000), has_timeout = true, timeout = ttl },
      { name = rng:chance(0.5) and "inc" or "dec", key = k, delta = rng:int(1, 9) },
    }
    if self.gen.weights[ops[2].name] == 0 then ops[2] = nil end
    for _, op in ipairs(ops) do
      if self:stopped() then return end
      self.index = self.index + 1
      self:exec(op)
    end
  end
  local latest = 0
  local keys = {}
  for k, e in pairs(self.model.state) do
    if type(e) == "table" and e.hi and e.hi - now() < 4 then
      latest = math.max(latest, e.hi)
      keys[#keys + 1] = k
    end
  end
  if #keys == 0 then return end
  local wait = latest - now() + 0.05
  if wait > 0 then helpers.sleep(wait) end
  for _, k in ipairs(keys) do
    self.index = self.index + 1
    self:exec({ name = self.rng:pick { "get", "has", "add" }, key = k, value = 1 })
  end
end

-- The key pool of a backend: the common awkward keys, plus for backends
-- that store some keys as "#" + SHA-256 the literal keys that spell those
-- names.
local function key_pool(b, prefix, no_alias)
  local keys, alias_pairs = {}, {}
  for i, k in ipairs(BASE_KEYS) do keys[i] = k end
  local alias = not no_alias and b.alias
  if alias == "prefix" then
    -- memcached: keys it cannot send as they are become
    -- prefix .. "#" .. sha256(prefix .. key)
    for _, t in ipairs { "key with spaces", ("L"):rep(3000) } do
      alias_pairs[#alias_pairs + 1] = { t, "#" .. sha256_hex(prefix .. t) }
    end
  elseif alias == "plain" then
    -- uWSGI: the empty key and keys over 2000 bytes become "#" .. sha256(key)
    for _, t in ipairs { "", ("L"):rep(3000) } do
      alias_pairs[#alias_pairs + 1] = { t, "#" .. sha256_hex(t) }
    end
  end
  for _, p in ipairs(alias_pairs) do keys[#keys + 1] = p[2] end
  -- boundaries that must stay distinct everywhere
  alias_pairs[#alias_pairs + 1] = { ("u"):rep(2000), ("u"):rep(2001) }
  alias_pairs[#alias_pairs + 1] = { "a", "a " }
  alias_pairs[#alias_pairs + 1] = { "nul\0key", "nul" }
  keys[#keys + 1] = "a "
  keys[#keys + 1] = "nul"
  return keys, alias_pairs
end

-- opts: seed, ops (a count) or seconds, short (short timeouts; short_ttls:
-- which), pause,
-- fork, finalizers (counts of those steps; 0 disables), keep_going, skip
-- (a set of what to leave out, to look past a known defect: alias, fork,
-- finalizer, pause, short, dup, or the name of an operation).
-- ctx: what M.prepare(b) made (made and removed here when not given).
function M.run(b, opts, ctx)
  local seed = opts.seed
  local rng = Rng.new(seed)
  local own_ctx = not ctx
  ctx = ctx or M.prepare(b)
  local report = { backend = b.name, seed = seed, ops = 0, divergences = {} }
  local ok, err = pcall(function()
    local o = { default_timeout = DEFAULT_TIMEOUT }
    for k, v in pairs(b.opts or {}) do o[k] = v end
    if b.own_server then
      o.servers = { os.getenv("CACHE_TEST_MEMCACHED"), os.getenv("CACHE_TEST_MEMCACHED2"), ctx.own.addr }
    end
    if b.name ~= "UWSGICache" and b.name ~= "SimpleCache" and b.name ~= "FileSystemCache" then
      -- from the seed and the backend alone, so that a replay names the
      -- same keys (each run starts with clear())
      o.key_prefix = ("model:%d:%s:"):format(seed, (b.name:gsub("[a-z]", "")))
    end
    local c = b.descriptor.new(o)
    assert(c:clear())
    local skip = opts.skip or {}
    local keys, alias_pairs = key_pool(b, o.key_prefix or "", skip.alias)
    local hot = { "a", "b" }
    for _, p in ipairs(alias_pairs) do hot[#hot + 1] = p[1]; hot[#hot + 1] = p[2] end
    for _ = 1, 4 do hot[#hot + 1] = rng:pick(keys) end
    local self = setmetatable({
      backend = b, ctx = ctx, c = c, rng = rng, keys = keys,
      gen = Gen.new(rng, keys, hot, opts.short and not skip.short, opts.short_ttls, skip),
      model = Model.new { g = b.g, default_timeout = DEFAULT_TIMEOUT, delete_expired = b.delete_expired,
        negative_incr_rewrites = b.negative_incr_rewrites },
      divergences = report.divergences, history = {}, index = 0, ops = 0,
      degraded = false, keep_going = opts.keep_going,
      stall = opts.stall or 5, fail_bound = (b.op_timeout or 1) * 2 + 1.5,
      fin_ran = 0, fin_inside = 0, forks = 0, pauses = 0, progress = opts.progress,
      trace = opts.trace and assert(io.open(opts.trace, "ab")),
    }, Runner)
    report.runner = self
    -- the special steps: in a counted run spread evenly at places fixed by
    -- the count, in a timed run one every 150 steps, chosen by the seed
    local budget = opts.ops or math.huge
    local deadline = opts.seconds and now() + opts.seconds or math.huge
    local can_pause = b.pause and (opts.pause or 0) > 0
    local specials = {}
    local function plan(kind, count)
      for _ = 1, count or 0 do specials[#specials + 1] = kind end
    end
    local short = opts.short and not skip.short
    can_pause = can_pause and not skip.pause
    if short then plan("expiry_set", 1) end
    if not skip.fork then plan("fork", opts.fork) end
    if not skip.finalizer then plan("finalizer", opts.finalizers) end
    -- a pause lets the short timeouts written before it pass: the expiry
    -- step after it then waits little
    if can_pause then plan("pause", opts.pause) end
    if short then plan("expiry", opts.expiry or 1) end
    local timed_kinds = { "pair", "counter" }
    for _, kind in ipairs { "fork", "finalizer" } do
      if not skip[kind] then timed_kinds[#timed_kinds + 1] = kind end
    end
    if can_pause then timed_kinds[#timed_kinds + 1] = "pause" end
    if short then timed_kinds[#timed_kinds + 1] = "expiry" end
    local step, next_special = 0, 1
    local function special_due()
      if opts.ops then
        local at = math.floor(opts.ops * next_special / (#specials + 1))
        if specials[next_special] and self.index >= at then
          next_special = next_special + 1
          return specials[next_special - 1]
        end
        return nil
      end
      if step % 150 == 0 then return rng:pick(timed_kinds) end
      return nil
    end
    while not self:stopped() and self.index < budget and now() < deadline do
      step = step + 1
      local kind = special_due()
      if not kind then
        kind = step % 17 == 0 and "pair" or step % 11 == 0 and "counter" or "op"
      end
      if kind == "fork" then self:fork_step()
      elseif kind == "finalizer" then self:finalizer_step()
      elseif kind == "pause" then self:pause_step()
      elseif kind == "expiry_set" then self:expiry_set_step()
      elseif kind == "expiry" then
        if not opts.ops then self:expiry_set_step() end
        self:expiry_step()
      elseif kind == "pair" or kind == "counter" then
        local ops = kind == "pair" and self.gen:pair_ops(alias_pairs) or self.gen:counter_ops()
        for _, op in ipairs(ops) do
          if self:stopped() then break end
          self.index = self.index + 1
          self:exec(op)
        end
      else
        self.index = self.index + 1
        self:exec(self.gen:op())
      end
    end
    report.ops = self.ops
    report.fin_ran, report.fin_inside = self.fin_ran, self.fin_inside
    report.forks, report.pauses = self.forks, self.pauses
    report.expired = self.model.expired_seen
    if not self:stopped() then c:clear() end
  end)
  if own_ctx then M.finish(ctx) end
  if not ok then
    report.divergences[#report.divergences + 1] = {
      index = report.runner and report.runner.index or 0, where = "runner", op = "",
      why = "the run raised: " .. tostring(err), history = {},
    }
  end
  report.runner = nil
  return report
end

-- What a backend's runs need beyond its descriptor: the pool's own
-- memcached.
function M.prepare(b)
  local ctx = {}
  if b.own_server then ctx.own = start_memcached() end
  return ctx
end

function M.finish(ctx)
  if ctx.own then stop_child(ctx.own) end
  ctx.own = nil
end

local function report_text(r)
  return ("return {backend=%s,seed=%s,ops=%d,fin_ran=%d,fin_inside=%d,forks=%d,pauses=%d,expired=%d,"
    .. "divergences=%s}"):format(ser(r.backend), number_text(r.seed), r.ops or 0, r.fin_ran or 0,
      r.fin_inside or 0, r.forks or 0, r.pauses or 0, r.expired or 0, divergences_text(r.divergences))
end

local function last_line(path)
  local text = read_file(path) or ""
  local line = text:match("([^\n]*)\n$") or text:match("([^\n]*)$") or ""
  return line
end

-- M.run in a forked child, so that a crash (a finalizer that corrupts the
-- binding's buffer can make it segfault) or a hang is reported as a
-- divergence of this backend instead of taking the whole spec run down.
function M.run_isolated(b, opts)
  local fh = M.forkhelper()
  local ctx = M.prepare(b)
  local base = ("%s/model-run-%d-%s"):format(STATE or "/tmp", fh.getpid(), b.name)
  local progress, result = base .. ".progress", base .. ".report"
  os.remove(result)
  local pid = assert(fh.fork())
  if pid == 0 then
    local ok, err = pcall(function()
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.progress = assert(io.open(progress, "wb"))
      local r = M.run(b, o, ctx)
      o.progress:close()
      local f = assert(io.open(result .. ".tmp", "wb"))
      f:write(report_text(r))
      f:close()
      assert(os.rename(result .. ".tmp", result))
    end)
    if not ok then
      local f = io.open(result, "wb")
      if f then
        f:write(report_text { backend = b.name, seed = opts.seed, divergences = {
          { index = 0, where = "runner", op = "", why = "raised: " .. tostring(err), history = {} } } })
        f:close()
      end
    end
    fh.exit(0)
  end
  local limit = (opts.seconds or 0) + (opts.ops and 300 or 120)
  local deadline = now() + limit
  local how, code
  repeat
    how, code = fh.wait(pid, true)
    if not how then helpers.sleep(0.05) end
  until how or now() > deadline
  local report
  if not how then
    fh.signal(pid, "KILL")
    fh.wait(pid)
    report = { backend = b.name, seed = opts.seed, ops = 0, divergences = {
      { index = 0, where = "runner", op = last_line(progress),
        why = ("no result within %d s: hung in this call"):format(limit), history = {} } } }
  else
    local text = read_file(result)
    if how ~= "exited" or code ~= 0 or not text then
      report = { backend = b.name, seed = opts.seed, ops = 0, divergences = {
        { index = 0, where = "runner", op = last_line(progress),
          why = ("the run %s %d (a crash) in this call"):format(how, code), history = {} } } }
    else
      report = unser(text:gsub("^return ", ""))
    end
  end
  M.finish(ctx)
  os.remove(progress)
  os.remove(result)
  return report
end

function M.format_divergence(report, d)
  local lines = {
    ("seed %d, backend %s, op #%d%s: %s"):format(report.seed, report.backend, d.index,
      d.where ~= "" and " (" .. d.where .. ")" or "", d.op),
    "  " .. d.why,
  }
  if #d.history > 0 then
    lines[#lines + 1] = "  earlier calls (on these keys, and the last two):"
    for _, h in ipairs(d.history) do lines[#lines + 1] = "    " .. h end
  end
  lines[#lines + 1] = ("  replay: CACHE_MODEL_SEED=%d CACHE_MODEL_ONLY=%s"):format(report.seed, report.backend)
  return table.concat(lines, "\n")
end

function M.summary(report)
  return ("%s: %d ops, %d divergences (seed %d; %d forks, %d pauses, %d finalizer calls, %d inside "
    .. "a call, %d entries seen expired)"):format(report.backend, report.ops, #report.divergences,
      report.seed, report.forks or 0, report.pauses or 0, report.fin_ran or 0, report.fin_inside or 0,
      report.expired or 0)
end

return M
