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
local B = dofile((arg[0]:match("^(.*)/") or ".") .. "/support.lua")

local PORT = assert(tonumber(arg[1]), "usage: memcached.lua PORT")
local SCALE = B.SCALE
local rows = B.rows()

rows:base("raw text get", os.getenv("BASE_GET"))
rows:base("raw text set", os.getenv("BASE_SET"))
rows:base("raw text get x100 keys", os.getenv("BASE_MGET100"))
rows:base("libmemcached binary get", os.getenv("LIB_GET"))
rows:base("libmemcached binary set", os.getenv("LIB_SET"))
rows:base("libmemcached binary mget x100 keys", os.getenv("LIB_MGET100"))

local c = cache.MemcachedCache { servers = { "127.0.0.1:" .. PORT }, key_prefix = "bench:" }
local KEYS = 1000
local names = {}
for i = 1, KEYS do names[i] = ("key:%06d"):format(i) end
for i = 1, KEYS do assert(c:set(names[i], "xxx", 0)) end -- 3 bytes, as the raw loop

local N = 20000 * SCALE
rows:run("MemcachedCache get", "raw text get", N, function(i) c:get(names[i % KEYS + 1]) end)
rows:run("MemcachedCache set", "raw text set", N, function(i) c:set(names[i % KEYS + 1], "xxx", 0) end)
local batch, map = {}, {}
for i = 1, 100 do batch[i] = names[i]; map[names[i]] = "xxx" end
local unpack = table.unpack
rows:run("MemcachedCache get_many(100) keys", "raw text get x100 keys", 1000 * SCALE,
  function() c:get_many(unpack(batch)) end, 100)
-- without a baseline: the batches and inc
rows:run("MemcachedCache set_many(100) keys", nil, 500 * SCALE, function() c:set_many(map, 0) end, 100)
rows:run("MemcachedCache delete_many(100) absent keys", nil, 200 * SCALE,
  function() c:delete_many(unpack(batch)) end, 100)
rows:run("MemcachedCache inc", nil, N // 2, function() c:inc("counter") end)

-- the same rows once more against bare libmemcached
local lib = { ["raw text get"] = "libmemcached binary get", ["raw text set"] = "libmemcached binary set",
              ["raw text get x100 keys"] = "libmemcached binary mget x100 keys" }
local has = {}
for _, r in ipairs(rows.list) do has[r.name] = true end
local n_rows = #rows.list
for i = 1, n_rows do
  local r = rows.list[i]
  if r.baseline and lib[r.baseline] and has[lib[r.baseline]] then
    rows:add { name = r.name .. " (vs libmemcached)", ops = r.ops, p50 = r.p50, p99 = r.p99,
               baseline = lib[r.baseline] }
  end
end
rows:emit()
