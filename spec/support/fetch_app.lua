--- fetch_app: the nginx side of spec/shareddict_spec.lua (fetch, TieredCache
-- and SharedDictCache inside handlers; spec/support/fetch_nginx.conf routes
-- to it). openresty.sh copies spec/support/*.lua to support/ and
-- spec/backends/*.lua to backends/ beside it.
--
-- Per worker: a Cache on SharedDictCache "fetch_dict", one on Redis (when
-- CACHE_TEST_REDIS_PORT is set) and a TieredCache (l1 SimpleCache, l2
-- SharedDictCache, invalidated through the dict "tiered_ipc"), made on
-- first use.
local cache = require "cache"
local minispec = require "support.minispec"
local contract = require "support.contract"
local checks = require "support.shareddict_checks"
local helpers = require "support.helpers"

local M = {}
local APP_DIR = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
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
  return st
end

local function reply(...)
  ngx.header["X-Worker"] = ngx.worker.pid()
  ngx.say(...)
end

-- Runs define(T) with minispec, as busted would, and says how it went.
local function run(define)
  local res = minispec.run(function(T)
    -- nginx's cached time moves only when the worker yields: sleeping must
    -- yield, or expiry in the zone would never be seen
    T.helpers = { sleep = ngx.sleep, pack = helpers.pack }
    define(T)
  end, require "luassert")
  ngx.say(("passed=%d failed=%d"):format(res.passed, res.failed))
  for _, line in ipairs(res.failures) do ngx.say(line) end
end

--- GET /spec/contract: spec/support/contract.lua on spec/backends/shareddict.lua.
function M.contract()
  local f = dofile(APP_DIR .. "/backends/shareddict.lua")
  f.caps = f.caps or {}
  local ok, why = f.available()
  if not ok then return ngx.say("unavailable: ", why) end
  run(function(T) contract(f, T) end)
end

--- GET /spec/checks: spec/support/shareddict_checks.lua.
function M.checks()
  run(checks)
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
  -- the calls fetch made on the cosocket transport (Redis: all of them)
  local co = require("cache.cosocket").stats
  local before = co.cosocket
  ngx.header["X-Cosocket"] = 0
  local v, err, level = c:fetch(key, ngx.var.arg_lock == "0" and unlocked or locked, counted_value,
                                key, (tonumber(ngx.var.arg_ms) or 200) / 1000)
  ngx.header["X-Cosocket"] = co.cosocket - before
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

return M
