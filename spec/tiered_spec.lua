-- TieredCache (API.md §4) beyond the shared contract (spec/backends/tiered.lua
-- runs that): promotion lifetimes, levels of fetch, and invalidation that
-- reaches another process within ipc_interval (and, without ipc, only by
-- l1_timeout).
local cache = require "cache"
local helpers = require "support.helpers"

local now = cache.core.monotonic

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function tiers(dir, extra)
  local o = { l1 = cache.SimpleCache(), l2 = cache.FileSystemCache { cache_dir = dir, threshold = 0 } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return cache.TieredCache(o)
end

-- Another process reading key k through its own TieredCache on the same l2
-- every 10 ms; it writes "seen" once it has the value in its l1, then exits
-- printing how long after the first value it first read nil.
local function reader(dir, opts_src, out)
  local script = ([[
    local cache = require "cache"
    local now = cache.core.monotonic
    local t = cache.TieredCache { l1 = cache.SimpleCache(),
      l2 = cache.FileSystemCache { cache_dir = %q, threshold = 0 }, %s }
    local deadline = now() + 20
    while t:get("k") == nil and now() < deadline do cache.core.sleep(0.01) end
    assert(t.l1:get("k") ~= nil, "not in l1")
    io.open(%q .. ".seen", "w"):close()
    while t:get("k") ~= nil and now() < deadline do cache.core.sleep(0.01) end
    local f = io.open(%q, "w")
    f:write(string.format("%%.6f", cache.core.wall()))
    f:close()
  ]]):format(dir, opts_src, out, out)
  return helpers.sh(("LUA_PATH=%s LUA_CPATH=%s lua5.4 -e %s >%s.log 2>&1 & echo $!")
    :format(q(os.getenv("LUA_PATH") or ""), q(os.getenv("LUA_CPATH") or ""), q(script), q(out)))
end

local function wait_file(path, limit)
  local deadline = now() + limit
  while now() < deadline do
    local f = io.open(path)
    if f then
      local s = f:read("*a")
      f:close()
      return s
    end
    helpers.sleep(0.02)
  end
end

describe("TieredCache", function()
  it("fetch reports level 1 from l1 and 2 from l2, and promotes", function()
    local dir = helpers.tmpdir("tiered")
    local a, b = tiers(dir), tiers(dir)
    local _, _, level = a:fetch("k", nil, function() return "v" end)
    assert.equal(3, level)
    _, _, level = a:fetch("k", nil, function() return "v" end)
    assert.equal(1, level)
    _, _, level = b:fetch("k", nil, function() error("not called") end)
    assert.equal(2, level)
    _, _, level = b:fetch("k", nil, function() error("not called") end)
    assert.equal(1, level)
    assert.same({ 1, 0, 1, 0 }, a:stats().levels)
    assert.same({ 0, 0, 0, 0 }, a.l1:stats().levels) -- the tiers count their own calls only
    assert.equal(1, a.l1:stats().hits)
  end)

  it("promotes an envelope for its remaining time, a plain value for l1_timeout", function()
    local dir = helpers.tmpdir("tiered")
    local a, b = tiers(dir), tiers(dir, { l1_timeout = 0.4 })
    a:fetch("short", { timeout = 0.2 }, function() return "s" end)
    a:set("plain", "p", 30)
    assert.equal("s", b:get("short"))
    assert.equal("p", b:get("plain"))
    assert.is_not_nil(b.l1:get("short"))
    helpers.sleep(0.25)
    assert.is_nil(b.l1:get("short")) -- its remaining time, not l1_timeout
    assert.is_not_nil(b.l1:get("plain"))
    helpers.sleep(0.25)
    assert.is_nil(b.l1:get("plain")) -- l1_timeout
    assert.equal("p", b:get("plain"))
  end)

  it("a delete in one process reaches another's l1 within ipc_interval", function()
    local dir = helpers.tmpdir("tiered")
    local a = tiers(dir, { ipc_interval = 0 })
    assert.is_true(a:set("k", "value", 0))
    local out = helpers.tmpdir("tiered-out") .. "/gone"
    reader(dir, "l1_timeout = 60, ipc_interval = 0.3", out)
    assert.is_not_nil(wait_file(out .. ".seen", 15), "the reader never saw the value")
    local t_del = cache.core.wall()
    assert.is_true(a:delete("k"))
    local gone = tonumber(wait_file(out, 15))
    assert.is_not_nil(gone, "the reader never saw the delete")
    local lag = gone - t_del
    assert.is_true(lag < 0.3 + 0.7, ("seen %.3f s after the delete"):format(lag))
  end)

  it("without ipc, another process's l1 keeps the old value until l1_timeout", function()
    local dir = helpers.tmpdir("tiered")
    local a = tiers(dir, { ipc = false })
    assert.is_true(a:set("k", "value", 0))
    local out = helpers.tmpdir("tiered-out") .. "/gone"
    reader(dir, "l1_timeout = 1, ipc = false", out)
    assert.is_not_nil(wait_file(out .. ".seen", 15), "the reader never saw the value")
    local t_del = cache.core.wall()
    assert.is_true(a:delete("k"))
    local gone = tonumber(wait_file(out, 15))
    assert.is_not_nil(gone)
    -- the copy was promoted up to 1 s before the delete: gone by then, not
    -- through ipc (which would take 10-20 ms here)
    local lag = gone - t_del
    assert.is_true(lag <= 1.3, ("seen %.3f s after the delete"):format(lag))
  end)

  it("rejects bad options, naming them", function()
    local dir = helpers.tmpdir("tiered")
    local l2 = cache.FileSystemCache { cache_dir = dir }
    local function err_of(o)
      local ok, err = pcall(cache.TieredCache, o)
      assert.is_false(ok)
      return err
    end
    assert.matches("tiered_spec%.lua:%d+: TieredCache: option 'l1': a backend object expected",
                   err_of { l2 = l2 })
    assert.matches("TieredCache: unknown option 'l3'", err_of { l1 = cache.SimpleCache(), l2 = l2, l3 = 1 })
    assert.matches("option 'l1_timeout'", err_of { l1 = cache.SimpleCache(), l2 = l2, l1_timeout = 0 })
    assert.matches("option 'ipc': a lua_shared_dict name needs OpenResty",
                   err_of { l1 = cache.SimpleCache(), l2 = l2, ipc = "dict" })
  end)

  it("keeps its tiers open while it lives", function()
    local dir = helpers.tmpdir("tiered")
    local l1, l2 = cache.SimpleCache(), cache.FileSystemCache { cache_dir = dir }
    local t = cache.TieredCache { l1 = l1, l2 = l2 }
    l1:close()
    l2:close()
    collectgarbage()
    collectgarbage()
    assert.is_true(t:set("k", 1))
    assert.equal(1, t:get("k"))
  end)
end)
