-- Re-entry from finalizers, on every backend of spec/backends/*.lua.
--
-- The garbage collector runs __gc metamethods at any allocation, so Lua code
-- can run in the middle of a method: while a value read from the backend is
-- being turned into Lua tables and strings, while arguments are converted,
-- while a memoized call decodes its hit. A finalizer may use the very object
-- whose method is under way (get, set, get_many, delete, clear, close, a
-- memoized call). The outer call must still return exactly what was stored
-- (or a clean miss / "cache is closed" error where the finalizer removed it),
-- and nothing may touch freed memory: run under `make test SANITIZE=1` too.
local cache = require "cache"
local helpers = require "support.helpers"

local ITER = tonumber(os.getenv("CACHE_FINALIZER_ITER")) or 40
local GARBAGE = 12 -- finalizable objects left behind per iteration

-- An object whose __gc runs fn: tables take __gc from Lua 5.2 on; Lua 5.1
-- and LuaJIT only honour it on userdata (newproxy).
local newproxy = rawget(_G, "newproxy")
local function leave_garbage(fn)
  for _ = 1, GARBAGE do
    if newproxy then
      local p = newproxy(true)
      getmetatable(p).__gc = fn
    else
      setmetatable({}, { __gc = fn })
    end
  end
end

-- A nested value with long strings: its bytes are tens of KiB, so reading
-- it grows any buffer it passes through, and decoding it allocates often.
local function big_value(tag)
  local t = { tag = tag, list = {} }
  for i = 1, 90 do
    t.list[i] = { name = tag .. ":" .. i, text = ("%s-%d-"):format(tag, i):rep(20),
                  n = i, f = i + 0.25, flag = i % 2 == 0 }
  end
  t.map = { deep = { deeper = { tag, ("z"):rep(3000) } } }
  return t
end

local function same(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- The collector working all the time, so that the finalizers left by an
-- iteration run inside the calls that follow. Lua 5.4 in generational mode
-- runs a minor collection, and with it the finalizers of young garbage,
-- each time the heap grows by 1%: several times while a value of tens of
-- KiB is decoded. Older Luas get a short pause and a large step.
local function eager_gc()
  if _VERSION == "Lua 5.4" then
    local mode = collectgarbage("generational", 1, 100)
    return function()
      if mode == "generational" then
        collectgarbage("generational", 20, 100) -- Lua 5.4's defaults
      else
        collectgarbage(mode)
      end
      collectgarbage()
    end
  end
  local pause = collectgarbage("setpause", 10)
  local stepmul = collectgarbage("setstepmul", 1000)
  return function()
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
    collectgarbage()
  end
end

local function suite(f)
  local c, restore_gc
  local BIG = big_value("big")
  local LONG = ("long string "):rep(2500) -- 30 000 bytes
  local OTHER = big_value("other")
  local OTHER_LONG = ("o"):rep(40000) -- larger than BIG's bytes
  local SMALL = { "a few bytes", 1, 2.5, { x = true } } -- read another way

  before_each(function()
    c = f.new()
    assert.is_true(c:set("big", BIG, 0))
    assert.is_true(c:set("long", LONG, 0))
    assert.is_true(c:set("other", OTHER, 0))
    assert.is_true(c:set("other_long", OTHER_LONG, 0))
    assert.is_true(c:set("small", SMALL, 0))
    restore_gc = eager_gc()
  end)

  after_each(function()
    restore_gc()
    if c then pcall(c.clear, c) end
  end)

  -- What finalizers do to the object, in turn: every method that reads or
  -- writes through the object's buffers. Mostly writes of a large table:
  -- encoding allocates nothing in Lua, while a finalizer that allocates much
  -- sets off the next collection at once, and with it the finalizers of
  -- fresh garbage, before the outer call has started. Light finalizers
  -- leave their garbage pending until a collection inside the outer call.
  local function busy(cc)
    local n = 0
    return function()
      n = n + 1
      local k = n % 16
      if k == 0 then cc:get("other")
      elseif k == 4 then cc:get("other_long")
      elseif k == 8 then cc:get_many("other", "absent")
      elseif k == 12 then cc:get(12345)
      elseif k % 4 == 2 then cc:delete("scratch")
      else cc:set("scratch", OTHER) end
    end
  end

  it("get returns what was set while finalizers use the object", function()
    local work = busy(c)
    for i = 1, ITER do
      leave_garbage(work)
      local v = c:get("big")
      assert.is_true(same(BIG, v), "big differs at iteration " .. i)
      leave_garbage(work)
      assert.is_true(LONG == c:get("long"), "long differs at iteration " .. i)
      leave_garbage(work)
      assert.is_true(same(SMALL, c:get("small")), "small differs at iteration " .. i)
    end
  end)

  it("get_many and get_dict return what was set while finalizers use the object", function()
    local work = busy(c)
    for i = 1, ITER do
      leave_garbage(work)
      local a, b = c:get_many("big", "long")
      assert.is_true(same(BIG, a) and LONG == b, "get_many differs at iteration " .. i)
      leave_garbage(work)
      local d = c:get_dict("big", "long")
      assert.is_true(same(BIG, d.big) and LONG == d.long, "get_dict differs at iteration " .. i)
    end
  end)

  it("set stores what was given while finalizers use the object", function()
    local work = busy(c)
    for i = 1, ITER do
      leave_garbage(work)
      assert.is_true(c:set(i % 3, BIG))
      leave_garbage(work)
      assert.is_true(same(BIG, c:get(tostring(i % 3))), "stored value differs at iteration " .. i)
    end
  end)

  it("a memoized call returns its result while finalizers call it and use the object", function()
    local m_calls = 0
    local front = cache.new { CACHE_TYPE = function() return c end }
    local SMALL_ARG = { "small", 2 }
    local m = front:memoize { timeout = 0, name = "spec.finalizer." .. f.name }(function(n)
      m_calls = m_calls + 1
      return n == 1 and BIG or SMALL_ARG
    end)
    assert.is_true(same(BIG, m(1)))
    assert.is_true(same(SMALL_ARG, m(2)))
    local plain = busy(c)
    local k = 0
    local function work()
      k = k + 1
      if k % 4 == 0 then m(2) else plain() end
    end
    for i = 1, ITER do
      leave_garbage(work)
      assert.is_true(same(BIG, m(1)), "memoized result differs at iteration " .. i)
    end
    assert.equal(2, m_calls) -- every later call was a hit
  end)

  it("a finalizer that clears the object leaves a miss or the whole value", function()
    local function work() c:clear() end
    for i = 1, ITER do
      c:set("big", BIG, 0)
      leave_garbage(work)
      local v = c:get("big")
      assert.is_true(v == nil or same(BIG, v), "neither a miss nor the value at iteration " .. i)
    end
  end)

  it("a finalizer that closes the object makes the call fail cleanly", function()
    for i = 1, math.floor(ITER / 2) do
      local d = f.new()
      assert.is_true(d:set("big", BIG, 0))
      leave_garbage(function() d:close() end)
      -- numeric keys are converted to strings, which allocates: the
      -- object can be closed between the start of a call and its backend
      -- access
      local calls = {
        function() return d:get(7) end,
        function() return d:set(7, BIG) end,
        function() return d:get_many(7, 8, "big") end,
        function() return d:delete_many(7, 8) end,
        function() return d:set_many { [7] = 1, [8] = BIG } end,
        function() return d:has(7) end,
        function() return d:inc(9) end,
      }
      for j = 1, 30 do
        local ok, err = pcall(calls[(i + j) % #calls + 1])
        if not ok then
          assert.matches("cache is closed", err, 1, true)
        end
      end
      d:close()
    end
  end)
end

for _, f in ipairs(helpers.backends()) do
  describe("finalizer re-entry: " .. f.name, function()
    local ok, why = f.available()
    if not ok then
      it("runs", function() pending(f.name .. ": " .. tostring(why)) end)
      return
    end
    suite(f)
  end)
end

-- Finalizers that change what a call is in the middle of reading: the
-- mapping of set_many, the options of a constructor, a table argument of a
-- memoized function. Lua allows changing a table while it is traversed
-- (next's behaviour is then undefined when keys are added), so a call must
-- do something sane - use what it saw, or refuse with a clear error - and
-- never write past what it sized for the keys it counted.
describe("finalizers that change a call's arguments", function()
  local restore_gc
  before_each(function() restore_gc = eager_gc() end)
  after_each(function() restore_gc() end)

  -- numeric keys: each is converted to a string, which allocates
  local function mapping_of(n)
    local m = {}
    for j = 1, n do m[j] = j * 2 end
    return m
  end

  it("set_many stores the mapping it saw when a finalizer grows it, or refuses it", function()
    local c = cache.SimpleCache { threshold = 100000 }
    for i = 1, ITER do
      local mapping = mapping_of(2000)
      leave_garbage(function()
        for j = 1, 300 do mapping["more" .. j] = j end
      end)
      local ok, all, done = pcall(c.set_many, c, mapping)
      if ok then
        assert.is_true(all, "iteration " .. i)
        for _, k in ipairs(done) do
          assert.equal(mapping[tonumber(k) or k], c:get(k), "iteration " .. i)
        end
      else
        assert.matches("mapping: changed while it was read", all, 1, true)
      end
    end
  end)

  it("set_many stores what is left when a finalizer empties the mapping", function()
    local c = cache.SimpleCache { threshold = 100000 }
    for i = 1, ITER do
      local mapping = mapping_of(2000)
      leave_garbage(function()
        for j = 1, 2000, 2 do mapping[j] = nil end
      end)
      local all, done = c:set_many(mapping)
      assert.is_true(all, "iteration " .. i)
      assert.is_true(#done >= 1000 and #done <= 2000, "iteration " .. i)
      for _, k in ipairs(done) do
        assert.equal(tonumber(k) * 2, c:get(k), "iteration " .. i)
      end
      c:clear()
    end
  end)

  it("a constructor refuses options that a finalizer adds to, and never overruns", function()
    for i = 1, ITER do
      local opts = { threshold = 10 }
      -- list options allocate while they are converted
      for j = 1, 60 do opts["list" .. j] = { "a", 1, { "host", 2 } } end
      leave_garbage(function()
        for j = 1, 300 do opts["more" .. j] = j end
      end)
      local ok, err = pcall(cache.SimpleCache, opts)
      assert.is_false(ok)
      assert.is_truthy(err:find("unknown option", 1, true) or err:find("options: changed", 1, true),
                       "iteration " .. i .. ": " .. err)
    end
  end)

  it("a constructor keeps the option strings it took while a finalizer drops them", function()
    local base = helpers.tmpdir("finalizer")
    -- list options: each {host, port} item is made a string, which allocates
    local list = {}
    for j = 1, 40 do list[j] = { "host", j } end
    for i = 1, ITER * 4 do
      local opts = {}
      for j = 1, 60 do opts["list" .. j] = list end
      -- made last, so that it is still young (Lua 5.4's minor collections
      -- free it), and held by the options table alone
      opts.cache_dir = base .. "/" .. i .. ("/d"):rep(30)
      leave_garbage(function() opts.cache_dir = nil end)
      local ok, err = pcall(cache.FileSystemCache, opts)
      assert.is_false(ok)
      -- "required": the finalizers ran before the options were read
      assert.is_truthy(err:find("unknown option", 1, true) or err:find("'cache_dir' is required", 1, true),
                       "iteration " .. i .. ": " .. err)
    end
  end)

  it("a memoized call whose table argument a finalizer grows keys it or refuses it", function()
    local c = cache.SimpleCache { threshold = 100000 }
    local front = cache.new { CACHE_TYPE = function() return c end }
    local m = front:memoize { timeout = 0, name = "spec.finalizer.grow" }(function(t)
      return t.k1
    end)
    for i = 1, ITER do
      local arg = {}
      for j = 1, 600 do arg["k" .. j] = j end
      leave_garbage(function()
        for j = 601, 900 do arg["k" .. j] = j end
      end)
      local ok, res = pcall(m, arg)
      if ok then
        assert.equal(1, res)
      else
        assert.matches("changed while it was read", res, 1, true)
      end
      local ok2, key = pcall(cache.core.memo_key, "md5", "f", nil, "v1", arg)
      if ok2 then
        assert.equal("string", type(key))
      else
        assert.matches("changed while it was read", key, 1, true)
      end
    end
  end)
end)
