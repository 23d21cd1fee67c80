-- The fused hit path of memoize (cache.core.memo_fetch, bindings/memo.c)
-- must compute exactly the key of the plain path (core.memo_key) and make
-- the same decisions; the decorator specs cover the behaviour, this file
-- the bytes of the keys, argument by argument, and when the path declines.
local cache = require "cache"
local core = cache.core

local function ctx_for(name, hash, source, want_key)
  return core.memo_ctx(hash or "md5", name, source, name .. "_memver", want_key)
end

local function pack(...) return { n = select("#", ...), ... } end

describe("memo_fetch", function()
  local c
  before_each(function()
    c = cache.SimpleCache { threshold = 1000 }
  end)

  local function version(name)
    assert.is_true(c:set(name .. "_memver", "AbC123", 0))
    return "AbC123"
  end

  local samples = {
    {}, { 1 }, { 1, 2 }, { 0 }, { -1 }, { -32 }, { -33 }, { 127 }, { 128 }, { 255 }, { 256 },
    { -128 }, { -129 }, { 65535 }, { 65536 }, { -32768 }, { -32769 },
    { 4294967295 }, { 4294967296 }, { -2147483648 }, { -2147483649 },
    { math.maxinteger }, { math.mininteger }, { 0.5 }, { -0.0 }, { 1e300 }, { 1 / 0 }, { 2.0 },
    { true }, { false }, { "" }, { "a" }, { ("s"):rep(31) }, { ("s"):rep(32) },
    { ("s"):rep(255) }, { ("s"):rep(256) }, { ("s"):rep(65535) }, { ("s"):rep(65536) },
    { "with\0nul" }, { 1, nil, 3 }, { nil, "x" }, { "x", true, 2.5, -7 },
  }

  it("computes the key of core.memo_key for every kind of scalar", function()
    for _, hash in ipairs { "md5", "sha1", "sha256", "sha512" } do
      for _, source in ipairs { false, true } do
        local src = source and "function() return 1 end" or nil
        local name = "spec/memo_fetch:" .. hash
        local ctx = ctx_for(name, hash, src)
        local v = version(name)
        for round = 1, 2 do -- the second time from the table of recent heads
          for i, args in ipairs(samples) do
            local n = #args
            if i == 41 then n = 3 elseif i == 42 then n = 2 end
            local want = core.memo_key(hash, name, src, v, table.unpack(args, 1, n))
            local got = pack(core.memo_fetch(ctx, c, table.unpack(args, 1, n)))
            assert.equal(want, got[1], ("%s sample %d round %d"):format(hash, i, round))
            assert.is_nil(got[2])
          end
        end
      end
    end
  end)

  it("keeps keys right through evictions of the recent heads", function()
    local ctx = ctx_for("evict")
    local v = version("evict")
    for round = 1, 3 do
      for i = 1, 1000 do
        local a, b = i % 37, (i * 7919) % 1000
        local want = core.memo_key("md5", "evict", nil, v, a, b, "s")
        assert.equal(want, (core.memo_fetch(ctx, c, a, b, "s")), ("%d %d %d"):format(round, a, b))
      end
    end
  end)

  it("drops trailing nils as memo_key does", function()
    local ctx = ctx_for("trail")
    local v = version("trail")
    local a = core.memo_fetch(ctx, c, 1, nil, nil)
    assert.equal(core.memo_key("md5", "trail", nil, v, 1), a)
  end)

  it("returns true and the value on a hit, the key when asked to", function()
    local v = version("hit")
    local key = core.memo_key("md5", "hit", nil, v, 7)
    assert.is_true(c:set(key, { x = 1 }))
    local r = pack(core.memo_fetch(ctx_for("hit"), c, 7))
    assert.is_true(r[1])
    assert.same({ x = 1 }, r[2])
    r = pack(core.memo_fetch(ctx_for("hit", nil, nil, true), c, 7))
    assert.equal(key, r[1])
    assert.same({ x = 1 }, r[2])
  end)

  it("gives the count of several results stored as one table", function()
    local v = version("multi")
    local key = core.memo_key("md5", "multi", nil, v, 1)
    assert.is_true(c:set(key, { 10, 20, __cache_results = 3 }))
    local r = pack(core.memo_fetch(ctx_for("multi"), c, 1))
    assert.is_true(r[1])
    assert.equal(4, r.n)
    assert.is_nil(r[3])
    assert.equal(3, r[4])
  end)

  it("returns the key (not true) for a stored nil", function()
    local v = version("nil")
    local key = core.memo_key("md5", "nil", nil, v, 1)
    assert.is_true(c:set(key, nil))
    local r = pack(core.memo_fetch(ctx_for("nil"), c, 1))
    assert.equal(key, r[1])
    assert.is_nil(r[2])
  end)

  it("declines when the version is missing or not a non-empty string", function()
    local ctx = ctx_for("nover")
    assert.equal(0, select("#", core.memo_fetch(ctx, c, 1)))
    assert.is_true(c:set("nover_memver", ""))
    assert.equal(0, select("#", core.memo_fetch(ctx, c, 1)))
    assert.is_true(c:set("nover_memver", 12))
    assert.equal(0, select("#", core.memo_fetch(ctx, c, 1)))
  end)

  it("declines for arguments that are not scalars", function()
    local ctx = ctx_for("tables")
    version("tables")
    assert.equal(0, select("#", core.memo_fetch(ctx, c, {})))
    assert.equal(0, select("#", core.memo_fetch(ctx, c, 1, print)))
  end)

  it("declines for objects that are not backends of cache.core, or closed ones", function()
    local ctx = ctx_for("objects")
    assert.equal(0, select("#", core.memo_fetch(ctx, {}, 1)))
    assert.equal(0, select("#", core.memo_fetch(ctx, "x", 1)))
    local d = cache.SimpleCache {}
    d:close()
    assert.equal(0, select("#", core.memo_fetch(ctx, d, 1)))
  end)

  it("declines when get or get_many was replaced from Lua", function()
    local ctx = ctx_for("replaced")
    version("replaced")
    c.get = function() return nil end
    assert.equal(0, select("#", core.memo_fetch(ctx, c, 1)))
    c.get = nil
    local orig = core.methods.get_many
    core.methods.get_many = function(self, ...) return orig(self, ...) end
    local ok, n = pcall(function() return select("#", core.memo_fetch(ctx, c, 1)) end)
    core.methods.get_many = orig
    assert.is_true(ok)
    assert.equal(0, n)
    assert.is_true(select("#", core.memo_fetch(ctx, c, 1)) > 0)
  end)

  it("is what a memoized function uses: its entries are found by make_cache_key", function()
    local app = cache.new { CACHE_TYPE = "SimpleCache" }
    local calls = 0
    local f = app:memoize { name = "spec.fused" }(function(a, b)
      calls = calls + 1
      return a .. ":" .. tostring(b)
    end)
    for _, args in ipairs { { 1, 2 }, { "x", true }, { 2.5, -1 }, { "long" .. ("z"):rep(300), 0 } } do
      local r = f(args[1], args[2])
      assert.equal(r, f(args[1], args[2]))
      assert.equal(r, app:get(f.make_cache_key(args[1], args[2])))
    end
    assert.equal(4, calls)
  end)

  it("returns what the function returned: a table, several values, none", function()
    local app = cache.new { CACHE_TYPE = "SimpleCache" }
    local t = app:memoize { name = "spec.table" }(function(a) return { a = a } end)
    assert.same({ a = 1 }, t(1))
    assert.same({ a = 1 }, t(1))
    local m = app:memoize { name = "spec.multi" }(function(a) return a, nil, a + 1 end)
    assert.same({ n = 3, 5, nil, 6 }, pack(m(5)))
    assert.same({ n = 3, 5, nil, 6 }, pack(m(5)))
    local none = app:memoize { name = "spec.none", cache_none = true }(function() end)
    assert.equal(0, select("#", none()))
    assert.equal(0, select("#", none()))
  end)

  -- The behaviour specs run on a fake Lua backend, where memo_fetch steps
  -- aside; these run the options that act on the fused hit path against a
  -- real one.
  it("honours is_stale on the fused path", function()
    local app = cache.new { CACHE_TYPE = "SimpleCache" }
    local calls, stale = 0, false
    local f = app:memoize { name = "spec.stale", is_stale = function() return stale end }(function(a)
      calls = calls + 1
      return a * 10 + calls
    end)
    assert.equal(11, f(1))
    assert.equal(11, f(1))
    stale = true
    assert.equal(12, f(1)) -- a stale hit is a miss: recomputed and stored
    stale = false
    assert.equal(12, f(1))
    assert.equal(2, calls)
  end)

  it("honours forced_update on the fused path", function()
    local app = cache.new { CACHE_TYPE = "SimpleCache" }
    local calls, force = 0, false
    local f = app:memoize { name = "spec.forced", forced_update = function() return force end }(function(a)
      calls = calls + 1
      return a + calls
    end)
    assert.equal(2, f(1))
    assert.equal(2, f(1))
    force = true
    assert.equal(3, f(1))
    force = false
    assert.equal(3, f(1)) -- the forced result was stored
    assert.equal(2, calls)
  end)

  it("reads the version on every call: delete_memoized takes effect at once", function()
    local app = cache.new { CACHE_TYPE = "SimpleCache" }
    local calls = 0
    local f = app:memoize { name = "spec.reset" }(function(a) calls = calls + 1; return a end)
    f(1)
    f(1)
    app:delete_memoized(f) -- a new version: the fused path must read it
    f(1)
    assert.equal(2, calls)
  end)

  it("rejects something that is not a ctx", function()
    assert.has_error(function() core.memo_fetch({}, c, 1) end)
    assert.has_error(function() core.memo_fetch(nil, c, 1) end)
  end)
end)
