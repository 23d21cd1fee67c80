-- The value codec seen from Lua: what round-trips, what raises, and that
-- decoding arbitrary bytes never crashes.
local cache = require "cache"

local mtype = math.type or function(x)
  return x == math.floor(x) and "integer" or "float"
end

describe("values", function()
  it("encodes as standard MessagePack", function()
    assert.equal("\xc0", cache.encode(nil))
    assert.equal("\xc3", cache.encode(true))
    assert.equal("\x05", cache.encode(5))
    assert.equal("\xa3abc", cache.encode("abc"))
    assert.equal("\x92\x01\x02", cache.encode({ 1, 2 }))
    assert.equal("\x81\xa1a\x01", cache.encode({ a = 1 }))
    assert.equal("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", cache.encode(1.5))
  end)

  it("keeps integer and float apart", function()
    assert.equal("integer", mtype((cache.decode(cache.encode(3)))))
    assert.equal("float", mtype((cache.decode(cache.encode(3.5)))))
    if not jit then
      assert.equal("float", math.type((cache.decode(cache.encode(3.0)))))
      assert.equal(math.maxinteger, (cache.decode(cache.encode(math.maxinteger))))
      assert.equal(math.mininteger, (cache.decode(cache.encode(math.mininteger))))
    end
    assert.equal(math.huge, (cache.decode(cache.encode(math.huge))))
    local nan = cache.decode(cache.encode(0 / 0))
    assert.is_true(nan ~= nan)
  end)

  it("round-trips a table with holes as a map", function()
    local t = { 1, nil, 3 }
    assert.same(t, (cache.decode(cache.encode(t))))
    local sparse = { [1] = "a", [1000000] = "b" }
    assert.same(sparse, (cache.decode(cache.encode(sparse))))
  end)

  it("names the path of what cannot be stored", function()
    local cases = {
      { { user = { callback = print } }, "value%.user%.callback: cannot store a function" },
      { { list = { 1, 2, print } }, "value%.list%[3%]: cannot store a function" },
      { { ["not id"] = { print } }, 'value%["not id"%]%[1%]: cannot store a function' },
      { { [{}] = 1 }, "value: cannot use a table as a table key" },
      { coroutine.create(print), "value: cannot store a thread" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(cache.encode, case[1])
      assert.is_false(ok)
      assert.matches(case[2], err)
    end
  end)

  it("refuses cycles but allows shared subtables", function()
    local shared = { 1 }
    assert.same({ a = { 1 }, b = { 1 } }, (cache.decode(cache.encode({ a = shared, b = shared }))))
    local t = {}
    t.t = t
    local ok, err = pcall(cache.encode, t)
    assert.is_false(ok)
    assert.matches("value%.t: cannot store a cyclic table", err)
  end)

  it("limits nesting to 100 levels, on encode and decode", function()
    local function nest(n)
      local root = {}
      local cur = root
      for _ = 2, n do
        cur[1] = {}
        cur = cur[1]
      end
      return root
    end
    assert.is_string(cache.encode(nest(100)))
    local ok, err = pcall(cache.encode, nest(101))
    assert.is_false(ok)
    assert.matches("nested deeper than 100 levels", err)
    ok, err = pcall(cache.encode, nest(1000))
    assert.is_false(ok)
    assert.is_string(err)
    -- hostile bytes: 200 nested one-element arrays
    local v, why = cache.decode(("\x91"):rep(200) .. "\xc0")
    assert.is_nil(v)
    assert.matches("nested too deeply", why)
  end)

  it("reports corrupt bytes instead of crashing", function()
    local bad = {
      "", "\xc1", "\xa5ab", "\xdd\xff\xff\xff\xff", "\xdf\x7f\xff\xff\xff\x01",
      "\x81\xc0\x01", "\x81\x91\x01\x01", "\xc0\xc0", "\xd4\x01\x02", "\xcb\x00",
    }
    for _, b in ipairs(bad) do
      local v, why = cache.decode(b)
      assert.is_nil(v)
      assert.is_string(why)
    end
  end)

  it("decodes random and truncated bytes totally", function()
    math.randomseed(12345)
    local seeds = { cache.encode({ a = { 1, 2.5, "x", { b = true } }, [7] = "seven" }) }
    for _ = 1, 20000 do
      local n = math.random(0, 24)
      local parts = {}
      for i = 1, n do parts[i] = string.char(math.random(0, 255)) end
      local s = table.concat(parts)
      local ok = pcall(cache.decode, s)
      assert.is_true(ok)
    end
    local s = seeds[1]
    for i = 0, #s - 1 do
      local v, why = cache.decode(s:sub(1, i))
      assert.is_nil(v)
      assert.is_string(why)
    end
  end)
end)

describe("NullCache", function()
  it("stores nothing", function()
    local c = cache.NullCache {}
    assert.equal(300, c.default_timeout)
    assert.is_true(c:set("a", 1))
    assert.is_true(c:add("a", 1))
    assert.is_nil(c:get("a"))
    assert.is_false(c:has("a"))
    assert.is_false(c:delete("a"))
    assert.is_true(c:clear())
    assert.equal(5, c:inc("a", 5))
    assert.same({ n = 2 }, table.pack and table.pack(c:get_many("a", "b")) or { n = 2 })
    assert.same({}, c:get_dict("a"))
    local ok, keys = c:set_many { a = 1 }
    assert.is_true(ok)
    assert.same({ "a" }, keys)
  end)

  it("checks arguments like every backend", function()
    local c = cache.NullCache { default_timeout = 5 }
    assert.equal(5, c.default_timeout)
    assert.has_error(function() c:set({}, 1) end)
    assert.has_error(function() c:set("k", print) end)
  end)
end)

describe("constructors", function()
  it("reject unknown options and wrong types, naming them", function()
    local ok, err = pcall(cache.NullCache, { bogus = 1 })
    assert.is_false(ok)
    assert.matches("unknown option 'bogus'", err)
    ok, err = pcall(cache.NullCache, { default_timeout = "x" })
    assert.is_false(ok)
    assert.matches("option 'default_timeout': number expected, got string", err)
    ok, err = pcall(cache.NullCache, "nope")
    assert.is_false(ok)
    assert.matches("options: table expected", err)
  end)

  it("raise at the caller's line", function()
    local ok, err = pcall(function() local c = cache.NullCache { bogus = 1 }; return c end)
    assert.is_false(ok)
    assert.matches("values_spec%.lua:%d+: NullCache: unknown option", err)
  end)

  it("list every backend class", function()
    local types = cache.backend_types()
    for _, name in ipairs { "NullCache", "SimpleCache", "FileSystemCache", "RedisCache",
      "RedisSentinelCache", "RedisClusterCache", "MemcachedCache", "SASLMemcachedCache",
      "SpreadSASLMemcachedCache", "UWSGICache" } do
      assert.is_boolean(types[name], name)
      assert.is_function(cache[name], name)
    end
  end)

  it("close makes further calls raise", function()
    local c = cache.NullCache {}
    c:close()
    assert.has_error(function() c:get("a") end, nil)
    local ok, err = pcall(c.get, c, "a")
    assert.is_false(ok)
    assert.matches("cache is closed", err)
  end)
end)
