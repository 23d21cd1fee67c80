-- The nginx side of spec/cosocket_spec.lua: handlers that exercise the
-- cosocket transport (lua/cache/cosocket.lua) in real nginx phases, and
-- report what they saw in plain text for the spec to check.
local cache = require "cache"
local core = require "cache.core"
local cosocket = require "cache.cosocket"
local minispec = require "support.minispec"
local contract = require "support.contract"
local helpers = require "support.helpers"

local M = {}

local APP_DIR = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local stats = ngx.shared.stats
local results = ngx.shared.results

local function env(name) return os.getenv(name) end
local function redis_port() return tonumber(env("CACHE_TEST_REDIS_PORT")) end

local objs = {} -- per worker, made in init_worker

local function redis(opts)
  local o = { host = env("CACHE_TEST_REDIS_HOST") or "127.0.0.1", port = redis_port(), timeout = 5 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return cache.RedisCache(o)
end

-- What path a set + get through objs.auto took in this phase, and what a
-- transport = "cosocket" object answers here.
local function probe(tag)
  if not objs.auto then return "no redis" end
  local s = cosocket.stats
  local c0, b0 = s.cosocket, s.blocking
  local key = tag .. ":" .. ngx.worker.pid()
  local set_ok = objs.auto:set(key, tag)
  local got = objs.auto:get(key)
  local path = s.cosocket > c0 and "cosocket" or s.blocking > b0 and "blocking" or "none"
  local sv, serr = objs.strict:get(key)
  return ("auto=%s ok=%s strict=%s err=%s"):format(path, tostring(set_ok == true and got == tag),
                                                   tostring(sv), tostring(serr))
end

function M.init_worker()
  stats:incr("inits", 1, 0)
  if redis_port() then
    objs.auto = redis { key_prefix = "cosocket-phase:" }
    objs.strict = redis { key_prefix = "cosocket-phase:", transport = "cosocket" }
    objs.conc = redis { key_prefix = "cosocket-conc:" }
    -- its own pool (db 1 names another pool), of 4 connections
    objs.pooled = redis { key_prefix = "cosocket-pool:", db = 1, pool_size = 4 }
    results:set("init_worker:" .. ngx.worker.pid(), probe("init_worker"))
  end
end

function M.info()
  ngx.say("inits=", stats:get("inits"), ";")
end

-- GET /contract?b=redis: spec/support/contract.lua on spec/backends/redis.lua,
-- run in this handler.
function M.contract()
  local f = dofile(APP_DIR .. "/backends/" .. ngx.var.arg_b .. ".lua")
  f.caps = f.caps or {}
  local ok, why = f.available()
  if not ok then return ngx.say("unavailable: ", why) end
  local probe_obj = f.new()
  local transport = core.transport(probe_obj)
  probe_obj:close()
  local s = cosocket.stats
  local c0, b0 = s.cosocket, s.blocking
  local res = minispec.run(function(T)
    T.helpers = { sleep = ngx.sleep, pack = helpers.pack }
    contract(f, T)
  end, require "luassert")
  ngx.say(("passed=%d failed=%d transport=%s cosocket=%d blocking=%d")
    :format(res.passed, res.failed, tostring(transport), s.cosocket - c0, s.blocking - b0))
  for _, line in ipairs(res.failures) do ngx.say(line) end
end

function M.content_probe() ngx.say(probe("content")) end
function M.access_probe() ngx.ctx.probe = probe("access") end
function M.log_probe() results:set("log:" .. (ngx.var.arg_id or ""), probe("log")) end
function M.header_probe() results:set("header:" .. (ngx.var.arg_id or ""), probe("header_filter")) end
function M.set_probe() return probe("set") end

function M.timer_probe()
  local key = "timer:" .. ngx.worker.pid() .. ":" .. ngx.now()
  local ok, err = ngx.timer.at(0, function(premature)
    if not premature then results:set(key, probe("timer")) end
  end)
  if not ok then return ngx.say("timer: ", err) end
  for _ = 1, 250 do
    local r = results:get(key)
    if r then return ngx.say(r) end
    ngx.sleep(0.02)
  end
  ngx.say("the timer did not run")
end

function M.result()
  local k = ngx.var.arg_k
  if k == "init_worker" then k = k .. ":" .. ngx.worker.pid() end
  ngx.say(tostring(results:get(k)))
end

-- GET /late?port=P against a fake Redis answering "1", then "2" 600 ms
-- late, then "3": the late "2" must never be read by the next request.
function M.late()
  local port = tonumber(ngx.var.arg_port)
  local quick = cache.RedisCache { port = port, timeout = 0.2 }
  local patient = cache.RedisCache { port = port, timeout = 5 }
  local a = quick:get("x") -- times out: its error is not what this checks
  local b, berr = quick:get("x")
  local c, cerr = patient:get("x")
  ngx.say(("first=%s second=%s (%s) third=%s%s"):format(tostring(a), tostring(b), tostring(berr),
          tostring(c), cerr and (" (" .. cerr .. ")") or ""))
end

-- GET /concurrent?n=200&run=R: n light threads of this request, each with
-- its own key, suspended on the same worker at once.
function M.concurrent()
  local n, run = tonumber(ngx.var.arg_n) or 200, ngx.var.arg_run or "r"
  local c = objs.conc
  local pid = ngx.worker.pid()
  local mismatches, errors, first = 0, 0, nil
  local function one(i)
    local key = ("%s:%d:%d"):format(run, pid, i)
    local value = { i = i, pad = ("v%d"):format(i):rep(i % 7 * 300 + 1) }
    local ok, err = c:set(key, value)
    if not ok then errors = errors + 1; first = first or err; return end
    local got, gerr = c:get(key)
    if gerr then errors = errors + 1; first = first or gerr; return end
    if type(got) ~= "table" or got.i ~= i or got.pad ~= value.pad then
      mismatches = mismatches + 1
    end
    local m1, m2 = c:get_many(key, key .. ":absent")
    if type(m1) ~= "table" or m1.i ~= i or m2 ~= nil then mismatches = mismatches + 1 end
  end
  local threads = {}
  for i = 1, n do threads[i] = ngx.thread.spawn(one, i) end
  for i = 1, n do ngx.thread.wait(threads[i]) end
  ngx.say(("threads=%d mismatches=%d errors=%d%s"):format(n, mismatches, errors,
          first and (" first=" .. tostring(first)) or ""))
end

-- GET /pooled?k=..: one get through a pool of 4 connections.
function M.pooled()
  local _, err = objs.pooled:get(ngx.var.arg_k or "k")
  ngx.say(err and ("error " .. err) or "ok")
end

-- GET /names: host names, unix sockets, databases and passwords.
function M.names()
  local out = {}
  local function say(k, v) out[#out + 1] = k .. "=" .. tostring(v) end
  local port = redis_port()
  local lh = cache.RedisCache { host = "localhost", port = port, key_prefix = "cosocket-names:" }
  say("localhost", lh:set("k", "v") and lh:get("k"))
  local bad = cache.RedisCache { host = "cache-test.invalid", port = port }
  say("unresolved", select(2, bad:get("k")))
  local d0 = cache.RedisCache { port = port, key_prefix = "cosocket-names:", db = 0 }
  local d1 = cache.RedisCache { port = port, key_prefix = "cosocket-names:", db = 1 }
  d0:set("db", "zero")
  d1:set("db", "one")
  say("db0", d0:get("db"))
  say("db1", d1:get("db"))
  local sock = env("CACHE_TEST_REDIS_SOCKET")
  if sock then
    local u = cache.RedisCache { unix_socket = sock, key_prefix = "cosocket-names:" }
    local v, err = u:get("db")
    say("unix", v or err)
  end
  local ap = tonumber(env("CACHE_TEST_REDIS_AUTH_PORT") or "")
  if ap then
    local good = cache.RedisCache { port = ap, password = env("CACHE_TEST_REDIS_PASSWORD"),
                                    key_prefix = "cosocket-names:" }
    say("auth", good:set("a", 1) and good:get("a"))
    -- a second object with a wrong password never gets the first one's
    -- pooled (authenticated) connection
    local wrong = cache.RedisCache { port = ap, password = "wrong", key_prefix = "cosocket-names:" }
    say("wrongpass", select(2, wrong:get("a")))
  end
  ngx.say(table.concat(out, "\n"))
end

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- GET /cross: what one transport writes, the other reads, both ways.
function M.cross()
  local pairs_of = {}
  if redis_port() then
    pairs_of[#pairs_of + 1] = { "redis", redis { key_prefix = "cosocket-cross:", transport = "blocking" },
                                redis { key_prefix = "cosocket-cross:" } }
  end
  local uw = env("CACHE_TEST_UWSGI")
  if uw then
    pairs_of[#pairs_of + 1] = { "uwsgi", cache.UWSGICache { cache = "mycache@" .. uw, transport = "blocking" },
                                cache.UWSGICache { cache = "mycache@" .. uw } }
  end
  local shapes = {
    int = 42, neg = -7, big = 2 ^ 52, flt = 1.5, str = "hello", bin = "a\0b\r\n\255",
    list = { 1, 2, 3 }, map = { a = 1, b = { c = "d" } }, t = true, f = false,
    large = ("0123456789abcdef"):rep(3000),
  }
  local out = {}
  for _, p in ipairs(pairs_of) do
    local name, blk, co = p[1], p[2], p[3]
    local good, bad = 0, {}
    for k, v in pairs(shapes) do
      for dir = 1, 2 do
        local w, r = blk, co
        if dir == 2 then w, r = co, blk end
        local key = k .. dir
        local ok = w:set(key, v)
        local got = r:get(key)
        if ok and same(v, got) then good = good + 1 else bad[#bad + 1] = key end
      end
    end
    out[#out + 1] = ("%s good=%d bad=%s"):format(name, good, table.concat(bad, ","))
  end
  ngx.say(table.concat(out, "\n"))
end

-- GET /cluster?s=STEP&p=PREFIX&tag=T&w=PID: the steps of a slot migration
-- on one object of this worker (w: the worker that has it; another one
-- answers 409), between which the spec moves the slot.
function M.cluster()
  if ngx.var.arg_w and tonumber(ngx.var.arg_w) ~= ngx.worker.pid() then
    ngx.status = 409
    return ngx.say("worker ", ngx.worker.pid())
  end
  local step, tag = ngx.var.arg_s, ngx.unescape_uri(ngx.var.arg_tag or "")
  if step == "1" then
    objs.mig = cache.RedisClusterCache { cluster = env("CACHE_TEST_REDIS_CLUSTER"),
                                         key_prefix = ngx.var.arg_p, timeout = 5 }
  end
  local c = objs.mig
  local out = { "pid=" .. ngx.worker.pid() }
  local function say(k, v, err) out[#out + 1] = k .. "=" .. tostring(v) .. (err and ("(" .. err .. ")") or "") end
  if step == "1" then
    say("set", c:set(tag .. "a", "first")) -- loads the slot map
  elseif step == "2" then -- the slot is migrating: ASK for keys not there
    say("a", c:get(tag .. "a"))
    say("setb", c:set(tag .. "b", "second"))
    say("b", c:get(tag .. "b"))
  elseif step == "3" then -- moved: the map is stale, MOVED sends us on
    say("a", c:get(tag .. "a"))
    local all, set = c:set_many { [tag .. "c"] = 3, x = 4 }
    say("all", all)
    say("n", #set)
    say("c", c:get(tag .. "c"))
    local a, cc, x = c:get_many(tag .. "a", tag .. "c", "x")
    say("many", ("%s,%s,%s"):format(tostring(a), tostring(cc), tostring(x)))
  elseif step == "4" then
    say("clear", c:clear())
  end
  ngx.say(table.concat(out, " "))
end

-- GET /sentinel?fake=P&p=PREFIX: a RedisSentinelCache whose only sentinel
-- (a fake) first names a replica (READONLY), then the master.
function M.sentinel()
  local c = cache.RedisSentinelCache { sentinels = "127.0.0.1:" .. ngx.var.arg_fake,
                                       key_prefix = ngx.var.arg_p, timeout = 2 }
  local ok, err = c:set("k", "v")
  ngx.say(tostring(ok), " ", tostring(err), " ", tostring(c:get("k")))
end

-- GET /memcached?p=PREFIX: a pool of two memcached servers through each
-- transport: every key written through one reads back through the other
-- (both pick the same server for it), and both servers hold some.
function M.memcached()
  local s1, s2 = env("CACHE_TEST_MEMCACHED"), env("CACHE_TEST_MEMCACHED2")
  if not (s1 and s2) then return ngx.say("unavailable") end
  local p = ngx.var.arg_p
  local co = cache.MemcachedCache { servers = { s1, s2 }, key_prefix = p }
  local blk = cache.MemcachedCache { servers = { s1, s2 }, key_prefix = p, transport = "blocking" }
  local first = cache.MemcachedCache { servers = { s1 }, key_prefix = p, transport = "blocking" }
  local good, on_first, n = 0, 0, 200
  for i = 1, n do
    local w, r = co, blk
    if i % 2 == 0 then w, r = blk, co end
    w:set("k" .. i, { i = i })
    local v = r:get("k" .. i)
    if type(v) == "table" and v.i == i then good = good + 1 end
    if first:get("k" .. i) ~= nil then on_first = on_first + 1 end
  end
  local many = { co:get_many("k1", "k2", "k3", "absent") }
  local all = co:set_many { m1 = 1, m2 = "two", m3 = { 3 } }
  local m1, m2, m3 = blk:get_many("m1", "m2", "m3")
  local del_all = co:delete_many("m1", "m2", "m3", "k5")
  local inc = co:inc("counter", 5)
  local dec = blk:dec("counter", 7)
  local big = ("0123456789"):rep(300000) -- 3 MB: over memcached's 1 MB item limit
  -- (chunks of 500 kB: these servers keep memcached's default 1 MB items)
  local sp = cache.SpreadSASLMemcachedCache { servers = { s1, s2 }, key_prefix = p .. "spread:",
                                              chunksize = 500000 }
  local spb = cache.SpreadSASLMemcachedCache { servers = { s1, s2 }, key_prefix = p .. "spread:",
                                               chunksize = 500000, transport = "blocking" }
  local sp_ok = sp:set("big", big)
  local sp_back = spb:get("big") == big
  local sp_ok2 = spb:set("big2", big)
  local sp_back2 = sp:get("big2") == big
  co:clear()
  ngx.say(("good=%d/%d first=%d many=%s,%s,%s,%s all=%s moved=%s,%s,%s deleted=%s inc=%s dec=%s spread=%s,%s,%s,%s")
    :format(good, n, on_first, tostring(many[1] and many[1].i), tostring(many[2] and many[2].i),
            tostring(many[3] and many[3].i), tostring(many[4]), tostring(all), tostring(m1),
            tostring(m2), tostring(m3 and m3[1]), tostring(del_all), tostring(inc), tostring(dec),
            tostring(sp_ok), tostring(sp_back), tostring(sp_ok2), tostring(sp_back2)))
end

-- GET /sasl: SASLMemcachedCache with the right and a wrong password.
function M.sasl()
  local srv = env("CACHE_TEST_MEMCACHED_SASL")
  if not srv then return ngx.say("unavailable") end
  local good = cache.SASLMemcachedCache { servers = { srv }, username = env("CACHE_TEST_MEMCACHED_USER"),
                                          password = env("CACHE_TEST_MEMCACHED_PASS"), key_prefix = "cosocket-sasl:" }
  local bad = cache.SASLMemcachedCache { servers = { srv }, username = env("CACHE_TEST_MEMCACHED_USER"),
                                         password = "wrong", key_prefix = "cosocket-sasl:" }
  local ok = good:set("k", "v")
  local v = good:get("k")
  local bv, berr = bad:get("k")
  ngx.say(("good=%s,%s bad=%s (%s)"):format(tostring(ok), tostring(v), tostring(bv), tostring(berr)))
end

-- GET /stall?port=P&n=N: N gets through a cache whose server is stopped.
function M.stall()
  local c = cache.RedisCache { port = tonumber(ngx.var.arg_port), timeout = 1 }
  local v, err = c:get("k")
  ngx.say(tostring(v), " ", tostring(err))
end

return M
