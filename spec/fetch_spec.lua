-- c:fetch (API.md §4): levels, neg_timeout, stale serving, fail-open,
-- early refresh, the lock (a killed owner's lock expires after lock_ttl),
-- its counters in c:stats(), and its envelope on every backend.
local cache = require "cache"
local helpers = require "support.helpers"

local core = cache.core
local now = core.monotonic
local root = os.getenv("CACHE_ROOT") or "."

local function counter()
  local n = 0
  return function() n = n + 1 return n end, function() return n end
end

local function have_redis()
  return os.getenv("CACHE_TEST_REDIS_PORT") ~= nil and cache.backend_types().RedisCache
end

local function redis_config(extra)
  local cfg = {
    CACHE_TYPE = "RedisCache",
    CACHE_REDIS_HOST = os.getenv("CACHE_TEST_REDIS_HOST") or "127.0.0.1",
    CACHE_REDIS_PORT = tonumber(os.getenv("CACHE_TEST_REDIS_PORT")),
    CACHE_KEY_PREFIX = helpers.unique("fetch"),
    CACHE_OPTIONS = { timeout = 5 },
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

describe("fetch", function()
  local c
  before_each(function()
    c = cache.new { CACHE_TYPE = "SimpleCache", CACHE_THRESHOLD = 10000 }
  end)

  describe("levels and values", function()
    it("computes a miss (level 3), then serves it (level 2); get reads the plain value", function()
      local bump, runs = counter()
      local function cb(a, b) bump() return { sum = a + b } end
      local v, err, level = c:fetch("k", nil, cb, 2, 3)
      assert.same({ sum = 5 }, v)
      assert.is_nil(err)
      assert.equal(3, level)
      v, err, level = c:fetch("k", nil, cb, 2, 3)
      assert.same({ sum = 5 }, v)
      assert.is_nil(err)
      assert.equal(2, level)
      assert.equal(1, runs())
      assert.same({ sum = 5 }, c:get("k"))
      assert.same({ k = { sum = 5 } }, c:get_dict("k"))
      assert.is_true(c:has("k"))
    end)

    it("reads a value stored by set as fresh for as long as it is stored", function()
      c:set("plain", "from set")
      local v, _, level = c:fetch("plain", nil, function() error("not called") end)
      assert.equal("from set", v)
      assert.equal(2, level)
    end)

    it("honours the callback's timeout (negative: returned, not stored)", function()
      local v, _, level = c:fetch("t", { timeout = 100 }, function() return "once", nil, -1 end)
      assert.equal("once", v)
      assert.equal(3, level)
      assert.is_false(c:has("t"))
      c:fetch("t2", { timeout = 100 }, function() return "short", nil, 0.1 end)
      assert.equal("short", c:get("t2"))
      helpers.sleep(0.2)
      assert.is_nil(c:get("t2"))
    end)

    it("stores nothing for a nil result without neg_timeout", function()
      local bump, runs = counter()
      for _ = 1, 3 do
        local v, err, level = c:fetch("nothing", nil, function() bump() return nil end)
        assert.is_nil(v)
        assert.is_nil(err)
        assert.equal(3, level)
      end
      assert.equal(3, runs())
      assert.is_false(c:has("nothing"))
    end)
  end)

  describe("neg_timeout", function()
    it("stores a nil result for that long and does not recompute it within", function()
      local bump, runs = counter()
      local opts = { neg_timeout = 0.3 }
      local function cb() bump() return nil end
      local v, err, level = c:fetch("neg", opts, cb)
      assert.is_nil(v)
      assert.is_nil(err)
      assert.equal(3, level)
      for _ = 1, 5 do
        v, err, level = c:fetch("neg", opts, cb)
        assert.is_nil(v)
        assert.is_nil(err)
        assert.equal(2, level)
      end
      assert.equal(1, runs())
      assert.is_true(c:has("neg")) -- a stored nil
      helpers.sleep(0.4)
      c:fetch("neg", opts, cb)
      assert.equal(2, runs())
    end)
  end)

  describe("failures of the callback", function()
    it("propagates an error unchanged when nothing stale is at hand", function()
      local e = setmetatable({ why = "db" }, { __tostring = function() return "db error" end })
      local ok, got = pcall(c.fetch, c, "boom", nil, function() error(e) end)
      assert.is_false(ok)
      assert.equal(e, got)
      ok, got = pcall(c.fetch, c, "boom", nil, function() error("plain message") end)
      assert.is_false(ok)
      assert.matches("fetch_spec%.lua:%d+: plain message$", got)
      assert.is_false(c:has("boom"))
    end)

    it("returns nil, err (no level) and stores nothing for nil, err", function()
      local r = helpers.pack(c:fetch("e", nil, function() return nil, "not found" end))
      assert.same({ n = 2, nil, "not found" }, r)
      assert.is_false(c:has("e"))
    end)

    it("serves the stale value at level 4 while the callback fails for 2 s, never an error", function()
      local logged = {}
      local saved = cache.log
      cache.log = function(msg) logged[#logged + 1] = msg end
      local opts = { timeout = 0.2, stale_timeout = 30 }
      assert.equal("old", (c:fetch("s", opts, function() return "old" end)))
      helpers.sleep(0.3)
      local deadline, reads, i = now() + 2, 0, 0
      while now() < deadline do
        i = i + 1
        local v, err, level = c:fetch("s", opts, function()
          if i % 2 == 0 then error("database down") end
          return nil, "database down"
        end)
        assert.equal("old", v)
        assert.is_nil(err)
        assert.equal(4, level)
        reads = reads + 1
        helpers.sleep(0.05)
      end
      cache.log = saved
      assert.is_true(reads >= 10)
      assert.matches("serving the stale value: .*database down", logged[1])
      local v, _, level = c:fetch("s", opts, function() return "new" end)
      assert.equal("new", v)
      assert.equal(3, level)
    end)

    it("fails open when the backend is down: answers from the callback", function()
      if not cache.backend_types().RedisCache then return pending("no RedisCache") end
      local saved = cache.log
      local logged = {}
      cache.log = function(msg) logged[#logged + 1] = msg end
      local down = cache.new { CACHE_TYPE = "RedisCache", CACHE_REDIS_HOST = "127.0.0.1",
                               CACHE_REDIS_PORT = 1, CACHE_OPTIONS = { connect_timeout = 0.2 } }
      local bump, runs = counter()
      for _, opts in ipairs { {}, { lock = true }, { stale_timeout = 10, lock = true, refresh = "background" } } do
        local t0 = now()
        local v, err, level = down:fetch("k", opts, function() bump() return "computed" end)
        assert.equal("computed", v)
        assert.is_nil(err)
        assert.equal(3, level)
        assert.is_true(now() - t0 < 2)
      end
      cache.log = saved
      assert.equal(3, runs())
      assert.matches("cache: fetch: reading failed", logged[1])
      assert.is_true(down:stats().errors >= 3)
    end)
  end)

  describe("early_refresh", function()
    it("recomputes about once per timeout, before expiry; only the refreshing read waits", function()
      local opts = { timeout = 1, early_refresh = 1 }
      local runs = {}
      local function cb()
        runs[#runs + 1] = now()
        core.sleep(0.05)
        return #runs
      end
      local slow_other, refreshes = 0, 0
      local last_value
      local t_end = now() + 5
      while now() < t_end do
        local t0 = now()
        local v, err, level = c:fetch("xf", opts, cb)
        local took = now() - t0
        assert.is_nil(err)
        assert.is_not.equal(4, level) -- never stale
        if level == 3 then
          refreshes = refreshes + 1
          assert.is_true(took >= 0.045)
        elseif took >= 0.045 then
          slow_other = slow_other + 1
        end
        last_value = v
        -- about 1000 reads a second: XFetch then starts each refresh about
        -- delta * ln(1000 * delta) = 0.2 s before expiry
        core.sleep(0.001)
      end
      assert.equal(#runs, refreshes)
      assert.is_true(#runs >= 4 and #runs <= 9, "runs: " .. #runs)
      -- a read that waited for a refresh would take the callback's 50 ms;
      -- one or two slow reads are the loaded machine's
      assert.is_true(slow_other <= 2, slow_other .. " reads that did not refresh were slow")
      -- each recomputation began while the value before it was still fresh
      for i = 2, #runs do
        local gap = runs[i] - runs[i - 1]
        assert.is_true(gap < 1, ("run %d came %.3f s after the previous"):format(i, gap))
      end
      assert.equal(#runs, last_value)
    end)
  end)

  describe("lock", function()
    local function redis_or_fs()
      if have_redis() then return cache.new(redis_config()) end
      return cache.new { CACHE_TYPE = "FileSystemCache", CACHE_DIR = helpers.tmpdir("fetchlock") }
    end

    it("releases its lock after computing, and leaves none after a failure", function()
      local r = redis_or_fs()
      assert.equal("v", (r:fetch("lk", { lock = true }, function() return "v" end)))
      assert.is_false(r:has("lk.fetch-lock"))
      pcall(r.fetch, r, "lk2", { lock = true }, function() error("x") end)
      assert.is_false(r:has("lk2.fetch-lock"))
      r:fetch("lk3", { lock = true }, function() return nil, "no" end)
      assert.is_false(r:has("lk3.fetch-lock"))
      r:clear()
    end)

    it("a killed owner's lock expires after lock_ttl; waiters time out until then", function()
      if not have_redis() then return pending("redis not started") end
      local cfg = redis_config()
      local r = cache.new(cfg)
      local ready = helpers.tmpdir("owner") .. "/ready"
      -- an owner in another process takes the lock and is killed mid-callback
      local script = ([[
        local cache = require "cache"
        local c = cache.new { CACHE_TYPE = "RedisCache", CACHE_REDIS_HOST = %q,
          CACHE_REDIS_PORT = %d, CACHE_KEY_PREFIX = %q }
        c:fetch("owned", { lock = true, lock_ttl = 1.5 }, function()
          io.open(%q, "w"):close()
          cache.core.sleep(60)
          return "never"
        end)]]):format(cfg.CACHE_REDIS_HOST, cfg.CACHE_REDIS_PORT, cfg.CACHE_KEY_PREFIX, ready)
      local pid = helpers.sh(("LUA_PATH=%q LUA_CPATH=%q lua5.4 -e %q >/dev/null 2>&1 & echo $!")
        :format(os.getenv("LUA_PATH") or "", os.getenv("LUA_CPATH") or "", script))
      local t_wait = now() + 10
      while not io.open(ready) and now() < t_wait do helpers.sleep(0.02) end
      assert.truthy(io.open(ready), "the owner never started")
      local t_locked = now()
      helpers.sh("kill -9 " .. pid)
      -- held: a waiter gives up after lock_timeout
      local t0 = now()
      local v, err, level = r:fetch("owned", { lock = true, lock_timeout = 0.3 }, function() return "mine" end)
      assert.is_nil(v)
      assert.equal("lock timeout", err)
      assert.is_nil(level)
      assert.is_true(now() - t0 >= 0.29)
      assert.is_true(now() - t0 < 1.2)
      -- a waiter with a longer patience takes the lock over once it expired
      v, err, level = r:fetch("owned", { lock = true, lock_timeout = 5 }, function() return "mine" end)
      assert.equal("mine", v)
      assert.is_nil(err)
      assert.equal(3, level)
      assert.is_true(now() - t_locked >= 1.4, "taken over before lock_ttl")
      local s = r:stats()
      assert.equal(2, s.lock_waits)
      assert.equal(1, s.lock_timeouts)
      r:clear()
    end)

    it("serves a stale value at once while another caller holds the lock", function()
      local r = redis_or_fs()
      local opts = { timeout = 0.1, stale_timeout = 30, lock = true }
      r:fetch("st", opts, function() return "old" end)
      helpers.sleep(0.15)
      -- someone else's lock
      local token = core.fetch_lock(r.cache, "st", 10)
      assert.is_string(token)
      local t0 = now()
      local v, err, level = r:fetch("st", opts, function() return "new" end)
      assert.equal("old", v)
      assert.is_nil(err)
      assert.equal(4, level)
      assert.is_true(now() - t0 < 0.5)
      assert.is_true(core.fetch_unlock(r.cache, "st", token))
      assert.equal("new", (r:fetch("st", opts, function() return "new" end)))
      r:clear()
    end)
  end)

  describe("refresh = 'background' in plain Lua", function()
    it("the caller taking the lock recomputes; the others get the stale value", function()
      local opts = { timeout = 0.1, stale_timeout = 30, refresh = "background" }
      c:fetch("bg", opts, function() return "old" end)
      helpers.sleep(0.15)
      local token = core.fetch_lock(c.cache, "bg", 10)
      assert.equal("old", (c:fetch("bg", opts, function() return "new" end)))
      core.fetch_unlock(c.cache, "bg", token)
      local v, _, level = c:fetch("bg", opts, function() return "new" end)
      assert.equal("new", v)
      assert.equal(3, level)
    end)
  end)

  describe("stats", function()
    it("counts a scripted sequence exactly", function()
      local saved = cache.log
      cache.log = function() end
      finally(function() cache.log = saved end)
      local opts = { timeout = 0.1, stale_timeout = 30 }
      c:fetch("a", opts, function() return 1 end)           -- miss, run, set, level 3
      c:fetch("a", opts, function() return 1 end)           -- hit, level 2
      helpers.sleep(0.15)
      c:fetch("a", opts, function() return nil, "e" end)    -- hit (stale), run, error, level 4
      c:fetch("a", opts, function() error("x") end)          -- hit (stale), run, error, level 4
      c:fetch("a", opts, function() return 2 end)           -- hit (stale), run, set, level 3
      c:fetch("b", nil, function() return nil, "no" end)    -- miss, run, error
      c:fetch("n", { neg_timeout = 10 }, function() end)    -- miss, run, set, level 3
      c:fetch("n", { neg_timeout = 10 }, function() end)    -- hit, level 2
      local s = c:stats()
      assert.same({ 0, 2, 3, 2 }, s.levels)
      assert.equal(6, s.callback_runs)
      assert.equal(3, s.callback_errors)
      assert.equal(2, s.stale_served)
      assert.equal(5, s.hits)
      assert.equal(3, s.misses)
      assert.equal(3, s.sets)
      assert.equal(0, s.lock_waits)
      assert.equal(0, s.lock_timeouts)
      assert.equal(0, s.errors)
    end)
  end)

  describe("misuse", function()
    it("raises at the caller's line for unknown options, bad keys and callbacks", function()
      local function err_of(f)
        local ok, err = pcall(f)
        assert.is_false(ok)
        return err
      end
      assert.matches("fetch_spec%.lua:%d+: fetch: unknown option 'bogus'",
                     err_of(function() c:fetch("k", { bogus = 1 }, print) end))
      assert.matches("fetch_spec%.lua:%d+: fetch: key: string expected, got table",
                     err_of(function() c:fetch({}, nil, print) end))
      assert.matches("fetch_spec%.lua:%d+: fetch: callback: function expected, got string",
                     err_of(function() c:fetch("k", nil, "nope") end))
      assert.matches("fetch: option 'refresh': 'inline' or 'background' expected, got 'later'",
                     err_of(function() c:fetch("k", { refresh = "later" }, print) end))
      assert.matches("fetch: option 'lock_ttl': number > 0 expected",
                     err_of(function() c:fetch("k", { lock_ttl = 0 }, print) end))
      assert.matches("fetch: options table or nil expected, got number",
                     err_of(function() c:fetch("k", 5, print) end))
      local lua_backed = cache.new { CACHE_TYPE = function() return { get = function() end } end }
      assert.matches("fetch_spec%.lua:%d+: fetch: needs one of cache's backends",
                     err_of(function() lua_backed:fetch("k", nil, print) end))
    end)

    it("takes its defaults from CACHE_FETCH_* keys, checked by cache.new", function()
      local d = cache.new { CACHE_FETCH_NEG_TIMEOUT = 10, CACHE_FETCH_LOCK = true }
      local bump, runs = counter()
      d:fetch("x", nil, function() bump() end)
      d:fetch("x", nil, function() bump() end)
      assert.equal(1, runs())
      local ok, err = pcall(cache.new, { CACHE_FETCH_REFRESH = "sometimes" })
      assert.is_false(ok)
      assert.matches("cache.new: CACHE_FETCH_REFRESH: 'inline' or 'background' expected", err)
      ok, err = pcall(cache.new, { CACHE_FETCH_LOCK = "yes" })
      assert.is_false(ok)
      assert.matches("CACHE_FETCH_LOCK: boolean expected", err)
    end)
  end)

  it("examples/fetch.lua runs and prints what its comments say", function()
    local out = helpers.sh(("cd %s && lua5.4 examples/fetch.lua 2>&1"):format(root))
    assert.matches("user 1\tnil\t3\nuser 1\tnil\t2\nuser 1\n", out)
    assert.matches("serving the stale value: database unreachable\nuser 1\tnil\t4\n", out)
    assert.matches("lookups of user:404:\t1\n3\n1\n", out)
    assert.matches("callback runs 3 %(1 failed%), stale served 1", out)
  end)

  -- The same envelope on every backend: what fetch stores, get reads plain.
  for _, f in ipairs(helpers.backends()) do
    describe("on " .. f.name, function()
      local ok, why = f.available()
      if not ok then
        it("works", function() pending(f.name .. ": " .. tostring(why)) end)
        return
      end
      it("computes, serves, stores nil with neg_timeout and locks", function()
        local b = f.new()
        local d = cache.new { CACHE_TYPE = function() return b end }
        local bump, runs = counter()
        local v, _, level = d:fetch("k", { lock = true }, function() bump() return { 1, "two" } end)
        assert.same({ 1, "two" }, v)
        assert.equal(3, level)
        v, _, level = d:fetch("k", { lock = true }, function() bump() return "again" end)
        assert.same({ 1, "two" }, v)
        assert.is_true(level == 1 or level == 2)
        assert.equal(1, runs())
        assert.same({ 1, "two" }, b:get("k"))
        assert.same({ { 1, "two" } }, { b:get_many("k") })
        assert.is_false(b:has("k.fetch-lock"))
        d:fetch("none", { neg_timeout = 30 }, function() bump() end)
        v, _, level = d:fetch("none", { neg_timeout = 30 }, function() bump() end)
        assert.is_nil(v)
        assert.is_true(level == 1 or level == 2)
        assert.equal(2, runs())
        b:clear()
      end)
    end)
  end
end)
