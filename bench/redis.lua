-- RedisCache through `cache` beside redis-benchmark on the same server in
-- the same run (bench/redis.sh starts the server, runs redis-benchmark,
-- then this file).
--
--   lua5.4 bench/redis.lua PORT
-- with the baselines in the environment (requests per second):
--   BASE_GET_P1, BASE_SET_P1   redis-benchmark -c 1 -P 1 -t get / set
--   BASE_GET_P100              redis-benchmark -c 1 -P 100 -t get
--
-- and, when bench/redis.sh started a TLS server too (REDIS_TLS_PORT, its
-- CA in REDIS_TLS_CA), RedisCache get / set over TLS beside the same on
-- the plain server, one connection each, in alternating repetitions.
--
-- Prints rows "name|ops/s|p50 ns|p99 ns|baseline|ratio" (as bench/local.lua)
-- on stdout; ratio = ours / baseline. get_many(100) is counted in keys per
-- second, beside GET pipelined 100 deep.
local cache = require "cache"
local B = dofile((arg[0]:match("^(.*)/") or ".") .. "/support.lua")

local PORT = assert(tonumber(arg[1]), "usage: redis.lua PORT")
local SCALE = B.SCALE
local rows = B.rows()

rows:base("redis-benchmark GET -c1 -P1", os.getenv("BASE_GET_P1"))
rows:base("redis-benchmark SET -c1 -P1", os.getenv("BASE_SET_P1"))
rows:base("redis-benchmark GET -c1 -P100", os.getenv("BASE_GET_P100"))

local c = cache.RedisCache { host = "127.0.0.1", port = PORT, key_prefix = "bench:" }
assert(c:clear())
local KEYS = 1000
local names = {}
for i = 1, KEYS do names[i] = ("key:%06d"):format(i) end
for i = 1, KEYS do assert(c:set(names[i], "xxx", 0)) end -- 3 bytes, as redis-benchmark -d 3

local N = 20000 * SCALE
rows:run("RedisCache get", "redis-benchmark GET -c1 -P1", N, function(i) c:get(names[i % KEYS + 1]) end)
rows:run("RedisCache set", "redis-benchmark SET -c1 -P1", N, function(i) c:set(names[i % KEYS + 1], "xxx", 0) end)
local batch = {}
for i = 1, 100 do batch[i] = names[i] end
local unpack = table.unpack
rows:run("RedisCache get_many(100) keys", "redis-benchmark GET -c1 -P100", 1000 * SCALE,
  function() c:get_many(unpack(batch)) end, 100)

local TLS_PORT, TLS_CA = tonumber(os.getenv("REDIS_TLS_PORT") or ""), os.getenv("REDIS_TLS_CA")
if TLS_PORT and TLS_CA then
  for _, op in ipairs { "GET", "SET" } do -- redis-benchmark's own TLS cost, for scale
    local ops = tonumber(os.getenv("BASE_TLS_" .. op .. "_P1") or "")
    if ops then
      rows:add { name = "redis-benchmark TLS " .. op .. " -c1 -P1", ops = ops,
                 baseline = "redis-benchmark " .. op .. " -c1 -P1" }
    end
  end
  local t = cache.RedisCache { host = "127.0.0.1", port = TLS_PORT, ssl = true, ssl_ca_certs = TLS_CA,
                               key_prefix = "bench:" }
  for i = 1, KEYS do assert(t:set(names[i], "xxx", 0)) end
  rows:pair("RedisCache get (plain, beside TLS)", function(i) c:get(names[i % KEYS + 1]) end,
    "RedisCache TLS get (vs plain)", function(i) t:get(names[i % KEYS + 1]) end, N, 9)
  rows:pair("RedisCache set (plain, beside TLS)", function(i) c:set(names[i % KEYS + 1], "xxx", 0) end,
    "RedisCache TLS set (vs plain)", function(i) t:set(names[i % KEYS + 1], "xxx", 0) end, N, 9)
  assert(t:clear())
end
assert(c:clear())

rows:emit()
