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
local B = dofile((arg[0]:match("^(.*)/") or ".") .. "/support.lua")
local now, median, percentile = B.now, B.median, B.percentile

local PORT = assert(tonumber(arg[1]), "usage: decorators_redis.lua PORT")
local REPS, SCALE, BATCH = B.REPS, B.SCALE, B.BATCH
local rows = B.rows()
local function row(name, n, op, baseline)
  rows:run(name, baseline, n, op, 1, true)
end

local N = 10000 * SCALE
local app = cache.new { CACHE_TYPE = "RedisCache", CACHE_REDIS_HOST = "127.0.0.1",
  CACHE_REDIS_PORT = PORT, CACHE_KEY_PREFIX = "deco:" }
assert(app:clear())
local raw = app.cache

-- RedisCache get / set beside a raw C socket loop (bench/redis_raw.c, path
-- in REDIS_RAW): one repetition of each in turn, ratio = median of the
-- per-pair ratios.
local RAW = os.getenv("REDIS_RAW")
if RAW == "" then RAW = nil end
if RAW then
  local names = {}
  for i = 1, 1000 do names[i] = ("key:%06d"):format(i) end
  for i = 1, 1000 do assert(raw:set(names[i], "xxx", 0)) end
  for _, op in ipairs { "get", "set" } do
    local base = ("raw C socket %s loop (1 connection)"):format(op:upper())
    local mine = "RedisCache " .. op .. " (vs raw socket)"
    local fn = op == "get" and function(i) raw:get(names[i % 1000 + 1]) end
      or function(i) raw:set(names[i % 1000 + 1], "xxx", 0) end
    local brates, rates, ratios, lat = {}, {}, {}, {}
    for _ = 1, math.max(REPS, 9) do -- round trips on this VM are noisy: more pairs
      local p = assert(io.popen(("%s %d %s %d"):format(RAW, PORT, op, N)))
      local b = tonumber(p:read("a"))
      p:close()
      local start = now()
      for i0 = 0, N - 1, BATCH do
        local b0 = now()
        for j = i0 + 1, i0 + BATCH do fn(j) end
        lat[#lat + 1] = (now() - b0) / BATCH * 1e9
      end
      local r = N / (now() - start)
      if b then
        brates[#brates + 1] = b
        ratios[#ratios + 1] = r / b
      end
      rates[#rates + 1] = r
    end
    if #brates > 0 then rows:add { name = base, ops = median(brates) } end
    rows:add { name = mine, ops = median(rates), p50 = percentile(lat, 0.5),
      p99 = percentile(lat, 0.99), baseline = #brates > 0 and base or nil,
      ratio = #ratios > 0 and median(ratios) or nil }
  end
end

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

rows:emit()
