-- c:stats() (API.md §4): counters kept in C per object, checked against
-- scripted sequences exactly, on every backend of spec/backends and on a
-- Cache object; fetch's counters are in fetch_spec.
local cache = require "cache"
local helpers = require "support.helpers"

-- The counters a scripted sequence must leave (fetch's stay zero here).
local function expect(c, want)
  local s = c:stats()
  local got = {}
  for _, k in ipairs { "hits", "misses", "sets", "deletes", "errors" } do got[k] = s[k] end
  assert.same(want, got)
  assert.same({ 0, 0, 0, 0 }, s.levels)
  for _, k in ipairs { "stale_served", "callback_runs", "callback_errors", "lock_waits", "lock_timeouts" } do
    assert.equal(0, s[k], k)
  end
end

-- get/has/get_many/get_dict count per key; set, an add that stored, each
-- key set_many stored and inc/dec count as sets; deletes count keys that
-- existed; clear counts nothing.
local function script(c)
  assert.is_nil(c:get("a"))                     -- miss 1
  assert.is_true(c:set("a", 1))                 -- set 1
  assert.equal(1, c:get("a"))                   -- hit 1
  assert.is_true(c:has("a"))                    -- hit 2
  assert.is_false(c:has("zz"))                  -- miss 2
  assert.is_false(c:add("a", 2))                -- refused: nothing
  assert.is_true(c:add("b", 2))                 -- set 2
  assert.is_true((c:set_many { x = 1, y = 2 })) -- sets 3, 4
  local r = helpers.pack(c:get_many("a", "x", "nope", "y")) -- hits 3..5, miss 3
  assert.equal(4, r.n)
  assert.same({ a = 1 }, c:get_dict("a", "gone")) -- hit 6, miss 4
  assert.equal(1, c:inc("n"))                   -- set 5
  assert.equal(0, c:dec("n"))                   -- set 6
  assert.is_true(c:delete("a"))                 -- delete 1
  assert.is_false(c:delete("a"))                -- nothing
  local all, keys = c:delete_many("x", "y", "none") -- deletes 2, 3
  assert.is_false(all)
  assert.equal(2, #keys)
  assert.is_true(c:clear())                     -- nothing
  return { hits = 6, misses = 4, sets = 6, deletes = 3, errors = 0 }
end

describe("stats", function()
  for _, f in ipairs(helpers.backends()) do
    describe(f.name, function()
      local ok, why = f.available()
      if not ok then
        it("counts", function() pending(f.name .. ": " .. tostring(why)) end)
        return
      end

      it("counts a scripted sequence exactly", function()
        local c = f.new()
        expect(c, { hits = 0, misses = 0, sets = 0, deletes = 0, errors = 0 })
        local want = script(c)
        expect(c, want)
        -- a fresh table each call, not a view
        local s = c:stats()
        s.hits = 1000
        assert.equal(want.hits, c:stats().hits)
      end)
    end)
  end

  it("counts per object", function()
    local a, b = cache.SimpleCache(), cache.SimpleCache()
    a:set("k", 1)
    a:get("k")
    assert.equal(1, a:stats().hits)
    assert.equal(0, b:stats().hits)
    assert.equal(0, b:stats().sets)
  end)

  it("counts backend failures as errors, and no hit or miss for them", function()
    if not cache.backend_types().RedisCache then return pending("no RedisCache") end
    local down = cache.RedisCache { host = "127.0.0.1", port = 1, connect_timeout = 0.2 }
    local v, err = down:get("k")
    assert.is_nil(v)
    assert.is_string(err)
    assert.is_false((down:set("k", 1)))
    assert.is_nil((down:get_many("a", "b")))
    assert.is_false((down:delete("k")))
    local s = down:stats()
    assert.equal(4, s.errors)
    assert.equal(0, s.hits)
    assert.equal(0, s.misses)
    assert.equal(0, s.sets)
  end)

  it("has items, bytes and evictions on SimpleCache", function()
    local c = cache.SimpleCache { threshold = 3 }
    local s = c:stats()
    assert.same({ 0, 0, 0 }, { s.items, s.bytes, s.evictions })
    for i = 1, 5 do c:set("k" .. i, "v") end -- two live entries evicted
    s = c:stats()
    assert.equal(3, s.items)
    assert.equal(2, s.evictions)
    -- keys of 2 bytes, values encoded as 2 bytes (a fixstr header, "v")
    assert.equal(3 * (2 + #cache.encode("v")), s.bytes)
    c:clear()
    s = c:stats()
    assert.equal(0, s.items)
    assert.equal(0, s.bytes)
    assert.equal(2, s.evictions) -- since the object was opened
  end)

  it("has no memory counters on backends that do not hold entries in memory", function()
    local fs = cache.FileSystemCache { cache_dir = helpers.tmpdir("stats") }
    assert.is_nil(fs:stats().items)
  end)

  it("on a Cache object: the backend's counters", function()
    local c = cache.new { CACHE_TYPE = "SimpleCache" }
    c:set("a", 1)
    c:get("a")
    c:get("b")
    local s = c:stats()
    assert.equal(1, s.hits)
    assert.equal(1, s.misses)
    assert.equal(1, s.sets)
    assert.same(c.cache:stats(), s)
  end)

  it("raises when not called with ':'", function()
    local c = cache.SimpleCache()
    assert.has_error(function() c.stats() end)
  end)
end)
