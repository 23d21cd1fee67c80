-- make demo: the cache API on the embedded default backend (SimpleCache).
local cache = require "cache"

local c = cache.SimpleCache { threshold = 100, default_timeout = 60 }
local function show(label, ...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    parts[i] = type(v) == "table" and "{...}" or tostring(v)
  end
  print(("%-44s -> %s"):format(label, table.concat(parts, ", ")))
end

print("cache demo: " .. tostring(c))
show('c:set("user:1", {name="Ada", langs={"lua","c"}})', c:set("user:1", { name = "Ada", langs = { "lua", "c" } }))
local u = c:get("user:1")
show('c:get("user:1").name, .langs[2]', u.name, u.langs[2])
show('c:add("user:1", "other")   -- exists', c:add("user:1", "other"))
show('c:set("n", 41); c:inc("n")', c:set("n", 41), c:inc("n"))
show('c:dec("hits", 3)           -- missing', c:dec("hits", 3))
show('c:set("short", "x", 0.1)', c:set("short", "x", 0.1))
os.execute("sleep 0.2")
show('c:get("short") after 0.2 s', c:get("short"))
show('c:set("none", nil); c:has("none")', c:set("none", nil), c:has("none"))
show('c:get_many("n", "missing", "user:1")', c:get_many("n", "missing", "user:1"))
local ok, keys = c:set_many { a = 1, b = 2 }
show('c:set_many{a=1, b=2}', ok, #keys .. " keys")
show('c:delete_many("a", "b", "zz")', c:delete_many("a", "b", "zz"))
show('pcall(c.set, c, "f", {cb = print})', pcall(c.set, c, "f", { cb = print }))
if cache.new then
  local app = cache.new { CACHE_TYPE = "SimpleCache", CACHE_DEFAULT_TIMEOUT = 60 }
  local calls = 0
  local add = app:memoize { timeout = 30 }(function(a, b) calls = calls + 1; return a + b end)
  show("memoized add(1, 2) twice; calls", add(1, 2), add(1, 2), calls)
  app:delete_memoized(add, 1, 2)
  show("after delete_memoized(add, 1, 2); calls", add(1, 2), calls)
end
show('c:clear(); c:get("user:1")', c:clear(), c:get("user:1"))
