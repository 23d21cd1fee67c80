--- examples/openresty/app.lua: `cache` inside OpenResty handlers.
--
-- nginx.conf (next to this file) calls app.init_worker() from
-- init_worker_by_lua and one app.<handler>() per location. spec/openresty_spec
-- drives it with real HTTP requests; bench/openresty.sh measures it.
--
-- The pattern: create caches in init_worker_by_lua, one set per worker, and
-- decorate the views there too. Every nginx worker is its own process with
-- its own Lua VM, so
--   * a SimpleCache is per worker (two workers = two independent caches);
--   * a RedisCache opens its connections lazily in the worker that uses it,
--     so both workers share the data through the server, never a socket. In
--     the phases that allow cosockets (rewrite, access, content, timer) its
--     I/O goes through ngx.socket.tcp (transport = "auto", the default): a
--     call yields while it waits, and the worker serves other requests. Do not
--     create a network cache in init_by_lua: that runs in the master before
--     the fork, and a connection made there would be inherited by every
--     worker (RedisCache notices the fork and reconnects; a MemcachedCache
--     used in init_by_lua was seen returning wrong values in the workers).
--
-- Handlers add X-Worker (the worker's pid) and X-Computed (how many times this
-- worker ran the real computation) so the spec can tell a hit from a miss.
local cache = require "cache"
local core = require "cache.core"

local M = {}

local stats = ngx.shared.stats -- counters every worker sees (lua_shared_dict)

-- Per-worker state, filled by init_worker().
local local_cache -- Cache object on a SimpleCache (this worker only)
local redis_cache -- Cache object on a RedisCache (shared through the server)
local redis_why   -- why there is no redis_cache
local views = {}  -- decorated functions
local computed = {} -- name -> real computations in this worker

local function bump(name)
  computed[name] = (computed[name] or 0) + 1
  stats:incr("computed:" .. name, 1, 0)
  return stats:incr("seq", 1, 0) -- a number unique across workers
end

local function bypass_header()
  return ngx.req.get_headers()["x-bypass"] ~= nil
end

local function redis_config()
  local port = os.getenv("CACHE_TEST_REDIS_PORT") -- passed by `env` in nginx.conf
  if not port or port == "" then return nil, "CACHE_TEST_REDIS_PORT is not set" end
  if not cache.backend_types().RedisCache then return nil, "RedisCache is not built" end
  return {
    CACHE_TYPE = "RedisCache",
    CACHE_REDIS_HOST = os.getenv("CACHE_TEST_REDIS_HOST") or "127.0.0.1",
    CACHE_REDIS_PORT = tonumber(port),
    CACHE_KEY_PREFIX = "openresty-example:",
    CACHE_DEFAULT_TIMEOUT = 300,
    -- a Redis that stops answering blocks the worker for at most this long
    CACHE_OPTIONS = { connect_timeout = 0.5, timeout = 0.5 },
  }
end

-- The other backends, for bench/openresty.sh: each is timed the same way as
-- Redis (/backend/set, /backend/time). FileSystemCache does its I/O with
-- blocking calls, so it holds the worker for the duration; Redis, memcached
-- and uWSGI yield (cosockets) in a content handler.
local others = {}

local function open_others()
  local types = cache.backend_types()
  local function try(name, ctor, opts)
    if not types[ctor] then return end
    local ok, b = pcall(cache[ctor], opts)
    if ok then others[name] = b else ngx.log(ngx.ERR, name, ": ", tostring(b)) end
  end
  if local_cache then others.simple = local_cache.cache end
  if redis_cache then others.redis = redis_cache.cache end
  -- one folder for both workers (openresty.sh makes it writable by nobody)
  try("filesystem", "FileSystemCache", { cache_dir = ngx.config.prefix() .. "fscache", threshold = 0 })
  local mc = os.getenv("CACHE_TEST_MEMCACHED")
  if mc and mc ~= "" then
    try("memcached", "MemcachedCache", { servers = { mc }, key_prefix = "openresty-example:" })
  end
  local uw = os.getenv("CACHE_TEST_UWSGI")
  if uw and uw ~= "" then try("uwsgi", "UWSGICache", { cache = "mycache@" .. uw, timeout = 0.5 }) end
end

function M.init_worker()
  stats:incr("inits", 1, 0)
  if not cache.new then return end -- decorators not installed: /info says so
  local_cache = cache.new{ CACHE_TYPE = "SimpleCache", CACHE_THRESHOLD = 10000,
                           CACHE_DEFAULT_TIMEOUT = 300 }

  -- A page computed once per path, then served from this worker's cache.
  views.page = local_cache:cached{ key_prefix = "view/%s", response_hit_indication = true }(
    function() return ("page %s #%d"):format(ngx.var.uri, bump("view:" .. ngx.var.uri)) end)
  -- The query arguments enter the key: ?a=1&b=2 == ?b=2&a=1 ~= ?a=2.
  views.search = local_cache:cached{ key_prefix = "qs/%s", query_string = true,
                                     response_hit_indication = true }(
    function() return ("search #%d"):format(bump("qs:" .. ngx.var.uri)) end)
  -- A request carrying X-Bypass is computed fresh and not stored.
  views.fresh = local_cache:cached{ key_prefix = "bypass/%s", unless = bypass_header,
                                    response_hit_indication = true }(
    function() return ("fresh #%d"):format(bump("bypass:" .. ngx.var.uri)) end)
  -- A memoized helper called from a handler.
  views.square = local_cache:memoize{ timeout = 300, name = "app.square" }(
    function(n) bump("square"); return n * n end)
  -- For the benchmark: the same bytes as the bare handler, from the cache.
  views.bench = local_cache:cached{ key_prefix = "bench/%s" }(
    function() return "hello world" end)

  views.mbench = nil
  local cfg
  cfg, redis_why = redis_config()
  if cfg then
    local ok, c = pcall(cache.new, cfg)
    if ok then
      redis_cache = c
      views.rpage = redis_cache:cached{ key_prefix = "rview/%s", response_hit_indication = true }(
        function() return ("rpage %s #%d"):format(ngx.var.uri, bump("rview:" .. ngx.var.uri)) end)
      views.rbench = redis_cache:cached{ key_prefix = "rbench/%s" }(
        function() return "hello world" end)
      -- the same view through the blocking transport, for the benchmark
      local bcfg = {}
      for k, v in pairs(cfg) do bcfg[k] = v end
      bcfg.CACHE_TRANSPORT = "blocking"
      views.rbench_blocking = cache.new(bcfg):cached{ key_prefix = "rbench/%s" }(
        function() return "hello world" end)
    else
      redis_why = "RedisCache: " .. tostring(c)
    end
  end
  -- A cache whose server is down (nothing listens on port 1): decorators
  -- fail open, so the view is computed every time and the error is logged
  -- once to the error log through ngx.log.
  if cache.backend_types().RedisCache then
    local down = cache.new{ CACHE_TYPE = "RedisCache", CACHE_REDIS_HOST = "127.0.0.1",
                            CACHE_REDIS_PORT = 1, CACHE_OPTIONS = { connect_timeout = 0.2 } }
    views.down = down:cached{ key_prefix = "down/%s" }(
      function() return ("down #%d"):format(bump("down:" .. ngx.var.uri)) end)
  end
  open_others()
  if others.memcached then
    views.mbench = cache.new{ CACHE_TYPE = "MemcachedCache",
                              CACHE_MEMCACHED_SERVERS = { os.getenv("CACHE_TEST_MEMCACHED") },
                              CACHE_KEY_PREFIX = "openresty-example:" }
      :cached{ key_prefix = "mbench/%s" }(function() return "hello world" end)
  end
  -- bench/openresty.sh: Redis behind a proxy that delays every reply (a
  -- server 20 ms away), through each transport; one pooled connection per
  -- request in flight
  local delayed = tonumber(os.getenv("CACHE_BENCH_DELAYED_PORT") or "")
  if delayed then
    local o = { port = delayed, pool_size = 200, timeout = 5, key_prefix = "openresty-example:" }
    others.delayed = cache.RedisCache(o)
    o.transport = "blocking"
    others.delayed_blocking = cache.RedisCache(o)
  end
end

-- Sends a one-line body with the worker's pid and computation count.
local function reply(body, counter)
  ngx.header["X-Worker"] = ngx.worker.pid()
  if counter then ngx.header["X-Computed"] = computed[counter] or 0 end
  ngx.say(body)
end

local function need(obj, why)
  if obj then return true end
  ngx.status = 501
  reply(why)
  return false
end

-- The file this process mapped for cache/core.so (Linux): where the module
-- was really loaded from, whatever the search path says.
local function core_file()
  local f = io.open("/proc/self/maps", "r")
  if not f then return "unknown" end
  local path
  for line in f:lines() do
    path = path or line:match("%s(/%S+/cache/core%.so)$")
  end
  f:close()
  return path or "unknown"
end

--- GET /info: what this worker has (the spec reads it to skip what is missing)
-- and where cache.lua and cache/core.so were loaded from.
function M.info()
  local types = {}
  for name, built in pairs(cache.backend_types()) do
    if built then types[#types + 1] = name end
  end
  table.sort(types)
  reply(table.concat({
    "inits=" .. tostring(stats:get("inits")),
    "new=" .. tostring(cache.new ~= nil),
    "simple=" .. (local_cache and tostring(local_cache.cache) or "none"),
    "redis=" .. (redis_cache and "yes" or tostring(redis_why or "no")),
    "timed=" .. (function()
      local names = {}
      for name in pairs(others) do names[#names + 1] = name end
      table.sort(names)
      return table.concat(names, ",")
    end)(),
    "backends=" .. table.concat(types, ","),
    "jit=" .. tostring(jit and jit.version),
    "lua=" .. debug.getinfo(cache.backend_types, "S").source,
    "core=" .. core_file(),
  }, ";"))
end

local function cached_view(name, counter_tag)
  if not need(views[name], "cache.new is not installed") then return end
  local body = views[name]()
  reply(body, counter_tag .. ":" .. ngx.var.uri)
end

function M.page() cached_view("page", "view") end
function M.search() cached_view("search", "qs") end
function M.fresh() cached_view("fresh", "bypass") end

function M.down() cached_view("down", "down") end

function M.rpage()
  if not need(redis_cache, redis_why or "no redis") then return end
  cached_view("rpage", "rview")
end

--- GET /memo?n=7 -> 49, computed once per worker for each n.
function M.memo()
  if not need(views.square, "cache.new is not installed") then return end
  local n = tonumber(ngx.var.arg_n) or 0
  -- LuaJIT numbers are doubles and tostring() shows 14 digits: print with
  -- %.17g to see every integer up to 2^53 exactly
  reply(("%.17g"):format(views.square(n)), "square")
end

-- /simple/set?k=..&v=.. and /simple/get?k=..: this worker's SimpleCache.
function M.simple_set()
  if not need(local_cache, "cache.new is not installed") then return end
  reply(tostring(local_cache:set(ngx.var.arg_k, ngx.var.arg_v)))
end

function M.simple_get()
  if not need(local_cache, "cache.new is not installed") then return end
  local v = local_cache:get(ngx.var.arg_k)
  reply(v == nil and "MISS" or tostring(v))
end

-- /redis/set?k=..&v=.. (or &size=N for N bytes) and /redis/get?k=..: the
-- Redis every worker shares.
function M.redis_set()
  if not need(redis_cache, redis_why or "no redis") then return end
  local v = ngx.var.arg_v
  if ngx.var.arg_size then v = ("x"):rep(tonumber(ngx.var.arg_size) or 0) end
  local ok, err = redis_cache:set(ngx.var.arg_k, v)
  reply(ok and "true" or ("false " .. tostring(err)))
end

function M.redis_get()
  if not need(redis_cache, redis_why or "no redis") then return end
  local v, err = redis_cache:get(ngx.var.arg_k)
  if v == nil and err ~= nil then
    ngx.status = 502
    return reply("ERROR " .. tostring(err))
  end
  reply(v == nil and "MISS" or tostring(v))
end

-- /backend/set?b=NAME&k=..&size=N stores N bytes in that backend.
function M.backend_set()
  local b = others[ngx.var.arg_b or ""]
  if not need(b, "no backend " .. tostring(ngx.var.arg_b)) then return end
  local ok, err = b:set(ngx.var.arg_k or "t", ("x"):rep(tonumber(ngx.var.arg_size) or 5))
  reply(ok and "true" or ("false " .. tostring(err)))
end

--- GET /backend/time?b=NAME&k=..&n=N: N gets of one key inside this handler,
-- each timed on the monotonic clock; the body is the durations in
-- microseconds. This is how long the call holds the whole worker: nothing
-- else runs in it meanwhile (a C call cannot yield to nginx).
function M.backend_time()
  local b = others[ngx.var.arg_b or ""]
  if not need(b, "no backend " .. tostring(ngx.var.arg_b)) then return end
  local key, n = ngx.var.arg_k or "t", tonumber(ngx.var.arg_n) or 100
  local out = {}
  for i = 1, n do
    local t0 = core.monotonic()
    b:get(key)
    out[i] = ("%.1f"):format((core.monotonic() - t0) * 1e6)
  end
  reply(table.concat(out, " "))
end

-- The benchmark pair: the same "hello world" body, bare or through the cache.
function M.bench_cached()
  if not need(views.bench, "cache.new is not installed") then return end
  ngx.say(views.bench())
end

function M.bench_redis()
  if not need(views.rbench, redis_why or "no redis") then return end
  ngx.say(views.rbench())
end

-- /bench/redis_get: one RedisCache get per request; /bench/raw_cosocket:
-- the same GET written by hand on ngx.socket.tcp (a minimal pure-Lua
-- cosocket client: the in-run baseline of the cosocket transport).
function M.bench_redis_get()
  if not need(redis_cache, redis_why or "no redis") then return end
  ngx.say(redis_cache:get("bench-get"))
end

local raw_key = "openresty-example:bench-get"
local raw_request = ("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"):format(#raw_key, raw_key)
function M.bench_raw_cosocket()
  local sock = ngx.socket.tcp()
  sock:settimeouts(1000, 1000, 1000)
  local ok, err = sock:connect(os.getenv("CACHE_TEST_REDIS_HOST") or "127.0.0.1",
                               tonumber(os.getenv("CACHE_TEST_REDIS_PORT")),
                               { pool = "bench-raw", pool_size = 30 })
  if not ok then return ngx.say("ERROR ", err) end
  sock:send(raw_request)
  local line = sock:receive("*l")
  local n = line and tonumber(line:sub(2))
  local body = n and n >= 0 and sock:receive(n + 2)
  sock:setkeepalive(60000, 30)
  ngx.say(body and body:sub(1, -3) or "MISS")
end

function M.bench_redis_blocking()
  if not need(views.rbench_blocking, redis_why or "no redis") then return end
  ngx.say(views.rbench_blocking())
end

function M.bench_memcached()
  if not need(views.mbench, "no memcached") then return end
  ngx.say(views.mbench())
end

-- /bench/delayed?b=delayed|delayed_blocking: one get through the slow proxy.
function M.bench_delayed()
  local b = others[ngx.var.arg_b or ""]
  if not need(b, "no delayed backend") then return end
  local v, err = b:get("delayed")
  ngx.say(err and ("ERROR " .. err) or tostring(v))
end

-- /bench/stall: one get through a RedisCache (timeout 1 s) whose server is
-- stopped; its worker's pid is kept where /bench/pid's callers can see it.
function M.bench_stall()
  stats:set("stalled_pid", ngx.worker.pid())
  local c = cache.RedisCache{ host = os.getenv("CACHE_TEST_REDIS_HOST") or "127.0.0.1",
                              port = tonumber(os.getenv("CACHE_TEST_REDIS_PORT")), timeout = 1 }
  local t0 = core.monotonic()
  local _, err = c:get("stall")
  reply(("%.0f ms %s"):format((core.monotonic() - t0) * 1000, tostring(err)))
end

function M.stalled_pid() ngx.say(tostring(stats:get("stalled_pid"))) end

return M
