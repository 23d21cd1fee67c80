-- MemcachedCache through `cache` beside a raw text-protocol loop on the same
-- memcached in the same run (bench/memcached.sh starts the server, runs
-- bench/memcached_raw, then this file).
--
--   lua5.4 bench/memcached.lua PORT
-- with the baselines in the environment (operations, or keys, per second):
--   BASE_GET, BASE_SET    one "get" / "set" per round trip (text protocol)
--   BASE_MGET100          "get k1 .. k100", counted in keys per second
--   LIB_GET, LIB_SET, LIB_MGET100   the same through bare libmemcached
--                         (binary protocol), as a second reference
--
-- Prints rows "name|ops/s|p50 ns|p99 ns|baseline|ratio" (the format of
-- bench/redis.lua) on stdout; ratio = ours / baseline.
local cache = require "cache"
local now = cache.core.monotonic

local PORT = assert(tonumber(arg[1]), "usage: memcached.lua PORT")
local REPS = tonumber(os.getenv("BENCH_REPS")) or 3
local SCALE = tonumber(os.getenv("BENCH_SCALE")) or 1
local BATCH = 100

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function percentile(t, p)
  table.sort(t)
  return t[math.max(1, math.ceil(#t * p))]
end

-- op(i) n times per repetition; ops/s (median of REPS) and the p50 / p99 of
-- the time per operation, measured over groups of BATCH calls (ns).
local function measure(n, op, per_op)
  per_op = per_op or 1
  local rates, lat = {}, {}
  for _ = 1, REPS do
    local start = now()
    local i = 0
    while i < n do
      local b0 = now()
      for j = i + 1, i + BATCH do op(j) end
      lat[#lat + 1] = (now() - b0) / (BATCH * per_op) * 1e9
      i = i + BATCH
    end
    rates[#rates + 1] = n * per_op / (now() - start)
  end
  return median(rates), percentile(lat, 0.5), percentile(lat, 0.99)
end

local rows = {}
local function base_row(name, env)
  local v = tonumber(os.getenv(env) or "")
  if v then rows[#rows + 1] = { name = name, ops = v } end
end
local function row(name, baseline, ...)
  local ops, p50, p99 = measure(...)
  rows[#rows + 1] = { name = name, ops = ops, p50 = p50, p99 = p99, baseline = baseline }
end

base_row("raw text get", "BASE_GET")
base_row("raw text set", "BASE_SET")
base_row("raw text get x100 keys", "BASE_MGET100")
base_row("libmemcached binary get", "LIB_GET")
base_row("libmemcached binary set", "LIB_SET")
base_row("libmemcached binary mget x100 keys", "LIB_MGET100")

local c = cache.MemcachedCache { servers = { "127.0.0.1:" .. PORT }, key_prefix = "bench:" }
local KEYS = 1000
local names = {}
for i = 1, KEYS do names[i] = ("key:%06d"):format(i) end
for i = 1, KEYS do assert(c:set(names[i], "xxx", 0)) end -- 3 bytes, as the raw loop

local N = 20000 * SCALE
row("MemcachedCache get", "raw text get", N, function(i) c:get(names[i % KEYS + 1]) end)
row("MemcachedCache set", "raw text set", N, function(i) c:set(names[i % KEYS + 1], "xxx", 0) end)
local batch, map = {}, {}
for i = 1, 100 do batch[i] = names[i]; map[names[i]] = "xxx" end
local unpack = table.unpack
row("MemcachedCache get_many(100) keys", "raw text get x100 keys", 1000 * SCALE,
  function() c:get_many(unpack(batch)) end, 100)
-- without a baseline: the batches and inc
row("MemcachedCache set_many(100) keys", nil, 500 * SCALE, function() c:set_many(map, 0) end, 100)
row("MemcachedCache delete_many(100) absent keys", nil, 200 * SCALE, function() c:delete_many(unpack(batch)) end, 100)
row("MemcachedCache inc", nil, N // 2, function() c:inc("counter") end)

local base = {}
for _, r in ipairs(rows) do
  if not r.baseline then base[r.name] = r.ops end
end
-- the same rows once more against bare libmemcached
local lib = { ["raw text get"] = "libmemcached binary get", ["raw text set"] = "libmemcached binary set",
              ["raw text get x100 keys"] = "libmemcached binary mget x100 keys" }
local n_rows = #rows
for i = 1, n_rows do
  local r = rows[i]
  if r.baseline and lib[r.baseline] and base[lib[r.baseline]] then
    rows[#rows + 1] = { name = r.name .. " (vs libmemcached)", ops = r.ops, p50 = r.p50, p99 = r.p99,
                        baseline = lib[r.baseline] }
  end
end
for _, r in ipairs(rows) do
  local b = r.baseline and base[r.baseline]
  print(("%s|%.0f|%s|%s|%s|%s"):format(r.name, r.ops,
    r.p50 and ("%.0f"):format(r.p50) or "", r.p99 and ("%.0f"):format(r.p99) or "",
    r.baseline or "", b and ("%.2f"):format(r.ops / b) or ""))
end
