-- spec/support/fs_worker.lua DIR SEED N THRESHOLD
-- One of several processes hammering one FileSystemCache directory (see
-- spec/faults_spec.lua): N mixed operations on 64 shared keys whose values
-- check themselves, and increments of one shared counter. Prints one line:
--   ops=N reads=R hits=H torn=T errors=E incs=I
-- torn: a value read back that is not one some process wrote whole;
-- errors: a call that failed (nil/false plus an error message).
local cache = require "cache"

local dir, seed, n, threshold = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
math.randomseed(seed)
-- timeout: incr waits for the directory lock; these workers count lost
-- updates, so a loaded machine must not turn a slow lock into a failure
local c = cache.FileSystemCache { cache_dir = dir, threshold = threshold, default_timeout = 0, timeout = 30 }

local NKEYS = 64

-- A value that proves itself whole: its key, a fill of a length and
-- character derived from the writer and step, and that length again.
local function make(key, step)
  local len = (seed * 7919 + step * 104729) % 20000
  local ch = string.char(97 + (seed + step) % 26)
  return { key = key, writer = seed, len = len, fill = ch:rep(len), list = { len, ch, key } }
end

local function whole(key, v)
  if type(v) ~= "table" then return false end
  if v.key ~= key or type(v.fill) ~= "string" or #v.fill ~= v.len then return false end
  local ch = v.fill:sub(1, 1)
  if v.len > 0 and v.fill ~= ch:rep(v.len) then return false end
  local l = v.list
  return type(l) == "table" and l[1] == v.len and l[3] == key and (v.len == 0 or l[2] == ch)
end

local reads, hits, torn, errors, incs = 0, 0, 0, 0, 0
local first_err

local function note_err(err)
  errors = errors + 1
  first_err = first_err or tostring(err)
end

local function check(key, v, err)
  reads = reads + 1
  if err then note_err(err) return end
  if v ~= nil then
    hits = hits + 1
    if not whole(key, v) then torn = torn + 1 end
  end
end

for step = 1, n do
  local key = "k" .. math.random(NKEYS)
  local op = math.random(100)
  if op <= 40 then
    check(key, c:get(key))
  elseif op <= 65 then
    local ok, err = c:set(key, make(key, step))
    if not ok then note_err(err) end
  elseif op <= 70 then
    local ok, err = c:set(key, make(key, step), 0.05) -- expires while others read
    if not ok then note_err(err) end
  elseif op <= 75 then
    local ok, err = c:add(key, make(key, step))
    if not ok and err then note_err(err) end
  elseif op <= 82 then
    local _, err = c:delete(key)
    if err then note_err(err) end
  elseif op <= 87 then
    local _, err = c:has(key)
    if err then note_err(err) end
  elseif op <= 92 then
    local k2 = "k" .. math.random(NKEYS)
    local a, b = c:get_many(key, k2)
    check(key, a)
    check(k2, b)
  else
    local v, err = c:inc("counter")
    if v == nil then note_err(err) else incs = incs + 1 end
  end
end

io.write(("ops=%d reads=%d hits=%d torn=%d errors=%d incs=%d%s\n"):format(
  n, reads, hits, torn, errors, incs, first_err and (" first_error=" .. first_err) or ""))
