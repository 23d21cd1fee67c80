-- SharedDictCache beyond the shared contract, a function of T (describe,
-- it, assert) as spec/support/contract.lua is, run inside an nginx handler
-- (spec/support/fetch_app.lua's /spec/checks, with minispec): timeouts to
-- the millisecond, negative timeouts, clear with a key_prefix, a full zone,
-- foreign entries, counters.
local cache = require "cache"
local helpers = require "support.helpers"

return function(T)
  local describe, it, assert = T.describe, T.it, T.assert
  describe("SharedDictCache", function()
    local function new(o)
      o = o or {}
      o.dict = o.dict or "contract"
      if o.key_prefix == nil then o.key_prefix = helpers.unique("chk") end
      return cache.SharedDictCache(o)
    end

    it("keeps a timeout to the millisecond, never past it", function()
      local c = new()
      assert.is_true(c:set("k", "v", 0.08))
      ngx.sleep(0.04)
      assert.equal("v", c:get("k"))
      ngx.sleep(0.05)
      assert.is_nil(c:get("k"))
      assert.is_false(c:has("k"))
      -- under the zone's resolution: no entry at all
      assert.is_true(c:set("tiny", "v", 0.0005))
      assert.is_false(c:has("tiny"))
    end)

    it("leaves no entry for a negative timeout, and an add then reports what is there", function()
      local c = new({ key_prefix = "neg:" })
      c:set("k", 1)
      assert.is_true(c:set("k", 2, -1))
      assert.is_nil(ngx.shared.contract:get("neg:k"))
      assert.is_false(c:has("k"))
      c:set("live", 1)
      assert.is_false(c:add("live", 2, -1))
      assert.is_true(c:add("absent", 2, -1))
      assert.is_false(c:has("absent"))
      c:clear()
    end)

    it("clears only its own keys with a key_prefix, and the whole zone without", function()
      local a, b = new({ key_prefix = "ca:" }), new({ key_prefix = "cb:" })
      a:set("x", 1)
      b:set("x", 2)
      assert.is_true(a:clear())
      assert.is_nil(a:get("x"))
      assert.equal(2, b:get("x"))
      local whole = cache.SharedDictCache { dict = "tiny" }
      whole:set("w", 1)
      assert.is_true(whole:clear())
      assert.is_false(whole:has("w"))
    end)

    it("with evict = false a full zone gives false, 'no memory'; by default it evicts, counted", function()
      local strict = cache.SharedDictCache { dict = "tiny", evict = false }
      strict:clear()
      local big = ("x"):rep(1000)
      local ok, err
      for i = 1, 200 do
        ok, err = strict:set("s" .. i, big)
        if not ok then break end
      end
      assert.is_false(ok)
      assert.matches("no memory", err)
      strict:clear()
      local lru = cache.SharedDictCache { dict = "tiny" }
      for i = 1, 200 do assert.is_true(lru:set("e" .. i, big)) end
      assert.equal(big, lru:get("e200"))
      assert.is_nil(lru:get("e1")) -- the least recently used went first
      local s = lru:stats()
      assert.is_true(s.evictions > 0)
      assert.is_true(s.bytes > 0)
      assert.is_nil(s.items) -- a zone does not say
      lru:clear()
    end)

    it("reads entries other Lua code stored through ngx.shared", function()
      local d = ngx.shared.contract
      d:set("fx:s", "plain text")
      d:set("fx:n", 42)
      d:set("fx:f", 1.5)
      d:set("fx:b", true)
      local c = new({ key_prefix = "fx:" })
      assert.equal("plain text", c:get("s"))
      assert.equal(42, c:get("n"))
      assert.equal(1.5, c:get("f"))
      assert.is_true(c:get("b"))
      assert.equal(43, c:inc("n"))
      c:clear()
    end)

    it("stores fetch's envelope like any value", function()
      local c = cache.new { CACHE_TYPE = "shareddict", CACHE_SHARED_DICT = "contract",
                            CACHE_KEY_PREFIX = helpers.unique("env") }
      local v, _, level = c:fetch("k", { timeout = 10 }, function() return { 1, 2 } end)
      assert.same({ 1, 2 }, v)
      assert.equal(3, level)
      _, _, level = c:fetch("k", { timeout = 10 }, function() error("not called") end)
      assert.equal(2, level)
      assert.same({ 1, 2 }, c:get("k"))
      c:clear()
    end)

    it("names its options in errors", function()
      local ok, err = pcall(cache.SharedDictCache, { dict = "no_such_dict" })
      assert.is_false(ok)
      assert.matches("SharedDictCache: option 'dict': no lua_shared_dict 'no_such_dict'", err)
      ok, err = pcall(cache.SharedDictCache, { dict = "contract", evict = "yes" })
      assert.is_false(ok)
      assert.matches("SharedDictCache: option 'evict': boolean expected", err)
    end)
  end)
end
