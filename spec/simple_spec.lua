-- SimpleCache specifics: the threshold and its eviction order.
local cache = require "cache"
local helpers = require "support.helpers"

describe("SimpleCache", function()
  it("keeps at most threshold entries, evicting the least recently used", function()
    local c = cache.SimpleCache { threshold = 3 }
    c:set("a", 1)
    c:set("b", 2)
    c:set("c", 3)
    assert.equal(1, c:get("a")) -- a is now the most recent
    c:set("d", 4)               -- evicts b
    assert.is_nil(c:get("b"))
    assert.same({ a = 1, c = 3, d = 4 }, c:get_dict("a", "b", "c", "d"))
  end)

  it("evicts expired entries before live ones", function()
    local c = cache.SimpleCache { threshold = 3 }
    c:set("old", 1)
    c:set("short", 2, 0.05)
    c:set("new", 3)
    c:get("short")
    helpers.sleep(0.1)
    c:set("more", 4) -- short has expired: it goes, old stays although least recent
    assert.equal(1, c:get("old"))
    assert.equal(3, c:get("new"))
    assert.equal(4, c:get("more"))
  end)

  it("threshold 0 means 500, as in cachelib", function()
    local c = cache.SimpleCache { threshold = 0 }
    for i = 1, 600 do c:set("k" .. i, i) end
    local hits = 0
    for i = 1, 600 do if c:has("k" .. i) then hits = hits + 1 end end
    assert.equal(500, hits)
    local ok, err = pcall(cache.SimpleCache, { threshold = -1 })
    assert.is_false(ok)
    assert.matches("threshold", err)
  end)

  it("handles many keys quickly under churn", function()
    local c = cache.SimpleCache { threshold = 1000 }
    for i = 1, 100000 do c:set("k" .. (i % 10000), i) end
    local n = 0
    for i = 0, 9999 do if c:has("k" .. i) then n = n + 1 end end
    assert.equal(1000, n)
  end)

  it("separate objects are separate caches", function()
    local a, b = cache.SimpleCache {}, cache.SimpleCache {}
    a:set("k", 1)
    assert.is_nil(b:get("k"))
  end)
end)
