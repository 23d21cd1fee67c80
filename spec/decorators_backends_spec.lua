-- The decorators against every backend that spec/backends/*.lua describes
-- (a backend whose server is not running here is skipped, with the reason),
-- and fail-open against backends that cannot work: a FileSystemCache whose
-- directory cannot be written and a RedisCache whose server is down.
local cache = require "cache"
local helpers = require "support.helpers"

-- A Cache object on a fresh backend of the factory.
local function cache_on(factory, opts)
  local backend = factory.new(opts)
  return cache.new{ CACHE_TYPE = function() return backend end }, backend
end

local function counter()
  local n = 0
  return function() n = n + 1; return n end, function() return n end
end

local function decorator_suite(factory)
  local c, backend
  local saved_provider
  before_each(function()
    c, backend = cache_on(factory)
    saved_provider = cache.request_provider
  end)
  after_each(function()
    cache.request_provider = saved_provider
    if backend then backend:clear() end
  end)

  local null = factory.name == "NullCache"

  it("memoize: a second call hits (big_foo)", function()
    local f, count = counter()
    local big_foo = c:memoize{ timeout = 50 }(function(a, b) f(); return a + b + count() * 1000 end)
    local r = big_foo(5, 2)
    local r3 = big_foo(5, 3)
    assert.not_equal(r, r3)
    if null then
      assert.not_equal(r, big_foo(5, 2))
      return
    end
    assert.equal(r, big_foo(5, 2))
    assert.equal(r3, big_foo(5, 3))
    assert.equal(2, count())
  end)

  it("memoize: delete_memoized, with and without arguments (param_func, random_func)", function()
    if null then return end
    local f = counter()
    local param_func = c:memoize()(function(a, b) return a + b + f() * 100 end)
    local r12, r22 = param_func(1, 2), param_func(2, 2)
    assert.equal(r12, param_func(1, 2))
    c:delete_memoized(param_func, 1, 2)
    local again = param_func(1, 2)
    assert.not_equal(r12, again)
    assert.equal(r22, param_func(2, 2))
    c:delete_memoized(param_func)
    assert.not_equal(again, param_func(1, 2))
    assert.not_equal(r22, param_func(2, 2))
  end)

  it("memoize: the Adder class, per-instance and per-class deletion", function()
    if null then return end
    local Adder = {}
    Adder.__index = Adder
    local f = counter()
    Adder.add = c:memoize()(function(self, b) return b + f() / 1000 end)
    local adder1, adder2 = setmetatable({}, Adder), setmetatable({}, Adder)
    local a1, a2 = adder1:add(3), adder2:add(3)
    assert.equal(a1, adder1:add(3))
    assert.equal(a2, adder2:add(3))
    c:delete_memoized(Adder.add, adder1)
    local a1b = adder1:add(3)
    assert.not_equal(a1, a1b)
    assert.equal(a2, adder2:add(3))
    c:delete_memoized(Adder.add)
    assert.not_equal(a1b, adder1:add(3))
    assert.not_equal(a2, adder2:add(3))
  end)

  it("memoize: delete_memoized_verhash drops the version key", function()
    if null then return end
    local f, count = counter()
    local name = helpers.unique("vh")
    local m = c:memoize{ name = name }(function() return f() end)
    assert.equal(1, m())
    assert.equal(1, m())
    assert.is_true(backend:has(name .. "_memver"))
    c:delete_memoized_verhash(m)
    assert.is_false(backend:has(name .. "_memver"))
    assert.equal(2, m())
    assert.equal(2, count())
  end)

  it("memoize: tables by value, several results, cache_none", function()
    if null then return end
    local f, count = counter()
    local m = c:memoize{ cache_none = true }(function(t) f(); return t.x, nil, { t.x } end)
    local a, b, t = m({ x = 1, y = { 2, 3 } })
    assert.same({ 1, nil, { 1 } }, { a, b, t })
    a, b, t = m({ y = { 2, 3 }, x = 1 })
    assert.same({ 1, nil, { 1 } }, { a, b, t })
    assert.equal(1, count())
    local none = c:memoize{ cache_none = true }(function() f(); return nil end)
    assert.is_nil(none())
    assert.is_nil(none())
    assert.equal(2, count())
  end)

  it("cached: key_prefix %s with the request path, query_string, delete_cached", function()
    local request
    cache.request_provider = function() return request[1], request[2] end
    local f, count = counter()
    local view = c:cached{ query_string = true }(function() return "page " .. f() end)
    request = { "/works", { offset = "20", mock = "true", limit = "15" } }
    assert.equal("page 1", view())
    if null then return end
    assert.equal("page 1", view())
    assert.equal("page 1", c:get("view//works8c5a601cb9ad784d74135aa69d38fb82"))
    assert.is_true(c:delete_cached(view, "/works", { limit = "15", mock = "true", offset = "20" }))
    assert.equal("page 2", view())
    assert.equal(2, count())
  end)

  it("cached: timeouts reach the backend", function()
    if null then return end
    local gran = factory.caps.ttl_granularity or 1
    -- whole-second backends need a whole second; finer ones get 0.3 s, long
    -- enough that two calls on a loaded machine fall inside it
    local ttl = gran >= 1 and gran or 0.3
    local f = counter()
    local v = c:cached{ key_prefix = helpers.unique("ttl"), timeout = ttl }(function() return f() end)
    assert.equal(1, v())
    assert.equal(1, v())
    helpers.sleep(ttl * 2 + 0.1)
    assert.equal(2, v())
  end)
end

describe("decorators on every backend", function()
  for _, factory in ipairs(helpers.backends()) do
    describe(factory.name, function()
      local ok, why = factory.available()
      if not ok then
        it("is skipped", function() pending(why or "not available") end)
        return
      end
      decorator_suite(factory)
    end)
  end
end)

describe("decorators fail open", function()
  local logged, saved_log
  before_each(function()
    logged = {}
    saved_log = cache.log
    cache.log = function(msg) logged[#logged + 1] = msg end
  end)
  after_each(function() cache.log = saved_log end)

  local function check_fail_open(c)
    local f, count = counter()
    local m = c:memoize(function(a) return a * 10 + f() end)
    assert.equal(11, m(1))
    assert.equal(12, m(1)) -- nothing could be cached
    local v = c:cached{ key_prefix = "down" }(function() return f() end)
    assert.equal(3, v())
    assert.equal(4, v())
    assert.equal(4, count())
    assert.is_true(#logged >= 1)
  end

  it("with FileSystemCache on a directory that cannot be written", function()
    -- The directory is replaced by a regular file once the backend is open:
    -- even root cannot create entries under a file.
    local dir = helpers.tmpdir("failopen")
    local c = cache.new{ CACHE_TYPE = "filesystem", CACHE_DIR = dir }
    assert(os.execute("rm -rf '" .. dir .. "' && touch '" .. dir .. "'"))
    local ok, err = c:set("probe", 1)
    assert.is_false(ok)
    assert.is_string(err)
    check_fail_open(c)
    os.remove(dir)
  end)

  it("with RedisCache whose server is down", function()
    local port = tonumber(helpers.sh("spec/support/freeport.sh 2>/dev/null || echo 1")) or 1
    local c = cache.new{ CACHE_TYPE = "redis", CACHE_REDIS_HOST = "127.0.0.1", CACHE_REDIS_PORT = port,
                         CACHE_OPTIONS = { connect_timeout = 0.2, timeout = 0.2 } }
    check_fail_open(c)
    assert.equal(1, #logged) -- one burst, one line
    assert.matches("127%.0%.0%.1", logged[1])
  end)
end)
