-- spec/support/fetch_worker.lua KIND WHERE PREFIX KEY START
-- One of the processes of spec/fetch_stampede_spec.lua: opens the cache
-- (KIND "redis": WHERE is host:port; "fs": WHERE is the folder), waits until
-- the wall clock reaches START, then fetches KEY with lock = true through a
-- 200 ms callback that counts its runs in the cache itself (an atomic inc).
-- Prints: value level waited (1 if it waited for another caller's lock).
local cache = require "cache"
local core = cache.core

local kind, where, prefix, key, start = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5])
local c
if kind == "redis" then
  local host, port = where:match("^(.*):(%d+)$")
  c = cache.new { CACHE_TYPE = "RedisCache", CACHE_REDIS_HOST = host, CACHE_REDIS_PORT = tonumber(port),
                  CACHE_KEY_PREFIX = prefix, CACHE_OPTIONS = { timeout = 5 } }
else
  c = cache.new { CACHE_TYPE = "FileSystemCache", CACHE_DIR = where, CACHE_THRESHOLD = 0 }
end
c:get("warm-up") -- connected before the start

while core.wall() < start do core.sleep(0.001) end
local v, err, level = c:fetch(key, { lock = true, timeout = 60, lock_timeout = 10 }, function()
  assert(c:inc(prefix .. "runs"))
  core.sleep(0.2)
  return "computed"
end)
print(tostring(v), tostring(err or level), c:stats().lock_waits)
