-- examples/fetch.lua: c:fetch, TieredCache and c:stats() in plain Lua 5.4.
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="./?.so;;" lua5.4 examples/fetch.lua
-- (after `make`). spec/fetch_spec.lua runs it.
local cache = require "cache"

local dir = os.tmpname()
os.remove(dir)

-- A Cache object whose fetch calls take these defaults.
local c = cache.new { CACHE_TYPE = "FileSystemCache", CACHE_DIR = dir,
                      CACHE_FETCH_LOCK = true, CACHE_FETCH_STALE_TIMEOUT = 60 }

-- The slow thing being cached: a lookup that may fail.
local database_up = true
local function load_user(id)
  if not database_up then return nil, "database unreachable" end
  return { id = id, name = "user " .. id }
end

-- level 3: the callback ran; level 2: from the backend
local user, err, level = c:fetch("user:1", { timeout = 0.5 }, load_user, 1)
print(user.name, err, level)                       --> user 1   nil   3
user, err, level = c:fetch("user:1", { timeout = 0.5 }, load_user, 1)
print(user.name, err, level)                       --> user 1   nil   2
print(c:get("user:1").name)                        --> user 1   (get reads the plain value)

-- Past its freshness, with the database down: the stale value (level 4),
-- the failure logged through cache.log.
cache.log = function(msg) print("log: " .. msg) end
os.execute("sleep 0.6")
database_up = false
user, err, level = c:fetch("user:1", { timeout = 0.5 }, load_user, 1)
print(user.name, err, level)                       --> user 1   nil   4

-- A nil result kept for a while (neg_timeout), so a missing row is not
-- looked up again and again.
local lookups = 0
local function find(_id) lookups = lookups + 1 return nil end
c:fetch("user:404", { neg_timeout = 30 }, find, 404)
c:fetch("user:404", { neg_timeout = 30 }, find, 404)
print("lookups of user:404:", lookups)             --> 1

-- A TieredCache: this process's SimpleCache in front of the shared tier.
local t = cache.TieredCache { l1 = cache.SimpleCache(), l2 = cache.FileSystemCache { cache_dir = dir } }
print(select(3, t:fetch("config", nil, function() return { debug = false } end)))  --> 3
print(select(3, t:fetch("config", nil, function() return { debug = false } end)))  --> 1 (l1)

-- What happened, counted in C.
local s = c:stats()
print(("hits %d, misses %d, sets %d; levels %d/%d/%d/%d; callback runs %d (%d failed), stale served %d")
  :format(s.hits, s.misses, s.sets, s.levels[1], s.levels[2], s.levels[3], s.levels[4],
          s.callback_runs, s.callback_errors, s.stale_served))

c:clear()
os.execute("rm -rf '" .. dir .. "'")
