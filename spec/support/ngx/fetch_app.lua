--- fetch_app: handlers for spec/shareddict_spec.lua and bench/openresty.sh
-- (fetch, TieredCache and SharedDictCache inside nginx). openresty.sh
-- copies this folder's .lua files next to examples/openresty/app.lua and
-- includes its .conf files (fetch.http.conf at http level, fetch.server.conf
-- in the server).
--
-- Per worker: a Cache on SharedDictCache "fetch_dict", one on Redis (when
-- CACHE_TEST_REDIS_PORT is set), a TieredCache (l1 SimpleCache, l2
-- SharedDictCache, invalidated through the dict "tiered_ipc") and the
-- benchmark's objects, made on first use.
local cache = require "cache"

local M = {}
local st

local function worker()
  if st then return st end
  st = {}
  st.shd = cache.new { CACHE_TYPE = "shareddict", CACHE_SHARED_DICT = "fetch_dict",
                       CACHE_KEY_PREFIX = "f:", CACHE_DEFAULT_TIMEOUT = 300 }
  local port = os.getenv("CACHE_TEST_REDIS_PORT")
  if port and port ~= "" and cache.backend_types().RedisCache then
    st.redis = cache.new { CACHE_TYPE = "RedisCache", CACHE_REDIS_PORT = tonumber(port),
                           CACHE_REDIS_HOST = os.getenv("CACHE_TEST_REDIS_HOST") or "127.0.0.1",
                           CACHE_KEY_PREFIX = "ngx-fetch:", CACHE_OPTIONS = { timeout = 5 } }
  end
  st.tiered = cache.TieredCache { l1 = cache.SimpleCache {},
                                  l2 = cache.SharedDictCache { dict = "fetch_dict", key_prefix = "t:" },
                                  l1_timeout = 60, ipc = "tiered_ipc" }
  st.bench_tiered = cache.TieredCache { l1 = cache.SimpleCache {},
                                        l2 = cache.SharedDictCache { dict = "fetch_dict", key_prefix = "b:" },
                                        l1_timeout = 3600, ipc = false }
  st.bench_shd = cache.SharedDictCache { dict = "fetch_dict", key_prefix = "bs:" }
  assert(st.bench_shd:set("hello", "hello world", 0))
  return st
end

local function reply(...)
  ngx.header["X-Worker"] = ngx.worker.pid()
  ngx.say(...)
end

--- GET /spec/run?file=contract_spec.lua&only=SharedDictCache: a spec file
-- of spec/ (or spec/support/ngx/) run in this worker by ngx_spec, keeping
-- the top-level describe blocks whose names contain one of `only`.
function M.spec(root)
  if not package.path:find(root .. "/spec/?.lua", 1, true) then
    package.path = root .. "/spec/?.lua;" .. package.path
  end
  -- nginx's cached time moves only when the worker yields: sleeping must
  -- yield, or expiry in the zone would never be seen
  require("support.helpers").sleep = function(s) ngx.sleep(s) end
  local file = ngx.var.arg_file or ""
  if not file:match("^[%w_/]+%.lua$") or file:find("..", 1, true) then
    ngx.status = 400
    return reply("bad file")
  end
  local only
  if ngx.var.arg_only then
    only = {}
    for name in ngx.var.arg_only:gmatch("[^,]+") do only[#only + 1] = name end
  end
  local r = require("ngx_spec").run(root .. "/spec/" .. file, only)
  reply(("passed=%d failed=%d pending=%d"):format(r.passed, r.failed, r.pending))
  for _, f in ipairs(r.failures) do ngx.say(f) end
end

--- /sd/inc?k=KEY: increments KEY in the SharedDictCache (every worker's).
function M.sd_inc()
  reply(tostring(worker().shd:inc(ngx.var.arg_k)))
end

function M.sd_get()
  reply(tostring(worker().shd:get(ngx.var.arg_k)))
end

--- GET /fetch/stampede?b=shd|redis&k=KEY[&lock=0][&ms=N]: a fetch of a
-- cold key (lock = true unless lock=0) through a callback of N ms (200)
-- that counts its runs in the dict "stats". Body: value level.
local locked = { lock = true, timeout = 60, lock_timeout = 15 }
local unlocked = { timeout = 60 }

local function counted_value(key, seconds)
  ngx.shared.stats:incr("runs:" .. key, 1, 0)
  ngx.sleep(seconds)
  return "computed"
end

function M.stampede()
  local c = worker()[ngx.var.arg_b]
  if not c then ngx.status = 501 return reply("no backend " .. tostring(ngx.var.arg_b)) end
  local key = ngx.var.arg_k
  local v, err, level = c:fetch(key, ngx.var.arg_lock == "0" and unlocked or locked, counted_value,
                                key, (tonumber(ngx.var.arg_ms) or 200) / 1000)
  reply(tostring(v), " ", tostring(err or level))
end

--- GET /fetch/runs?k=KEY: how often the callback of KEY ran (all workers).
function M.runs()
  reply(ngx.shared.stats:get("runs:" .. ngx.var.arg_k) or 0)
end

--- GET /fetch/refresh?k=KEY&mode=background|early: a fetch whose refresh
-- runs in an ngx.timer (a stale value with refresh = "background", or an
-- XFetch early refresh); the callback takes 200 ms (50 ms early). Body: value level
-- microseconds the fetch took.
local early_opts = { timeout = 1, early_refresh = 1 }
local background_opts = { timeout = 1, stale_timeout = 60, refresh = "background" }

-- The callback runs in a timer: it may not touch the request (ngx.var), so
-- what it needs comes as arguments.
local function counted(key, seconds)
  local n = ngx.shared.stats:incr("runs:" .. key, 1, 0)
  ngx.sleep(seconds)
  return n
end

function M.refresh()
  local key = ngx.var.arg_k
  local early = ngx.var.arg_mode == "early"
  local t0 = cache.core.monotonic()
  local v, err, level = worker().shd:fetch(key, early and early_opts or background_opts, counted,
                                           key, early and 0.05 or 0.2)
  reply(tostring(v), " ", tostring(err or level), " ", ("%.0f"):format((cache.core.monotonic() - t0) * 1e6))
end

--- /tiered/set?k=&v=, /tiered/delete?k=, /tiered/fetch?k= (the callback
-- answers "computed"): this worker's TieredCache. Body: value level.
function M.tiered_set()
  reply(tostring(worker().tiered:set(ngx.var.arg_k, ngx.var.arg_v, 0)))
end

function M.tiered_delete()
  reply(tostring(worker().tiered:delete(ngx.var.arg_k)))
end

function M.tiered_fetch()
  local v, err, level = worker().tiered:fetch(ngx.var.arg_k, nil, function() return "computed" end)
  reply(tostring(v), " ", tostring(err or level))
end

-- The benchmark pair of bench/openresty.sh, beside /bench/bare: the same
-- body from a TieredCache's l1 through fetch, and from a SharedDictCache.
local function hello() return "hello world" end
function M.bench_fetch_l1()
  ngx.say((worker().bench_tiered:fetch("hello", nil, hello)))
end

function M.bench_shdict()
  ngx.say((worker().bench_shd:get("hello")))
end

return M
