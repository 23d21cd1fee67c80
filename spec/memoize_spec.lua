-- c:memoize, c:delete_memoized, c:delete_memoized_verhash (API.md §3,
-- behaviour.md §6), on a Lua backend that counts the calls it receives
-- (spec/support/fake_backend.lua). The same behaviours against the real
-- backends: spec/decorators_backends_spec.lua.
local cache = require "cache"
local fake_backend = require "support.fake_backend"

local function new_cache(config)
  local backend = fake_backend.new()
  config = config or {}
  config.CACHE_TYPE = function() return backend end
  return cache.new(config), backend
end

-- A function counting its calls: returns the call number after its args.
local function counter()
  local n = 0
  local function f(...)
    n = n + 1
    return n
  end
  return f, function() return n end
end

local function keys_matching(backend, pattern)
  local out = {}
  for k in pairs(backend.data) do
    if k:match(pattern) then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

describe("memoize", function()
  local c, backend
  before_each(function()
    c, backend = new_cache()
  end)

  describe("the documentation's examples", function()
    it("big_foo(a, b): one entry per argument list", function()
      local calls = 0
      local big_foo = c:memoize{ timeout = 50 }(function(a, b)
        calls = calls + 1
        return a + b + math.random(0, 1000)
      end)
      local r52 = big_foo(5, 2)
      local r53 = big_foo(5, 3)
      assert.equal(r52, big_foo(5, 2))
      assert.equal(r53, big_foo(5, 3))
      assert.equal(2, calls)
    end)

    it("random_func: delete_memoized(f) forgets every result", function()
      local n = 0
      local random_func = c:memoize(50)(function() n = n + 1; return n end)
      assert.equal(1, random_func())
      assert.equal(1, random_func())
      c:delete_memoized(random_func)
      assert.equal(2, random_func())
      assert.equal(2, random_func())
    end)

    it("param_func: delete_memoized(f, 1, 2) forgets only that call", function()
      local n = 0
      local param_func = c:memoize()(function(a, b) n = n + 1; return a + b + n * 100 end)
      local r12, r22 = param_func(1, 2), param_func(2, 2)
      assert.equal(r12, param_func(1, 2))
      assert.equal(r22, param_func(2, 2))
      c:delete_memoized(param_func, 1, 2)
      local again = param_func(1, 2)
      assert.not_equal(r12, again)
      assert.equal(again, param_func(1, 2))
      assert.equal(r22, param_func(2, 2))
    end)

    it("Adder: per-instance and per-class deletion", function()
      local Adder = {}
      Adder.__index = Adder
      local n = 0
      Adder.add = c:memoize()(function(self, b) n = n + 1; return b + n / 1000 end)
      local adder1, adder2 = setmetatable({}, Adder), setmetatable({}, Adder)
      local a1, a2 = adder1:add(3), adder2:add(3)
      assert.not_equal(a1, a2) -- two instances, two entries
      assert.equal(a1, adder1:add(3))
      assert.equal(a2, adder2:add(3))

      c:delete_memoized(Adder.add, adder1) -- the bound method: that instance only
      local a1b = adder1:add(3)
      assert.not_equal(a1, a1b)
      assert.equal(a2, adder2:add(3))

      c:delete_memoized(Adder.add) -- through the class: every instance
      assert.not_equal(a1b, adder1:add(3))
      assert.not_equal(a2, adder2:add(3))
    end)

    it("Adder: delete_memoized(Adder.add, adder1, 3) forgets one call of one instance", function()
      local Adder = {}
      Adder.__index = Adder
      local n = 0
      Adder.add = c:memoize(function(self, b) n = n + 1; return n end)
      local adder1, adder2 = setmetatable({}, Adder), setmetatable({}, Adder)
      local x3, x4, y3 = adder1:add(3), adder1:add(4), adder2:add(3)
      c:delete_memoized(Adder.add, adder1, 3)
      assert.not_equal(x3, adder1:add(3))
      assert.equal(x4, adder1:add(4))
      assert.equal(y3, adder2:add(3))
    end)
  end)

  describe("keys", function()
    it("are 16 Base64 characters of the digest plus a 6-character version", function()
      local f = c:memoize(function(a) return a end)
      f(1)
      local key = f.make_cache_key(1)
      assert.matches("^[A-Za-z0-9+/]+$", key)
      assert.equal(22, #key)
      assert.is_not_nil(backend.data[key])
    end)

    it("of methods carry the instance version too (28 characters)", function()
      local obj = {}
      local m = c:memoize(function(self, x) return x end)
      m(obj, 1)
      assert.equal(28, #m.make_cache_key(obj, 1))
    end)

    it("name the version key <name>_memver, the name derived from source and line", function()
      local f = c:memoize(function() return 1 end)
      f()
      local v = keys_matching(backend, "_memver$")
      assert.equal(1, #v)
      assert.matches("memoize_spec%.lua:%d+_memver$", v[1])
      assert.not_matches("^@", v[1])
      assert.not_matches("^%./", v[1])
    end)

    it("name a module's function relative to its package.path root", function()
      local root = require("support.helpers").tmpdir("modroot")
      assert(os.execute("mkdir -p '" .. root .. "/app'"))
      local fh = assert(io.open(root .. "/app/views.lua", "w"))
      fh:write("return function(a)\n  return a\nend\n")
      fh:close()
      local saved = package.path
      package.path = root .. "/?.lua;" .. saved
      local ok, err = pcall(function()
        local m = c:memoize(dofile(root .. "/app/views.lua"))
        m(1)
        assert.same({ "app/views.lua:1_memver" }, keys_matching(backend, "_memver$"))
      end)
      package.path = saved
      assert(ok, err)
    end)

    it("take the name option as the function name", function()
      local f = c:memoize{ name = "app.views.user" }(function() return 1 end)
      f()
      assert.same({ "app.views.user_memver" }, keys_matching(backend, "_memver$"))
    end)

    it("give instances their own version key <name>.<token>_memver", function()
      local User = { __cache_key = function(u) return "User:" .. u.id end }
      local profile = c:memoize{ name = "profile" }(function(self) return self.id end)
      profile(setmetatable({ id = 7 }, User))
      assert.same({ "profile.User:7_memver", "profile_memver" }, keys_matching(backend, "_memver$"))
    end)

    it("use __tostring as the instance token when there is no __cache_key", function()
      local T = { __tostring = function(o) return "T" .. o.id end }
      local m = c:memoize{ name = "m" }(function(self) return self.id end)
      m(setmetatable({ id = 1 }, T))
      assert.same({ "m.T1_memver", "m_memver" }, keys_matching(backend, "_memver$"))
    end)

    it("are the same for equal table arguments, whatever their construction order", function()
      local f, count = counter()
      local m = c:memoize(f)
      local t1 = { a = 1, b = { 1, 2, 3 }, c = { x = true } }
      local t2 = {}
      t2.c = { x = true }; t2.b = { 1, 2, 3 }; t2.a = 1
      assert.equal(m.make_cache_key(t1), m.make_cache_key(t2))
      m(t1)
      m(t2)
      assert.equal(1, count())
      assert.not_equal(m.make_cache_key({ a = 1 }), m.make_cache_key({ a = 2 }))
    end)

    it("take a table by its content at call time", function()
      local m = c:memoize(function(t) return t.v end)
      local t = { v = 1 }
      assert.equal(1, m(t))
      t.v = 2
      assert.equal(2, m(t))
    end)

    it("take objects with __cache_key or __tostring by that string", function()
      local m = c:memoize(function(o) return o.n end)
      local K = { __cache_key = function() return "same" end }
      assert.equal(1, m(setmetatable({ n = 1 }, K)))
      assert.equal(1, m(setmetatable({ n = 2 }, K))) -- same key string: same entry
      local S = { __tostring = function(o) return "S" .. o.id end }
      assert.equal(3, m(setmetatable({ n = 3, id = 1 }, S)))
      assert.equal(3, m(setmetatable({ n = 4, id = 1 }, S)))
      assert.equal(5, m(setmetatable({ n = 5, id = 2 }, S)))
      local L = { __cache_key = "literal" }
      assert.equal(6, m(setmetatable({ n = 6 }, L)))
      assert.equal(6, m(setmetatable({ n = 7 }, L)))
    end)

    it("tell apart types that print alike", function()
      local m = c:memoize(function(x) return type(x) end)
      assert.equal("number", m(1))
      assert.equal("string", m("1"))
      assert.equal("boolean", m(true))
      assert.equal("string", m("true"))
    end)

    it("take functions by identity (valid in this process only)", function()
      local m = c:memoize(function(fn) return fn() end)
      local f1 = function() return 1 end
      local f2 = function() return 2 end
      assert.equal(1, m(f1))
      assert.equal(2, m(f2))
      assert.equal(1, m(f1))
    end)

    it("ignore trailing nils: f(1) and f(1, nil) are one call", function()
      local f, count = counter()
      local m = c:memoize(function(a, b) return f(a, b) end)
      m(1)
      m(1, nil)
      m(1, nil, nil)
      assert.equal(1, count())
      m(nil, 1)
      assert.equal(2, count())
    end)

    it("raise on a cyclic table argument, naming it", function()
      local m = c:memoize(function(t) return 1 end)
      local t = {}
      t.self = t
      assert.has_error(function() m(t) end)
      local ok, err = pcall(m, t)
      assert.is_false(ok)
      assert.matches("argument #1", err)
      assert.matches("cyclic", err)
    end)

    it("depend on hash_method", function()
      local seen = {}
      for _, h in ipairs{ "md5", "sha1", "sha256", "sha512" } do
        local m = c:memoize{ hash_method = h, name = "same" }(function(a) return a end)
        local key = m.make_cache_key(1)
        assert.equal(22, #key)
        assert.is_nil(seen[key:sub(1, 16)])
        seen[key:sub(1, 16)] = true
      end
    end)

    it("accept a Lua function as hash_method (bytes in, digest bytes out)", function()
      local seen
      local m = c:memoize{ hash_method = function(bytes) seen = bytes; return ("\1"):rep(20) end }(
        function(a) return a end)
      local key = m.make_cache_key(42)
      assert.is_string(seen)
      assert.equal("AQEBAQEBAQEBAQEB", key:sub(1, 16))
      assert.equal(1, m(1))
      assert.equal(1, m(1))
    end)

    it("follow CACHE_HASH_METHOD by default", function()
      local c2, b2 = new_cache{ CACHE_HASH_METHOD = "sha256" }
      local m1 = c:memoize{ name = "x" }(function() return 1 end)
      local m2 = c2:memoize{ name = "x" }(function() return 1 end)
      b2.data = backend.data -- one version for both
      local k1, k2 = m1.make_cache_key(), m2.make_cache_key()
      assert.equal(k1:sub(17), k2:sub(17))
      assert.not_equal(k1:sub(1, 16), k2:sub(1, 16))
    end)

    it("change with make_name, but the version key keeps the real name", function()
      local got
      local m = c:memoize{ name = "real", make_name = function(n) got = n; return "other" end }(
        function() return 1 end)
      local plain = c:memoize{ name = "real" }(function() return 1 end)
      local k1, k2 = m.make_cache_key(), plain.make_cache_key()
      assert.equal("real", got)
      assert.not_equal(k1, k2)
      assert.equal(k1:sub(17), k2:sub(17))
      assert.same({ "real_memver" }, keys_matching(backend, "_memver$"))
    end)
  end)

  describe("args_to_ignore", function()
    it("leaves the named parameters out of the key", function()
      local f, count = counter()
      local m = c:memoize{ args_to_ignore = { "conn" } }(function(conn, id) return f(id) end)
      m("connection A", 1)
      m("connection B", 1)
      assert.equal(1, count())
      m("connection B", 2)
      assert.equal(2, count())
    end)

    it("with self: instances share entries and get no version of their own", function()
      local Repo = {}
      Repo.__index = Repo
      local f, count = counter()
      Repo.find = c:memoize{ args_to_ignore = { "self" }, name = "find" }(
        function(self, id) return f(id) end)
      local r1, r2 = setmetatable({}, Repo), setmetatable({}, Repo)
      r1:find(1)
      r2:find(1)
      assert.equal(1, count())
      assert.same({ "find_memver" }, keys_matching(backend, "_memver$"))
    end)

    it("raises on a name that is not a parameter", function()
      assert.has_error(function()
        c:memoize{ args_to_ignore = { "nope" } }(function(a) return a end)
      end, nil)
      local ok, err = pcall(c:memoize{ args_to_ignore = { "nope" } }, function(a) return a end)
      assert.is_false(ok)
      assert.matches("nope", err)
    end)
  end)

  describe("results", function()
    it("keep several return values, nils included", function()
      local f, count = counter()
      local m = c:memoize(function(a) f(); return a, nil, a * 2 end)
      local n1 = select("#", m(3))
      local a, b, cc = m(3)
      assert.equal(3, n1)
      assert.same({ 3, nil, 6 }, { a, b, cc })
      assert.equal(1, count())
      assert.equal(3, select("#", m(3)))
    end)

    it("return tables as fresh copies", function()
      local m = c:memoize(function() return { 1, { 2 } } end)
      local t1 = m()
      local t2 = m()
      assert.same(t1, t2)
      t1[2][1] = 99
      assert.same({ 1, { 2 } }, m())
    end)

    it("are not stored when the function raises; the error propagates unchanged", function()
      local err = setmetatable({}, { __tostring = function() return "custom error" end })
      local m = c:memoize(function(x) if x then error(err) end; return "ok" end)
      local ok, e = pcall(m, true)
      assert.is_false(ok)
      assert.equal(err, e)
      assert.same({}, keys_matching(backend, "^[A-Za-z0-9+/]+$"))
      assert.equal("ok", m(false))
    end)

    it("a nil result is recomputed each time without cache_none", function()
      local f, count = counter()
      local m = c:memoize(function() f(); return nil end)
      m(); m()
      assert.equal(2, count())
    end)

    it("nil, err (the failure idiom) is not cached without cache_none", function()
      local f, count = counter()
      local m = c:memoize(function() f(); return nil, "db down" end)
      local v, e = m()
      assert.is_nil(v)
      assert.equal("db down", e)
      m()
      assert.equal(2, count())
    end)

    it("cache_none stores nil results and tells them from misses with has", function()
      local f, count = counter()
      local m = c:memoize{ cache_none = true }(function() f(); return nil end)
      assert.is_nil(m())
      assert.is_nil(m())
      assert.equal(1, count())
      assert.equal(1, select("#", m()))
      assert.is_true((backend.calls.has or 0) >= 1)
    end)

    it("cache_none keeps a function that returns nothing returning nothing", function()
      local f, count = counter()
      local m = c:memoize{ cache_none = true }(function() f() end)
      assert.equal(0, select("#", m()))
      assert.equal(0, select("#", m()))
      assert.equal(1, count())
    end)
  end)

  describe("options", function()
    it("timeout is stored as cache_timeout and used for each write", function()
      local m = c:memoize{ timeout = 50 }(function(a) return a end)
      assert.equal(50, m.cache_timeout)
      m(1)
      assert.equal(50, backend:timeout_of(m.make_cache_key(1)))
      m.cache_timeout = 7
      m(2)
      assert.equal(7, backend:timeout_of(m.make_cache_key(2)))
    end)

    it("without timeout the backend's default applies (nil is passed)", function()
      local m = c:memoize(function(a) return a end)
      assert.is_nil(m.cache_timeout)
      m(1)
      assert.is_nil(backend:timeout_of(m.make_cache_key(1)))
    end)

    it("version keys: created with the decorator's timeout, refreshed with the entry's", function()
      local m = c:memoize{ name = "v", timeout = 30 }(function(a) return a end)
      m.make_cache_key(1) -- creates the version only
      assert.equal(30, backend:timeout_of("v_memver"))
      m.cache_timeout = 45
      m(1)
      assert.equal(45, backend:timeout_of("v_memver"))
    end)

    it("reads and writes version keys with get_many / set_many", function()
      local m = c:memoize(function(a) return a end)
      m(1)
      assert.is_true(backend.calls.get_many >= 1)
      assert.is_true(backend.calls.set_many >= 1)
      local before = backend.calls.get_many
      m(1) -- a hit: one get_many for the version, one get
      assert.equal(before + 1, backend.calls.get_many)
    end)

    it("unless(f, ...) bypasses the cache when it returns exactly true", function()
      local f, count = counter()
      local seen
      local m = c:memoize{ unless = function(fn, a) seen = { fn, a }; return a == "skip" end }(
        function(a) return f(a) end)
      m("skip"); m("skip")
      assert.equal(2, count())
      assert.equal(m.uncached, seen[1])
      assert.equal("skip", seen[2])
      m("x"); m("x")
      assert.equal(3, count())
      assert.is_nil(backend.data[m.make_cache_key("skip")])
    end)

    it("unless without parameters is called with no arguments", function()
      local nargs
      local m = c:memoize{ unless = function() nargs = select("#"); return false end }(
        function(a) return a end)
      m(1)
      assert.equal(0, nargs)
    end)

    it("unless returning a truthy value other than true does not bypass", function()
      local f, count = counter()
      local m = c:memoize{ unless = function() return 1 end }(function() return f() end)
      m(); m()
      assert.equal(1, count())
    end)

    it("forced_update(...) recomputes and stores", function()
      local force = false
      local got
      local f = counter()
      local m = c:memoize{ forced_update = function(a) got = a; return force end }(
        function(a) return f(a) end)
      assert.equal(1, m("x"))
      assert.equal(1, m("x"))
      force = true
      assert.equal(2, m("x"))
      assert.equal("x", got)
      force = false
      assert.equal(2, m("x"))
    end)

    it("is_stale(value, ...) turns a hit into a miss", function()
      local f, count = counter()
      local stale_seen
      local m = c:memoize{ is_stale = function(v, a) stale_seen = { v, a }; return v < 2 end }(
        function(a) return f(a) end)
      assert.equal(1, m("a"))
      assert.equal(2, m("a")) -- 1 was stale
      assert.same({ 1, "a" }, stale_seen)
      assert.equal(2, m("a"))
      assert.equal(2, count())
    end)

    it("is_stale gets the first result of a function with several", function()
      local got
      local m = c:memoize{ is_stale = function(v) got = v; return false end }(function() return "a", "b" end)
      m(); m()
      assert.equal("a", got)
    end)

    it("is_stale(value) with one parameter gets only the value", function()
      local nargs
      local m = c:memoize{ is_stale = function(v) nargs = 1; return false end }(function(a) return a end)
      m(1); m(1)
      assert.equal(1, nargs)
    end)

    it("response_filter: a falsy answer keeps the result out of the cache", function()
      local f, count = counter()
      local m = c:memoize{ response_filter = function(status, body) return status == 200 end }(
        function(path) f(); if path == "/bad" then return 500, "err" end; return 200, "ok" end)
      m("/bad"); m("/bad")
      assert.equal(2, count())
      m("/good"); m("/good")
      assert.equal(3, count())
    end)

    it("source_check folds the source into the key", function()
      local m1 = c:memoize{ name = "same", source_check = true }(function(a) return a + 1 end)
      local m2 = c:memoize{ name = "same", source_check = true }(function(a) return a + 2 end)
      local m3 = c:memoize{ name = "same" }(function(a) return a + 1 end)
      local k1, k2, k3 = m1.make_cache_key(1), m2.make_cache_key(1), m3.make_cache_key(1)
      assert.not_equal(k1:sub(1, 16), k2:sub(1, 16))
      assert.not_equal(k1:sub(1, 16), k3:sub(1, 16))
    end)

    it("CACHE_SOURCE_CHECK sets the default of source_check", function()
      local c2 = new_cache{ CACHE_SOURCE_CHECK = true }
      local a = c2:memoize{ name = "s" }(function(x) return x end)
      local b = c2:memoize{ name = "s", source_check = false }(function(x) return x end)
      assert.not_equal(a.make_cache_key(1):sub(1, 16), b.make_cache_key(1):sub(1, 16))
    end)

    it("a raising callback propagates its error", function()
      local m = c:memoize{ unless = function() error("unless boom") end }(function() return 1 end)
      assert.has_error(function() m() end)
      local m2 = c:memoize{ response_filter = function() error("filter boom") end }(function() return 1 end)
      local ok, err = pcall(m2)
      assert.is_false(ok)
      assert.matches("filter boom", err)
      local m3 = c:memoize{ make_name = function() error("name boom") end }(function() return 1 end)
      assert.has_error(function() m3() end)
    end)

    it("rejects unknown options and wrong types, naming them", function()
      local ok, err = pcall(c.memoize, c, { timout = 5 })
      assert.is_false(ok)
      assert.matches("timout", err)
      ok, err = pcall(c.memoize, c, { hash_method = "md4" })
      assert.is_false(ok)
      assert.matches("hash_method", err)
      ok, err = pcall(c.memoize, c, { unless = true })
      assert.is_false(ok)
      assert.matches("unless", err)
    end)

    it("rejects a timeout that is not a number (NaN included) when decorating, at the caller's line", function()
      local f, count = counter()
      for _, bad in ipairs { 0 / 0, "60", {}, true } do
        local ok, err = pcall(function() return c:memoize{ timeout = bad }(f) end)
        assert.is_false(ok)
        assert.matches("memoize_spec%.lua:%d+: memoize: option 'timeout': ", err)
        ok, err = pcall(function() return c:memoize(f, { timeout = bad }) end)
        assert.is_false(ok)
        assert.matches("memoize_spec%.lua:%d+: memoize: option 'timeout': ", err)
      end
      local ok, err = pcall(function() return c:memoize(0 / 0) end) -- c:memoize(timeout)
      assert.is_false(ok)
      assert.matches("memoize_spec%.lua:%d+: memoize: option 'timeout': number expected, got NaN", err)
      assert.equal(0, count())
    end)

    it("checks cache_timeout when it is assigned; nil means the backend's default", function()
      local f, count = counter()
      local m = c:memoize{ timeout = 5 }(f)
      for _, bad in ipairs { 0 / 0, "60", {} } do
        local ok, err = pcall(function() m.cache_timeout = bad end)
        assert.is_false(ok)
        assert.matches("memoize_spec%.lua:%d+: memoize: cache_timeout: ", err)
        assert.equal(5, m.cache_timeout)
      end
      m.cache_timeout = nil
      assert.is_nil(m.cache_timeout)
      m(1)
      assert.is_nil(backend:timeout_of(m.make_cache_key(1)))
      m.cache_timeout = 1 / 0 -- "never", as a per-call timeout
      assert.equal(1 / 0, m.cache_timeout)
      assert.equal(1, count())
    end)
  end)

  describe("decorated functions", function()
    it("are callable tables with uncached, cache_timeout and make_cache_key", function()
      local orig = function(a) return a end
      local m = c:memoize{ timeout = 5 }(orig)
      assert.equal("table", type(m))
      assert.equal(orig, m.uncached)
      assert.equal(5, m.cache_timeout)
      assert.is_function(m.make_cache_key)
      assert.equal(4, m(4))
    end)

    it("can be made with the function first: c:memoize(fn, opts)", function()
      local m = c:memoize(function(a) return a * 2 end, { timeout = 9 })
      assert.equal(9, m.cache_timeout)
      assert.equal(8, m(4))
    end)

    it("can be methods called with ':'", function()
      local Obj = {}
      Obj.__index = Obj
      Obj.double = c:memoize(function(self, x) return x * 2 * self.k end)
      local o = setmetatable({ k = 10 }, Obj)
      assert.equal(40, o:double(2))
      assert.equal(40, o:double(2))
    end)

    it("a replaced make_cache_key is used by the wrapper", function()
      local m = c:memoize(function(a) return a end)
      m.make_cache_key = function() return "fixed" end
      assert.equal(1, m(1))
      assert.equal(1, m(2)) -- same key
      assert.is_not_nil(backend.data.fixed)
    end)
  end)

  describe("delete_memoized results", function()
    it("are true, or false and the backend's error", function()
      local m = c:memoize(function(a) return a end)
      m(1)
      assert.is_true(c:delete_memoized(m, 1))
      assert.is_false(c:delete_memoized(m, 1))
      assert.is_true(c:delete_memoized(m))
      backend.fail = "down"
      local ok, err = c:delete_memoized(m)
      assert.is_false(ok)
      assert.equal("down", err)
    end)
  end)

  describe("delete_memoized_verhash", function()
    it("deletes the version key; the next call starts a new version", function()
      local f = counter()
      local m = c:memoize{ name = "vh" }(function() return f() end)
      m()
      local old = backend.data["vh_memver"]
      assert.is_not_nil(old)
      c:delete_memoized_verhash(m)
      assert.is_nil(backend.data["vh_memver"])
      assert.equal(2, m())
      assert.equal(2, m())
    end)

    it("through an instance deletes that instance's version key", function()
      local K = { __cache_key = function(o) return o.id end }
      local m = c:memoize{ name = "mv" }(function(self) return self.id end)
      local a, b = setmetatable({ id = "a" }, K), setmetatable({ id = "b" }, K)
      m(a); m(b)
      c:delete_memoized_verhash(m, a)
      assert.same({ "mv.b_memver", "mv_memver" }, keys_matching(backend, "_memver$"))
    end)

    it("needs a memoized function", function()
      assert.has_error(function() c:delete_memoized(function() end) end)
      assert.has_error(function() c:delete_memoized_verhash("name") end)
    end)
  end)

  describe("backend failures", function()
    local logged
    local saved_log
    before_each(function()
      logged = {}
      saved_log = cache.log
      cache.log = function(msg) logged[#logged + 1] = msg end
    end)
    after_each(function()
      cache.log = saved_log
    end)

    it("fail open: the function runs, its result is returned, logged once per burst", function()
      local f = counter()
      local m = c:memoize(function(a) return f(a) end)
      backend.fail = "connection refused"
      assert.equal(1, m(1))
      assert.equal(2, m(1))
      assert.equal(1, #logged)
      assert.matches("connection refused", logged[1])
      backend.fail = nil
      assert.equal(3, m(1))
      assert.equal(3, m(1))
      backend.fail = "down again"
      m(1)
      assert.equal(2, #logged)
    end)

    it("a failing write still returns the result", function()
      local f = counter()
      local m = c:memoize(function(a) return f(a) end)
      m.make_cache_key(1) -- version exists
      local set = backend.set
      backend.set = function() return false, "disk full" end
      assert.equal(1, m(1))
      assert.equal(2, m(1))
      assert.equal(1, #logged) -- reads work, writes fail: still one burst
      backend.set = set
      assert.matches("disk full", logged[1])
    end)

    -- A result the codec refuses: returned, logged with the reason, never
    -- raised after the function ran (its side effects would repeat).
    local function check_unstorable(m, count)
      local r1 = m(1)
      assert.equal("function", type(r1))
      assert.equal(1, count())
      assert.equal(1, #logged)
      assert.matches("cannot store a function", logged[1])
      assert.equal("function", type(m(1))) -- nothing was stored: it runs again
      assert.equal(2, count())
      assert.equal(2, #logged)
    end

    it("a result that cannot be stored is returned and logged (Lua backend)", function()
      local f, count = counter()
      check_unstorable(c:memoize(function(a) f(a); return print end), count)
    end)

    it("a result that cannot be stored is returned and logged (fused path)", function()
      local core_c = cache.new{}
      local f, count = counter()
      check_unstorable(core_c:memoize{ name = "unstorable" }(function(a) f(a); return print end), count)
    end)

    it("a result that cannot be stored is returned and logged (plain path)", function()
      local core_c = cache.new{}
      local f, count = counter()
      local m = core_c:memoize{ name = "unstorable2", make_name = function(n) return n end }(
        function(a) f(a); return print end)
      check_unstorable(m, count)
      local obj = {}
      local meth = core_c:memoize{ name = "unstorable3" }(function(self) f(); return { fn = print } end)
      assert.equal(print, meth(obj).fn)
      assert.equal(3, #logged)
    end)
  end)
end)
