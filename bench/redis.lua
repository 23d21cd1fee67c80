-- RedisCache through `cache` beside redis-benchmark on the same server in
-- the same run (bench/redis.sh starts the server, runs redis-benchmark,
-- then this file).
--
--   lua5.4 bench/redis.lua PORT
-- with the baselines in the environment (requests per second):
--   BASE_GET_P1, BASE_SET_P1   redis-benchmark -c 1 -P 1 -t get / set
--   BASE_GET_P100              redis-benchmark -c 1 -P 100 -t get
--
-- Prints rows "name|ops/s|p50 ns|p99 ns|baseline|ratio" (as bench/local.lua)
-- on stdout; ratio = ours / baseline. get_many(100) is counted in keys per
-- second, beside GET pipelined 100 deep.
local cache = require "cache"
local now = cache.core.monotonic

local PORT = assert(tonumber(arg[1]), "usage: redis.lua PORT")
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

--- op(i) n times per repetition (n a multiple of BATCH); returns ops/s
-- (median of REPS), p50 and p99 of the per-operation time over batches (ns).
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

base_row("redis-benchmark GET -c1 -P1", "BASE_GET_P1")
base_row("redis-benchmark SET -c1 -P1", "BASE_SET_P1")
base_row("redis-benchmark GET -c1 -P100", "BASE_GET_P100")

local c = cache.RedisCache { host = "127.0.0.1", port = PORT, key_prefix = "bench:" }
assert(c:clear())
local KEYS = 1000
local names = {}
for i = 1, KEYS do names[i] = ("key:%06d"):format(i) end
for i = 1, KEYS do assert(c:set(names[i], "xxx", 0)) end -- 3 bytes, as redis-benchmark -d 3

local N = 20000 * SCALE
row("RedisCache get", "redis-benchmark GET -c1 -P1", N, function(i) c:get(names[i % KEYS + 1]) end)
row("RedisCache set", "redis-benchmark SET -c1 -P1", N, function(i) c:set(names[i % KEYS + 1], "xxx", 0) end)
local batch = {}
for i = 1, 100 do batch[i] = names[i] end
local unpack = table.unpack
row("RedisCache get_many(100) keys", "redis-benchmark GET -c1 -P100", 1000 * SCALE,
  function() c:get_many(unpack(batch)) end, 100)
assert(c:clear())

local by = {}
for _, r in ipairs(rows) do by[r.name] = r end
for _, r in ipairs(rows) do
  local base = r.baseline and by[r.baseline]
  local ratio = base and ("%.2f"):format(r.ops / base.ops) or ""
  print(("%s|%.0f|%s|%s|%s|%s"):format(r.name, r.ops,
    r.p50 and ("%.0f"):format(r.p50) or "", r.p99 and ("%.0f"):format(r.p99) or "",
    r.baseline or "", ratio))
end
