-- cached and memoize with fetch's options (lock, neg_timeout,
-- stale_timeout, refresh, early_refresh) go through fetch; without them
-- nothing changes (API.md §4).
local cache = require "cache"
local helpers = require "support.helpers"

describe("decorators through fetch", function()
  local c
  before_each(function()
    c = cache.new { CACHE_TYPE = "SimpleCache", CACHE_THRESHOLD = 10000 }
    cache.request_provider = function() return "/page", {} end
  end)
  after_each(function() cache.request_provider = nil end)

  it("memoize with neg_timeout stores a nil result and does not recompute it", function()
    local runs = 0
    local find = c:memoize { neg_timeout = 30 }(function(_id) runs = runs + 1 return nil end)
    assert.is_nil(find(7))
    assert.is_nil(find(7))
    assert.is_nil(find(7))
    assert.equal(1, runs)
    assert.is_nil(find(8))
    assert.equal(2, runs)
    local s = c:stats()
    assert.equal(2, s.levels[3])
    assert.equal(2, s.levels[2])
  end)

  it("cached with stale_timeout serves the old page when the view fails", function()
    local fail = false
    local n = 0
    local view = c:cached { timeout = 0.1, stale_timeout = 30 }(function()
      if fail then error("template error") end
      n = n + 1
      return "page " .. n
    end)
    local saved = cache.log
    cache.log = function() end
    assert.equal("page 1", view())
    assert.equal("page 1", view())
    helpers.sleep(0.15)
    fail = true
    assert.equal("page 1", view()) -- stale, the error logged
    fail = false
    assert.equal("page 2", view())
    cache.log = saved
    assert.equal(1, c:stats().stale_served)
  end)

  it("memoize with stale_timeout treats a nil, err result as a failure", function()
    local answer = { "v1" }
    local f = c:memoize { timeout = 0.1, stale_timeout = 30 }(function(_x) return answer[1], answer[2] end)
    assert.equal("v1", f(1))
    helpers.sleep(0.15)
    answer = { nil, "db down" }
    local saved = cache.log
    cache.log = function() end
    local v, err = f(1)
    cache.log = saved
    assert.equal("v1", v)
    assert.is_nil(err)
    -- with nothing stale: the caller gets the function's nil, err
    local v2, err2 = f(2)
    assert.is_nil(v2)
    assert.equal("db down", err2)
  end)

  it("keeps several results, response_filter, cache_none, forced_update and delete_memoized", function()
    local runs = 0
    local f = c:memoize { lock = true }(function(a) runs = runs + 1 return a, a * 2, "x" end)
    assert.same({ 3, 6, "x" }, { f(3) })
    assert.same({ 3, 6, "x" }, { f(3) })
    assert.equal(1, runs)
    c:delete_memoized(f)
    f(3)
    assert.equal(2, runs)
    c:delete_memoized(f, 3)
    f(3)
    assert.equal(3, runs)

    local filtered = 0
    local g = c:memoize { lock = true, response_filter = function(v) return v > 10 end }(
      function(v) filtered = filtered + 1 return v end)
    g(1) g(1)
    assert.equal(2, filtered) -- refused by the filter: not stored
    g(20) g(20)
    assert.equal(3, filtered)

    local nones = 0
    local h = c:memoize { lock = true, cache_none = true }(function() nones = nones + 1 return nil end)
    h() h()
    assert.equal(1, nones)

    local force, forced = false, 0
    local k = c:memoize { lock = true, forced_update = function() return force end }(
      function() forced = forced + 1 return forced end)
    assert.equal(1, k())
    assert.equal(1, k())
    force = true
    assert.equal(2, k())
    force = false
    assert.equal(2, k())
  end)

  it("goes through fetch only when a fetch option is given", function()
    local plain = c:memoize { timeout = 50 }(function(a) return a end)
    plain(1) plain(1)
    local view = c:cached { timeout = 50 }(function() return "page" end)
    view() view()
    local s = c:stats()
    assert.same({ 0, 0, 0, 0 }, s.levels)
    assert.equal(0, s.callback_runs)
    local fetched = c:memoize { timeout = 50, early_refresh = 1 }(function(a) return a end)
    fetched(1) fetched(1)
    s = c:stats()
    assert.same({ 0, 1, 1, 0 }, s.levels)
  end)

  it("keeps Flask-Caching's keys with fetch options", function()
    local f1 = c:memoize { name = "app.f" }(function(a) return a end)
    local f2 = c:memoize { name = "app.f", lock = true }(function(a) return a end)
    assert.equal(f1.make_cache_key(5), f2.make_cache_key(5))
    local v1 = c:cached { key_prefix = "view/%s" }(function() return 1 end)
    local v2 = c:cached { key_prefix = "view/%s", refresh = "background" }(function() return 1 end)
    assert.equal(v1.make_cache_key(), v2.make_cache_key())
  end)

  it("checks the fetch options when decorating, at the caller's line", function()
    local ok, err = pcall(function() c:memoize { refresh = "never" }(print) end)
    assert.is_false(ok)
    assert.matches("decorators_fetch_spec%.lua:%d+: memoize: option 'refresh': 'inline' or 'background' expected",
                   err)
    ok, err = pcall(function() c:cached { stale_timeout = -1 }(print) end)
    assert.is_false(ok)
    assert.matches("cached: option 'stale_timeout': number >= 0 expected", err)
    ok, err = pcall(function() c:cached { lock = "yes" }(print) end)
    assert.is_false(ok)
    assert.matches("cached: option 'lock': boolean expected", err)
  end)
end)
