-- memoize and cached on RedisCache, beside a plain RedisCache get on the same
-- server in the same run (bench/run.sh starts the server, pinned to one CPU
-- with this client).
--
--   lua5.4 bench/decorators_redis.lua PORT
--
-- Prints rows "name|ops/s|p50 ns|p99 ns|baseline|ratio" as bench/local.lua.
-- A memoize hit is two round trips (the version key, then the value), a
-- cached hit one: the baseline is one get.
local cache = require "cache"
local now = cache.core.monotonic

local PORT = assert(tonumber(arg[1]), "usage: decorators_redis.lua PORT")
local REPS = tonumber(os.getenv("BENCH_REPS")) or 5
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

local function measure(n, op)
  local rates, lat = {}, {}
  local base = 0
  for _ = 1, REPS do
    local start = now()
    local i = 0
    while i < n do
      local b0 = now()
      for j = base + i + 1, base + i + BATCH do op(j) end
      lat[#lat + 1] = (now() - b0) / BATCH * 1e9
      i = i + BATCH
    end
    base = base + n
    rates[#rates + 1] = n / (now() - start)
  end
  return median(rates), percentile(lat, 0.5), percentile(lat, 0.99)
end

local rows = {}
local function row(name, n, op, baseline)
  local ops, p50, p99 = measure(n, op)
  rows[#rows + 1] = { name = name, ops = ops, p50 = p50, p99 = p99, baseline = baseline }
end

local N = 10000 * SCALE
local app = cache.new { CACHE_TYPE = "RedisCache", CACHE_REDIS_HOST = "127.0.0.1",
  CACHE_REDIS_PORT = PORT, CACHE_KEY_PREFIX = "deco:" }
assert(app:clear())
local raw = app.cache
assert(raw:set("plain", "xxx", 0))
local BASE = "Redis get hit (same server)"
row(BASE, N, function() raw:get("plain") end)

local function work(a, b) return a * b + 1 end
local memo = app:memoize { timeout = 300 }(work)
for i = 1, 100 do memo(i, 2) end
row("memoize hit (Redis)", N, function(i) memo(i % 100 + 1, 2) end, BASE)
row("memoize miss (Redis)", N // 5, function(i) memo(i + 1000000, 3) end, BASE)

cache.request_provider = function() return "/bench", {} end
local view = app:cached { timeout = 300, key_prefix = "view/%s" }(function() return "page" end)
view()
row("cached hit (Redis)", N, function() view() end, BASE)
local path = "/bench"
cache.request_provider = function() return path, {} end
row("cached miss (Redis)", N // 5, function(i) path = "/miss/" .. i view() end, BASE)
assert(app:clear())

local by = {}
for _, r in ipairs(rows) do by[r.name] = r end
for _, r in ipairs(rows) do
  local base = r.baseline and by[r.baseline]
  local ratio = base and ("%.2f"):format(r.ops / base.ops) or ""
  print(("%s|%.0f|%.0f|%.0f|%s|%s"):format(r.name, r.ops, r.p50, r.p99, r.baseline or "", ratio))
end
