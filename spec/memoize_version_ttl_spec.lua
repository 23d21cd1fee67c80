-- Version keys of memoize expire: each is written with the decorator's
-- timeout when it is created (and again on every stored result), so calls
-- that store nothing (a nil result, a raising function) leave no key that
-- lives forever. Checked on a real Redis through PTTL, on the fused path
-- (bindings/memo.c memo_fetch: a plain function on a cache.core backend)
-- and on the plain Lua path (make_name, methods).
local cache = require "cache"
local helpers = require "support.helpers"
local R = require "support.redis_helpers"

local PORT = tonumber(os.getenv("CACHE_TEST_REDIS_PORT") or "")

describe("memoize version keys on Redis", function()
  if not PORT or not cache.backend_types().RedisCache then
    it("is skipped", function() pending("redis not started (spec/servers/redis.sh)") end)
    return
  end

  local prefix, c
  before_each(function()
    prefix = helpers.unique("memver")
    c = cache.new{ CACHE_TYPE = "redis", CACHE_REDIS_HOST = "127.0.0.1", CACHE_REDIS_PORT = PORT,
                   CACHE_KEY_PREFIX = prefix, CACHE_DEFAULT_TIMEOUT = 120 }
  end)

  -- PTTL (milliseconds; -1: no expiry, -2: no key) of every version key.
  local function version_ttls()
    local out = {}
    local keys = R.cli(PORT, "--scan", "--pattern", prefix .. "*_memver")
    for key in keys:gmatch("[^\n]+") do
      out[key:sub(#prefix + 1)] = tonumber(R.cli(PORT, "PTTL", key))
    end
    return out
  end

  -- Every version key exists and expires within (0, limit] seconds.
  local function assert_finite(limit, want_count)
    local n = 0
    for key, ttl in pairs(version_ttls()) do
      n = n + 1
      assert.is_true(ttl > 0 and ttl <= limit * 1000,
                     ("%s has PTTL %d, want (0, %d] s"):format(key, ttl, limit))
    end
    assert.equal(want_count, n)
  end

  local function raising() error("boom") end

  it("a nil result on the fused path leaves the version key with the decorator's timeout", function()
    local m = c:memoize{ name = "fused_nil", timeout = 30 }(function() return nil end)
    assert.is_nil(m(1))
    assert.is_nil(m(1)) -- the version exists now: this call takes memo_fetch
    assert_finite(30, 1)
  end)

  it("a raising call on the fused path leaves the version key with the decorator's timeout", function()
    local m = c:memoize{ name = "fused_err", timeout = 30 }(function(a) raising(a) end)
    assert.is_false(pcall(m, 1))
    assert.is_false(pcall(m, 1))
    assert_finite(30, 1)
  end)

  it("a nil result or a raising call on the plain path (make_name) expires too", function()
    local mk = function(n) return n .. "/x" end
    local m = c:memoize{ name = "plain_nil", timeout = 30, make_name = mk }(function() return nil end)
    assert.is_nil(m(1))
    local e = c:memoize{ name = "plain_err", timeout = 30, make_name = mk }(function(a) raising(a) end)
    assert.is_false(pcall(e, 1))
    assert_finite(30, 2)
  end)

  it("methods: instances without __cache_key leave no never-expiring version keys", function()
    local m = c:memoize{ name = "meth", timeout = 30 }(function(self, a) return self.none end)
    local e = c:memoize{ name = "meth_err", timeout = 30 }(function(self, a) raising(a) end)
    for _ = 1, 20 do
      local obj = {}
      assert.is_nil(m(obj, 1))
      assert.is_false(pcall(e, obj, 1))
    end
    assert_finite(30, 2 + 2 * 20) -- two function keys, one per instance and method
  end)

  it("without a timeout the version key gets the backend's default", function()
    local m = c:memoize{ name = "dflt" }(function() return nil end)
    assert.is_nil(m(1))
    assert_finite(120, 1)
  end)

  it("a stored result still refreshes the version key with the entry's timeout", function()
    local m = c:memoize{ name = "refresh", timeout = 30 }(function(a) return a end)
    assert.is_nil(m(nil))
    m.cache_timeout = 90
    assert.equal(1, m(1))
    local ttl = version_ttls().refresh_memver
    assert.is_true(ttl > 30 * 1000 and ttl <= 90 * 1000, tostring(ttl))
  end)

  it("delete_memoized writes the new version with the decorator's timeout", function()
    local m = c:memoize{ name = "del", timeout = 30 }(function() return nil end)
    assert.is_true((c:delete_memoized(m)))
    assert_finite(30, 1)
  end)

  it("timeout = 0 is the caller's choice: the version key never expires", function()
    local m = c:memoize{ name = "forever", timeout = 0 }(function() return nil end)
    assert.is_nil(m(1))
    assert.same({ forever_memver = -1 }, version_ttls())
  end)
end)
