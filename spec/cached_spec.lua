-- c:cached and c:delete_cached (API.md §3, behaviour.md §5), on a Lua
-- backend that counts the calls it receives; requests come from
-- cache.request_provider.
local cache = require "cache"
local fake_backend = require "support.fake_backend"

local function new_cache(config)
  local backend = fake_backend.new()
  config = config or {}
  config.CACHE_TYPE = function() return backend end
  return cache.new(config), backend
end

local function counter()
  local n = 0
  return function() n = n + 1; return n end, function() return n end
end

describe("cached", function()
  local c, backend
  local saved_provider
  local request -- { path, args } served by the provider, or nil

  before_each(function()
    c, backend = new_cache()
    saved_provider = cache.request_provider
    request = nil
    cache.request_provider = function()
      if request then return request[1], request[2] end
    end
  end)
  after_each(function()
    cache.request_provider = saved_provider
  end)

  describe("the documentation's examples", function()
    it("big_foo view: view/<path> per request path", function()
      local f, count = counter()
      local big_foo = c:cached{ timeout = 50 }(function() return "page " .. f() end)
      request = { "/foo" }
      assert.equal("page 1", big_foo())
      assert.equal("page 1", big_foo())
      assert.is_not_nil(backend.data["view//foo"])
      assert.equal(50, backend:timeout_of("view//foo"))
      request = { "/bar" }
      assert.equal("page 2", big_foo())
      assert.equal(2, count())
    end)

    it("get_list with a literal key_prefix needs no request", function()
      local f, count = counter()
      local get_list = c:cached{ key_prefix = "MyCachedList" }(function()
        f()
        local t = {}
        for i = 1, 50 do t[i] = math.random(0, 1) end
        return t
      end)
      local l1 = get_list()
      assert.same(l1, get_list())
      assert.equal(1, count())
      assert.is_not_nil(backend.data.MyCachedList)
    end)
  end)

  describe("keys", function()
    it("share one entry per path whatever the arguments (as Flask-Caching)", function()
      local f, count = counter()
      local view = c:cached()(function(id) f(); return id end)
      request = { "/x" }
      assert.equal(1, view(1))
      assert.equal(1, view(2))
      assert.equal(1, count())
    end)

    it("a key_prefix function gives the whole key", function()
      local m = c:cached{ key_prefix = function() return "custom:" .. request[1] end }(
        function() return 1 end)
      request = { "/p" }
      m()
      assert.is_not_nil(backend.data["custom:/p"])
    end)

    it("formats key_prefix as Python's `prefix % path` (%% is a percent sign)", function()
      local v = c:cached{ key_prefix = "100%%/%s/%s" }(function() return 1 end)
      request = { "/p%s" }
      v()
      assert.is_not_nil(backend.data["100%//p%s//p%s"])
    end)

    it("a %s prefix without a request raises a clear error", function()
      local view = c:cached()(function() return 1 end)
      local ok, err = pcall(view)
      assert.is_false(ok)
      assert.matches("no request", err)
      assert.matches("request_provider", err)
    end)

    it("the default request provider outside OpenResty has no request", function()
      cache.request_provider = saved_provider
      assert.is_nil(cache.request_provider())
      local view = c:cached()(function() return 1 end)
      assert.has_error(function() view() end)
    end)

    it("query_string: prefix + hex digest of the sorted arguments (Flask-Caching's digest)", function()
      local view = c:cached{ query_string = true, hash_method = "sha256" }(function() return 1 end)
      request = { "/works", { offset = "20", mock = "true", limit = "15" } }
      view()
      -- behaviour.md §5.3: FC-2.5 with sha256
      assert.is_not_nil(backend.data[
        "view//worksc0088a69f42cdb281e81cb823159251693b5afccff7e539107c3c05d1c269c78"])
    end)

    it("query_string with md5 (the default) and argument order not mattering", function()
      local f, count = counter()
      local view = c:cached{ query_string = true }(function() return f() end)
      request = { "/works", { offset = "20", mock = "true", limit = "15" } }
      view()
      assert.is_not_nil(backend.data["view//works8c5a601cb9ad784d74135aa69d38fb82"])
      request = { "/works", { limit = "15", offset = "20", mock = "true" } }
      view()
      assert.equal(1, count())
      request = { "/works", { limit = "16", offset = "20", mock = "true" } }
      view()
      assert.equal(2, count())
    end)

    it("query_string includes repeated names (multi-valued arguments)", function()
      local f, count = counter()
      local view = c:cached{ query_string = true }(function() return f() end)
      request = { "/t", { tag = { "a", "b" } } }
      view()
      request = { "/t", { tag = { "b", "a" } } }
      view()
      assert.equal(1, count())
      request = { "/t", { tag = "a" } }
      view()
      assert.equal(2, count())
      assert.equal(cache.core.query_digest("md5", { tag = { "a", "b" } }),
        cache.core.hex_digest("md5", "(('tag', 'a'), ('tag', 'b'))"))
    end)

    it("query_string with a function hash_method", function()
      local view = c:cached{ query_string = true, key_prefix = "q/",
                             hash_method = function(b) return "\0\255" .. #b end }(
        function() return 1 end)
      request = { "/x", { a = "1" } }
      view()
      -- "(('a', '1'),)" is 13 bytes
      assert.is_not_nil(backend.data["q/00ff3133"])
    end)

    it("query_string with no request raises", function()
      local view = c:cached{ query_string = true, key_prefix = "lit" }(function() return 1 end)
      assert.has_error(function() view() end)
    end)

    it("make_cache_key replaces the key builder and gets the call's arguments", function()
      local m = c:cached{ make_cache_key = function(a, b) return "k:" .. a .. ":" .. b end }(
        function(a, b) return a + b end)
      assert.equal(3, m(1, 2))
      assert.is_not_nil(backend.data["k:1:2"])
    end)

    it("source_check appends the hex digest of the source", function()
      local m = c:cached{ key_prefix = "src", source_check = true }(function() return 1 end)
      m()
      local key = next(backend.data)
      assert.matches("^src%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$", key)
    end)

    it("the make_cache_key attribute gives the key of the current request", function()
      local view = c:cached()(function() return 1 end)
      request = { "/a" }
      assert.equal("view//a", view.make_cache_key())
    end)
  end)

  describe("options", function()
    it("unless(f, ...) bypasses; forced_update recomputes; is_stale; response_filter", function()
      local f = counter()
      local flags = {}
      local v = c:cached{
        key_prefix = "opts",
        unless = function(fn, ...) return flags.unless end,
        forced_update = function() return flags.forced end,
        is_stale = function(value) return flags.stale end,
        response_filter = function(r) return not flags.filter end,
      }(function() return f() end)
      assert.equal(1, v())
      assert.equal(1, v())
      flags.unless = true
      assert.equal(2, v())
      flags.unless = nil
      assert.equal(1, v())
      flags.forced = true
      assert.equal(3, v())
      flags.forced = nil
      assert.equal(3, v())
      flags.stale = true
      assert.equal(4, v())
      flags.stale = nil
      flags.filter = true
      assert.equal(4, v())
      backend.data = {}
      assert.equal(5, v())
      assert.equal(6, v()) -- filtered: never stored
    end)

    it("cache_none stores nil", function()
      local f, count = counter()
      local v = c:cached{ key_prefix = "none", cache_none = true }(function() f(); return nil end)
      v(); v()
      assert.equal(1, count())
      local w = c:cached{ key_prefix = "none2" }(function() f(); return nil end)
      w(); w()
      assert.equal(3, count())
    end)

    it("keeps several return values", function()
      local v = c:cached{ key_prefix = "multi" }(function() return 200, { ["Content-Type"] = "text/plain" }, "body" end)
      v() -- stores
      local s, h, b = v() -- a hit
      assert.equal(200, s)
      assert.same({ ["Content-Type"] = "text/plain" }, h)
      assert.equal("body", b)
    end)

    it("cache_timeout is read at each miss", function()
      local v = c:cached{ key_prefix = "t", timeout = 5 }(function() return 1 end)
      v.cache_timeout = 11
      v()
      assert.equal(11, backend:timeout_of("t"))
    end)

    it("response_hit_indication sets hit_cache: True in OpenResty on hits only", function()
      local header = {}
      _G.ngx = { header = header }
      local ok, err = pcall(function()
        local v = c:cached{ key_prefix = "hit", response_hit_indication = true }(function() return 1 end)
        v()
        assert.is_nil(header.hit_cache)
        v()
        assert.equal("True", header.hit_cache)
      end)
      _G.ngx = nil
      assert(ok, err)
    end)

    it("the default request provider reads ngx.var.uri and ngx.req.get_uri_args()", function()
      cache.request_provider = saved_provider
      _G.ngx = { var = { uri = "/from/ngx" },
                 req = { get_uri_args = function() return { b = "2", a = { "1", "0" } } end } }
      local ok, err = pcall(function()
        local path, args = cache.request_provider()
        assert.equal("/from/ngx", path)
        assert.same({ b = "2", a = { "1", "0" } }, args)
        local v = c:cached{ query_string = true }(function() return 1 end)
        v()
        local want = "view//from/ngx" .. cache.core.hex_digest("md5",
          "(('a', '0'), ('a', '1'), ('b', '2'))")
        assert.is_not_nil(backend.data[want])
      end)
      _G.ngx = nil
      assert(ok, err)
    end)

    it("rejects unknown options, naming them", function()
      local ok, err = pcall(c.cached, c, { key_prefx = "x" })
      assert.is_false(ok)
      assert.matches("key_prefx", err)
      ok, err = pcall(c.cached, c, { args_to_ignore = { "a" } }) -- memoize only
      assert.is_false(ok)
      assert.matches("args_to_ignore", err)
    end)

    it("rejects a timeout that is not a number (NaN included), when decorating or assigned", function()
      local f = function() return 1 end
      for _, bad in ipairs { 0 / 0, "60", {} } do
        local ok, err = pcall(function() return c:cached{ timeout = bad }(f) end)
        assert.is_false(ok)
        assert.matches("cached_spec%.lua:%d+: cached: option 'timeout': ", err)
      end
      local ok, err = pcall(function() return c:cached(0 / 0) end)
      assert.is_false(ok)
      assert.matches("cached_spec%.lua:%d+: cached: option 'timeout': number expected, got NaN", err)
      local v = c:cached{ key_prefix = "t", timeout = 5 }(f)
      ok, err = pcall(function() v.cache_timeout = 0 / 0 end)
      assert.is_false(ok)
      assert.matches("cached_spec%.lua:%d+: cached: cache_timeout: ", err)
      assert.equal(5, v.cache_timeout)
    end)

    it("accepts the function first: c:cached(fn, opts)", function()
      local v = c:cached(function() return "x" end, { key_prefix = "first" })
      assert.equal("x", v())
      assert.is_not_nil(backend.data.first)
    end)
  end)

  describe("delete_cached", function()
    it("deletes the entry of a path, outside a request", function()
      local f = counter()
      local view = c:cached()(function() return f() end)
      request = { "/p" }
      view()
      request = nil
      assert.is_true(c:delete_cached(view, "/p"))
      request = { "/p" }
      assert.equal(2, view())
    end)

    it("with query arguments", function()
      local f = counter()
      local view = c:cached{ query_string = true }(function() return f() end)
      request = { "/s", { q = "lua", page = "2" } }
      view()
      request = nil
      assert.is_false(c:delete_cached(view, "/s", { q = "lua" }))
      assert.is_true(c:delete_cached(view, "/s", { page = "2", q = "lua" }))
    end)

    it("of the current request without a path", function()
      local view = c:cached()(function() return 1 end)
      request = { "/cur" }
      view()
      assert.is_true(c:delete_cached(view))
      assert.is_nil(backend.data["view//cur"])
    end)
  end)

  describe("backend failures", function()
    local logged, saved_log
    before_each(function()
      logged = {}
      saved_log = cache.log
      cache.log = function(msg) logged[#logged + 1] = msg end
    end)
    after_each(function() cache.log = saved_log end)

    it("fail open and log once per burst", function()
      local f = counter()
      local view = c:cached{ key_prefix = "down" }(function() return f() end)
      backend.fail = "connection refused"
      assert.equal(1, view())
      assert.equal(2, view())
      assert.equal(1, #logged)
      backend.fail = nil
      assert.equal(3, view())
      assert.equal(3, view())
    end)

    it("a raising view caches nothing and its error propagates", function()
      local view = c:cached{ key_prefix = "err" }(function() error({ code = 500 }) end)
      local ok, e = pcall(view)
      assert.is_false(ok)
      assert.same({ code = 500 }, e)
      assert.is_nil(backend.data.err)
    end)

    it("a result that cannot be stored is returned and logged, on a Lua or a core backend", function()
      for _, cc in ipairs { c, cache.new{} } do
        logged = {}
        local f, count = counter()
        local view = cc:cached{ key_prefix = "fn" }(function() f(); return print, 2 end)
        local r, two = view()
        assert.equal(print, r)
        assert.equal(2, two)
        assert.equal(1, #logged)
        assert.matches("cannot store a function", logged[1])
        assert.equal(print, (view()))
        assert.equal(2, count())
      end
    end)
  end)
end)
