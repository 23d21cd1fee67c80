-- Options of backend objects: c.default_timeout is checked when it is
-- assigned, with the constructor's rule, at the caller's line; every option
-- error names the class; a constructor whose options are all optional
-- takes no argument at all.
local cache = require "cache"
local helpers = require "support.helpers"

local BAD_TIMEOUTS = { 0 / 0, "60", {}, math.huge, -math.huge, print, false }

describe("default_timeout on backend objects", function()
  it("is checked when assigned: an error at the caller's line naming the class and field", function()
    local c = cache.SimpleCache{}
    c.default_timeout = 42
    for _, bad in ipairs(BAD_TIMEOUTS) do
      local ok, err = pcall(function() c.default_timeout = bad end)
      assert.is_false(ok, tostring(bad))
      assert.matches("options_spec%.lua:%d+: SimpleCache: option 'default_timeout': ", err)
      assert.equal(42, c.default_timeout)
    end
    local ok, err = pcall(function() c.default_timeout = nil end)
    assert.is_false(ok)
    assert.matches("options_spec%.lua:%d+: SimpleCache: option 'default_timeout': ", err)
    assert.equal(42, c.default_timeout)
    assert.is_true(c:set("k", 1)) -- later calls are not blamed for it
    assert.equal(1, c:get("k"))
  end)

  it("gives the same message as the constructor for the same value", function()
    local _, ctor_err = pcall(cache.SimpleCache, { default_timeout = 0 / 0 })
    local c = cache.SimpleCache{}
    local _, set_err = pcall(function() c.default_timeout = 0 / 0 end)
    assert.equal(ctor_err, (set_err:gsub("^.-:%d+: ", "")))
  end)

  it("a valid assignment is read back and used by calls without a timeout", function()
    local c = cache.SimpleCache{}
    local d = cache.SimpleCache{}
    c.default_timeout = 0.05
    assert.equal(0.05, c.default_timeout)
    assert.equal(300, d.default_timeout) -- each object has its own
    assert.is_true(c:set("k", 1))
    helpers.sleep(0.3)
    assert.is_nil(c:get("k"))
    c.default_timeout = 0
    assert.equal(0, c.default_timeout)
  end)

  it("other fields are plain fields of the object, methods included", function()
    local c = cache.SimpleCache{}
    c.note = "mine"
    assert.equal("mine", rawget(c, "note"))
    local seen
    c.get = function(self, key) seen = key; return "replaced" end
    assert.equal("replaced", c:get("x"))
    assert.equal("x", seen)
    assert.is_nil(rawget(cache.SimpleCache{}, "get"))
  end)

  describe("on every backend", function()
    for _, factory in ipairs(helpers.backends()) do
      it(factory.name, function()
        local ok, why = factory.available()
        if not ok then
          pending(why or "not available")
          return
        end
        local c = factory.new()
        c.default_timeout = 7
        assert.equal(7, c.default_timeout)
        local bad_ok, err = pcall(function() c.default_timeout = 0 / 0 end)
        assert.is_false(bad_ok)
        local class = factory.name:match("^%S+") -- "RedisCache (TLS)" is a RedisCache
        assert.matches("options_spec%.lua:%d+: " .. class .. ": option 'default_timeout'", err)
        assert.equal(7, c.default_timeout)
      end)
    end
  end)
end)

describe("option errors", function()
  local function err_of(ctor, opts)
    local ok, err = pcall(ctor, opts)
    assert.is_false(ok)
    return err
  end

  it("name the class for list items, unsupported types and option names", function()
    assert.matches("^MemcachedCache: option 'servers': item 1 must be a string, got function",
                   err_of(cache.MemcachedCache, { servers = { print } }))
    assert.matches("^MemcachedCache: option 'servers': item 2 must be a string or {host, port}",
                   err_of(cache.MemcachedCache, { servers = { "127.0.0.1:1", {} } }))
    assert.matches("^SimpleCache: option 'threshold': unsupported type function",
                   err_of(cache.SimpleCache, { threshold = print }))
    assert.matches("^SimpleCache: option names must be strings, got number",
                   err_of(cache.SimpleCache, { 5 }))
  end)

  it("are raised at the caller's line", function()
    -- not a tail call: LuaJIT keeps no frame for the caller of one
    local ok, err = pcall(function() local c = cache.SimpleCache { threshold = print }; return c end)
    assert.is_false(ok)
    assert.matches("options_spec%.lua:%d+: SimpleCache: option 'threshold'", err)
  end)
end)

describe("constructors without an argument", function()
  it("SimpleCache() and NullCache() work, as cachelib's do", function()
    local c = cache.SimpleCache()
    assert.is_true(c:set("k", 1))
    assert.equal(1, c:get("k"))
    assert.equal(300, cache.NullCache().default_timeout)
  end)

  it("every constructor takes nil as {} (an error is then about its options)", function()
    for name, built in pairs(cache.backend_types()) do
      if built then
        local ok, c_or_err = pcall(cache[name])
        if ok then
          c_or_err:close()
        else
          assert.not_matches("table expected", c_or_err, name)
          assert.matches("^" .. name .. ": ", c_or_err, name)
        end
        local ok2, err2 = pcall(cache[name], nil)
        assert.equal(ok, ok2, name)
        if ok2 then err2:close() end
      end
    end
  end)
end)
