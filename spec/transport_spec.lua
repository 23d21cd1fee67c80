-- The transport options outside nginx (plain Lua 5.4): what is accepted,
-- what is refused, and what "cosocket" does where there are no cosockets.
-- The cosocket path itself runs in nginx: spec/cosocket_spec.lua.
local cache = require "cache"

local PORT = tonumber(os.getenv("CACHE_TEST_REDIS_PORT") or "")

describe("transport options", function()
  it("are taken by every network backend and checked, naming the class", function()
    for _, case in ipairs {
      { "RedisCache", {} },
      { "RedisSentinelCache", { sentinels = "127.0.0.1:1" } },
      { "RedisClusterCache", { cluster = "127.0.0.1:1" } },
      { "UWSGICache", { cache = "c@127.0.0.1:1" } },
      { "MemcachedCache", { servers = "127.0.0.1:1" } },
      { "SASLMemcachedCache", { servers = "127.0.0.1:1", username = "u", password = "p" } },
      { "SpreadSASLMemcachedCache", { servers = "127.0.0.1:1" } },
    } do
      local class, base = case[1], case[2]
      local function with(extra)
        local o = {}
        for k, v in pairs(base) do o[k] = v end
        for k, v in pairs(extra) do o[k] = v end
        return o
      end
      for _, t in ipairs { "auto", "cosocket", "blocking" } do
        local c = cache[class](with { transport = t, pool_size = 5, backlog = 10, keepalive_timeout = 1.5 })
        assert.equal(t, cache.core.transport(c))
      end
      local ok, err = pcall(cache[class], with { transport = "fast" })
      assert.is_false(ok)
      assert.matches(class .. ": option 'transport': 'fast' is not one of auto, cosocket, blocking", err, 1, true)
      ok, err = pcall(cache[class], with { pool_size = 0 })
      assert.is_false(ok)
      assert.matches(class .. ": option 'pool_size'", err, 1, true)
      ok, err = pcall(cache[class], with { keepalive_timeout = -1 })
      assert.is_false(ok)
      assert.matches(class .. ": option 'keepalive_timeout'", err, 1, true)
    end
  end)

  it("are unknown to backends without a network", function()
    local ok, err = pcall(cache.SimpleCache, { transport = "auto" })
    assert.is_false(ok)
    assert.matches("unknown option 'transport'", err, 1, true)
    assert.is_nil(cache.core.transport(cache.SimpleCache()))
  end)

  it("raise constructor errors at the caller's line", function()
    -- (not a tail call: that would leave no caller's frame to name)
    local ok, err = pcall(function() local c = cache.RedisCache { transport = 1 }; return c end)
    assert.is_false(ok)
    assert.matches("transport_spec%.lua:%d+: RedisCache: option 'transport'", err)
  end)

  it("come from CACHE_TRANSPORT in cache.new", function()
    local c = cache.new { CACHE_TYPE = "RedisCache", CACHE_TRANSPORT = "blocking" }
    assert.equal("blocking", cache.core.transport(c.cache))
    local ok, err = pcall(cache.new, { CACHE_TYPE = "SimpleCache", CACHE_TRANSPORT = "auto" })
    assert.is_false(ok)
    assert.matches("unknown option 'transport'", err, 1, true)
    ok, err = pcall(cache.new, { CACHE_TYPE = "RedisCache", CACHE_TRANSPORT = true })
    assert.is_false(ok)
    assert.matches("CACHE_TRANSPORT: string expected, got boolean", err, 1, true)
  end)

  it("auto is the blocking path in plain Lua, with the C methods as they are", function()
    local c = cache.RedisCache { port = PORT or 6379 }
    assert.equal(cache.core.methods.get, c.get)
  end)

  it("'cosocket' outside nginx answers nil, err and never blocks", function()
    local c = cache.RedisCache { port = PORT or 6379, transport = "cosocket" }
    local v, err = c:get("k")
    assert.is_nil(v)
    assert.matches("RedisCache: transport 'cosocket' is not available in plain Lua", err, 1, true)
    local ok, err2 = c:set("k", 1)
    assert.is_false(ok)
    assert.matches("not available", err2, 1, true)
    local a, b, e = c:get_many("a", "b")
    assert.is_nil(a)
    assert.is_nil(b)
    assert.matches("not available", e, 1, true)
    -- bad arguments still raise at the caller's line
    local ok3, err3 = pcall(function() return cache.RedisCache { port = 1, transport = "blocking" }:get({}) end)
    assert.is_false(ok3)
    assert.matches("key: string expected", err3, 1, true)
  end)
end)
