-- The cache contract of API.md §2 as a function of a backend descriptor
-- (spec/backends/*.lua), so that one text runs under busted
-- (spec/contract_spec.lua) and inside nginx handlers on the cosocket path
-- (spec/cosocket_spec.lua). T gives what busted gives a spec: describe, it,
-- before_each, after_each, assert, and helpers (sleep, pack).
local is_luajit = type(jit) == "table"
local mtype = math.type or function(x)
  if type(x) ~= "number" then return nil end
  return x == math.floor(x) and "integer" or "float"
end

return function(f, T)
  local describe, it, before_each, after_each, assert =
    T.describe, T.it, T.before_each, T.after_each, T.assert
  local helpers = T.helpers
  local caps = f.caps
  local c

  before_each(function()
    c = f.new()
  end)

  after_each(function()
    if c then c:clear() end
  end)

  describe("get / set", function()
    it("misses with nil and stores with true", function()
      assert.is_nil(c:get("absent"))
      assert.is_true(c:set("k", "v"))
      assert.equal("v", c:get("k"))
      assert.is_true(c:set("k", "w"))
      assert.equal("w", c:get("k"))
    end)

    it("round-trips every value shape exactly", function()
      local shapes = {
        t = true, f = false, zero = 0, int = 42, neg = -7, big = 9007199254740993,
        flt = 1.5, whole_float = 2.0, tiny = 1e-300, str = "hello",
        bin = "a\0b\r\n\255", empty = "",
        list = { 1, 2, 3 }, map = { a = 1, b = { c = { d = "deep" } } },
        mixed = { 1, 2, x = "y", [true] = false, [2.5] = "f" }, empty_table = {},
      }
      if is_luajit then shapes.big, shapes.whole_float = nil, nil end
      for k, v in pairs(shapes) do
        assert.is_true(c:set(k, v), k)
      end
      for k, v in pairs(shapes) do
        local got = c:get(k)
        assert.same(v, got, k)
        if type(v) == "number" then
          assert.equal(mtype(v), mtype(got), k .. " keeps integer/float")
        end
      end
    end)

    it("returns a fresh copy and drops metatables", function()
      local t = setmetatable({ a = { 1 } }, { __index = function() return "mt" end })
      c:set("t", t)
      t.a[1] = 2
      local got = c:get("t")
      assert.same({ a = { 1 } }, got)
      assert.is_nil(getmetatable(got))
      assert.is_nil(got.zzz)
    end)

    it("stores nil: has is true and get is nil", function()
      assert.is_true(c:set("nil", nil))
      assert.is_true(c:has("nil"))
      assert.is_nil(c:get("nil"))
    end)

    it("accepts numbers as keys, as tostring", function()
      c:set(12, "twelve")
      assert.equal("twelve", c:get("12"))
      assert.equal("twelve", c:get(12))
    end)

    it("binary-safe keys", function()
      local k = "a b\r\nc\0d"
      assert.is_true(c:set(k, 1))
      assert.equal(1, c:get(k))
      assert.is_nil(c:get("a b"))
    end)

    it("raises on keys of other types, naming the key", function()
      for _, bad in ipairs { {}, true, print } do
        local ok, err = pcall(c.get, c, bad)
        assert.is_false(ok)
        assert.matches("key: string expected", err)
        ok, err = pcall(c.set, c, bad, 1)
        assert.is_false(ok)
        assert.matches("key: string expected", err)
      end
    end)

    it("raises on values that cannot be stored, naming the path, and keeps the old value", function()
      c:set("v", "old")
      local ok, err = pcall(c.set, c, "v", { user = { callback = print } })
      assert.is_false(ok)
      assert.matches("value%.user%.callback: cannot store a function", err)
      local cyc = {}
      cyc.again = cyc
      ok, err = pcall(c.set, c, "v", { list = { cyc } })
      assert.is_false(ok)
      assert.matches("cyclic", err)
      ok, err = pcall(c.set, c, "v", coroutine.create(function() end))
      assert.is_false(ok)
      assert.matches("value: cannot store a thread", err)
      ok, err = pcall(c.set, c, "v", io.stdout)
      assert.is_false(ok)
      assert.matches("value: cannot store a userdata", err)
      assert.equal("old", c:get("v"))
    end)

    it("raises at the caller's line", function()
      local ok, err = pcall(function() c:set("v", print) end)
      assert.is_false(ok)
      assert.matches("contract%.lua:%d+: value: cannot store a function", err)
    end)
  end)

  describe("add", function()
    it("stores only when absent", function()
      assert.is_true(c:add("a", 1))
      assert.is_false(c:add("a", 2))
      assert.equal(1, c:get("a"))
    end)
  end)

  describe("delete / has", function()
    it("reports whether the key existed", function()
      c:set("d", 1)
      assert.is_true(c:has("d"))
      assert.is_true(c:delete("d"))
      assert.is_false(c:has("d"))
      assert.is_false(c:delete("d"))
      assert.is_nil(c:get("d"))
    end)
  end)

  describe("many", function()
    it("get_many gives exactly one value per key, nil for misses", function()
      c:set("a", 1)
      c:set("c", 3)
      local r = helpers.pack(c:get_many("a", "b", "c", "d"))
      assert.equal(4, r.n)
      assert.same({ n = 4, 1, nil, 3, nil }, r)
      assert.equal(0, helpers.pack(c:get_many()).n)
    end)

    it("get_dict maps hits only", function()
      c:set("a", 1)
      c:set("b", false)
      assert.same({ a = 1, b = false }, c:get_dict("a", "b", "zz"))
    end)

    it("set_many stores all and lists the keys", function()
      local ok, keys = c:set_many { x = 1, y = { 2 }, z = "3" }
      assert.is_true(ok)
      table.sort(keys)
      assert.same({ "x", "y", "z" }, keys)
      assert.same({ 1, { 2 }, "3" }, { c:get_many("x", "y", "z") })
    end)

    it("set_many stores nothing when a value cannot be stored", function()
      local ok = pcall(c.set_many, c, { good = 1, bad = print })
      assert.is_false(ok)
      assert.is_nil(c:get("good"))
    end)

    it("delete_many reports all_deleted and the deleted keys", function()
      c:set_many { a = 1, b = 2 }
      local all, keys = c:delete_many("a", "b")
      assert.is_true(all)
      table.sort(keys)
      assert.same({ "a", "b" }, keys)
      c:set("c", 3)
      all, keys = c:delete_many("c", "missing")
      assert.is_false(all)
      assert.same({ "c" }, keys)
    end)
  end)

  describe("clear", function()
    it("removes everything", function()
      c:set_many { a = 1, b = 2 }
      assert.is_true(c:clear())
      assert.is_nil(c:get("a"))
      assert.is_false(c:has("b"))
    end)
  end)

  describe("inc / dec", function()
    it("starts a missing key at delta / -delta", function()
      assert.equal(1, c:inc("n"))
      assert.equal(6, c:inc("n", 5))
      assert.equal(4, c:dec("n", 2))
      assert.equal(-3, c:dec("m", 3))
      assert.equal(4, c:get("n"))
      assert.equal("integer", mtype(c:get("n")))
    end)

    it("fails on a value that is not an integer", function()
      c:set("s", "text")
      local v, err = c:inc("s")
      assert.is_nil(v)
      assert.is_string(err)
      c:set("f", 1.5)
      v, err = c:inc("f")
      assert.is_nil(v)
      assert.is_string(err)
      assert.equal("text", c:get("s"))
    end)

    it("raises on a delta that is not an integer", function()
      assert.has_error(function() c:inc("n", "x") end)
      assert.has_error(function() c:inc("n", 1.5) end)
    end)
  end)

  describe("timeouts", function()
    it("reads default_timeout", function()
      assert.equal(300, c.default_timeout)
      local d = f.new { default_timeout = 42 }
      assert.equal(42, d.default_timeout)
    end)

    it("raises on a timeout that is not a number", function()
      local ok, err = pcall(c.set, c, "k", 1, "soon")
      assert.is_false(ok)
      assert.matches("timeout: number or nil expected", err)
    end)

    it("negative stores an entry already expired", function()
      assert.is_true(c:set("neg", 1, -1))
      assert.is_nil(c:get("neg"))
      assert.is_false(c:has("neg"))
      assert.is_true(c:add("neg", 2))
      assert.equal(2, c:get("neg"))
    end)

    it("expires short timeouts and keeps 0 and nil", function()
      local g = caps.ttl_granularity or 0.001
      local short = g >= 1 and 1 or 0.2
      local d = f.new { default_timeout = 30 }
      assert.is_true(d:set("short", 1, short))
      assert.is_true(d:add("short_add", 1, short))
      assert.is_true(d:set_many({ m1 = 1 }, short))
      assert.is_true(d:set("never", 1, 0))
      assert.is_true(d:set("default", 1))
      assert.equal(1, d:get("short"))
      helpers.sleep(short + (g >= 1 and 1.2 or 0.15))
      assert.is_nil(d:get("short"))
      assert.is_false(d:has("short_add"))
      assert.is_nil(d:get("m1"))
      assert.is_true(d:add("short", 2))
      assert.equal(1, d:get("never"))
      assert.equal(1, d:get("default"))
      d:clear()
    end)
  end)
end
