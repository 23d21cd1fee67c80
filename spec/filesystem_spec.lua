-- FileSystemCache as a user sees it on disk.
local cache = require "cache"
local helpers = require "support.helpers"

local function files(dir)
  local list = {}
  local p = io.popen("ls -A '" .. dir .. "'")
  for name in p:lines() do list[#list + 1] = name end
  p:close()
  table.sort(list)
  return list
end

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

describe("FileSystemCache", function()
  local dir, c
  before_each(function()
    dir = helpers.tmpdir("fsspec") .. "/nested/cache"
    c = cache.FileSystemCache { cache_dir = dir }
  end)

  it("creates cache_dir and names files by the md5 of the key", function()
    assert.is_true(c:set("foo", "bar"))
    assert.same({ "acbd18db4cc2f85cedef654fccc4a4d8" }, files(dir))
  end)

  it("names files with the hash_method given", function()
    local d = helpers.tmpdir("fshash")
    local s = cache.FileSystemCache { cache_dir = d, hash_method = "sha256" }
    s:set("foo", 1)
    assert.same({ "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" }, files(d))
    local ok, err = pcall(cache.FileSystemCache, { cache_dir = d, hash_method = "crc32" })
    assert.is_false(ok)
    assert.matches("hash_method", err)
  end)

  it("writes a versioned header, then the encoded value", function()
    c:set("foo", "bar", 0)
    local f = io.open(dir .. "/acbd18db4cc2f85cedef654fccc4a4d8", "rb")
    local bytes = f:read("a")
    f:close()
    assert.equal("LCFS\1", bytes:sub(1, 5))
    assert.equal(("\0"):rep(8), bytes:sub(9, 16)) -- expiry 0: never
    assert.equal(cache.encode("bar"), bytes:sub(17))
  end)

  it("creates files with mode 0600 by default, or the mode given", function()
    c:set("a", 1)
    assert.equal("600", helpers.sh("stat -c %a '" .. dir .. "'/" .. files(dir)[1]))
    local d = helpers.tmpdir("fsmode")
    local m = cache.FileSystemCache { cache_dir = d, mode = tonumber("644", 8) }
    m:set("a", 1)
    assert.equal("644", helpers.sh("stat -c %a '" .. d .. "'/" .. files(d)[1]))
  end)

  it("treats a corrupt, truncated or foreign entry as a miss and removes it", function()
    c:set("foo", "bar")
    local path = dir .. "/acbd18db4cc2f85cedef654fccc4a4d8"
    for _, junk in ipairs { "", "LCFS", "not a cache file at all", "LCFS\1\0\0\0" .. ("\0"):rep(8) .. "\xc1" } do
      write(path, junk)
      assert.is_nil(c:get("foo"))
      assert.is_false(io.open(path) ~= nil)
      assert.is_true(c:set("foo", "bar"))
      assert.equal("bar", c:get("foo"))
    end
  end)

  it("never follows a symlink at an entry's name", function()
    local target = helpers.tmpdir("fstarget") .. "/secret"
    write(target, "keep me")
    c:set("foo", 1)
    local path = dir .. "/acbd18db4cc2f85cedef654fccc4a4d8"
    os.remove(path)
    assert(os.execute(("ln -s '%s' '%s'"):format(target, path)))
    assert.is_nil(c:get("foo"))
    assert.is_true(c:set("foo", 2))
    assert.equal(2, c:get("foo"))
    local f = io.open(target)
    assert.equal("keep me", f:read("a"))
    f:close()
  end)

  it("clear removes only its own files", function()
    write(dir .. "/README", "mine")
    write(dir .. "/0123", "short name")
    c:set_many { a = 1, b = 2 }
    assert.is_true(c:clear())
    assert.same({ "0123", "README" }, files(dir))
  end)

  it("prunes past threshold: expired first, then the oldest", function()
    local d = helpers.tmpdir("fsprune")
    local p = cache.FileSystemCache { cache_dir = d, threshold = 10 }
    -- "oldest" is by mtime, which the kernel keeps in clock ticks: entries
    -- written within one tick tie, and any of them may go. Each write here
    -- lies well past the tick of the one before.
    for i = 1, 9 do
      p:set("k" .. i, i)
      helpers.sleep(0.02)
    end
    p:set("expired", 1, 0.05) -- the newest
    helpers.sleep(0.1)
    -- 11 entries: pruned to 10 - 10 / 10 = 9, the expired one first, then
    -- the oldest live one (by age alone k1 and k2 would go)
    p:set("k10", 10)
    assert.is_false(p:has("expired"))
    assert.is_nil(p:get("k1"))
    for i = 2, 10 do assert.equal(i, p:get("k" .. i)) end
    assert.equal(9, #files(d))
    for i = 11, 40 do p:set("k" .. i, i) end
    local n = #files(d)
    assert.is_true(n <= 10, "entries: " .. n)
    assert.equal(40, p:get("k40"))
    -- k2..k9 are older than every later entry: they went first
    for i = 2, 9 do assert.is_nil(p:get("k" .. i)) end
  end)

  it("threshold 0 keeps everything", function()
    local d = helpers.tmpdir("fsnolimit")
    local p = cache.FileSystemCache { cache_dir = d, threshold = 0 }
    for i = 1, 600 do p:set("k" .. i, i) end
    assert.equal(600, #files(d))
  end)

  it("shares entries between processes", function()
    c:set("shared", { from = "parent" })
    local lua = jit and "luajit" or "lua5.4"
    local out = helpers.sh(([[%s -e 'local c = require("cache").FileSystemCache{cache_dir = "%s"}
      io.write(c:get("shared").from); c:set("back", "child")']]):format(lua, dir))
    assert.equal("parent", out)
    assert.equal("child", c:get("back"))
  end)

  it("reports I/O failures as false, err and keeps going", function()
    local d = helpers.tmpdir("fsgone")
    local p = cache.FileSystemCache { cache_dir = d }
    p:set("a", 1)
    assert(os.execute("rm -rf '" .. d .. "' && touch '" .. d .. "'"))
    local ok, err = p:set("a", 2)
    assert.is_false(ok)
    assert.is_string(err)
    local v = p:get("a")
    assert.is_nil(v)
    os.remove(d)
  end)

  describe("inc while another process holds the increment lock", function()
    local holder
    -- flock(1) from util-linux locks the cache directory itself, as inc
    -- does; setsid makes the holder its own process group, so that killing
    -- -pid ends flock and its sleep together.
    local function hold_lock(d, seconds)
      holder = tonumber(helpers.sh(("setsid flock '%s' sleep %d >/dev/null 2>&1 & echo $!")
        :format(d, seconds)))
      for _ = 1, 100 do
        if not os.execute(("flock -n -E 75 '%s' true"):format(d)) then return end
        helpers.sleep(0.05)
      end
      error("the lock holder never took the lock")
    end
    local function now() return tonumber(helpers.sh("date +%s.%N")) end
    after_each(function()
      if holder then os.execute("kill -- -" .. holder .. " 2>/dev/null") end
      holder = nil
    end)

    it("gives up after the object's timeout with nil, err", function()
      local d = helpers.tmpdir("fslock")
      local p = cache.FileSystemCache { cache_dir = d, timeout = 0.3 }
      assert.equal(1, p:inc("n"))
      hold_lock(d, 10)
      local t0 = now()
      local v, err = p:inc("n")
      local took = now() - t0
      assert.is_nil(v)
      assert.matches("lock", err)
      assert.is_true(took >= 0.25 and took < 5, "inc took " .. took .. " s")
      local dv, derr = p:dec("n")
      assert.is_nil(dv)
      assert.is_string(derr)
      os.execute("kill -- -" .. holder)
      holder = nil
      assert.equal(2, p:inc("n"))
      assert.equal(2, p:get("n"))
    end)

    it("waits 1 s by default", function()
      local d = helpers.tmpdir("fslockdef")
      local p = cache.FileSystemCache { cache_dir = d }
      hold_lock(d, 10)
      local t0 = now()
      local v, err = p:inc("n")
      local took = now() - t0
      assert.is_nil(v)
      assert.is_string(err)
      assert.is_true(took >= 0.9 and took < 6, "inc took " .. took .. " s")
    end)

    it("waits as long as it takes with timeout = 0", function()
      local d = helpers.tmpdir("fslockzero")
      local p = cache.FileSystemCache { cache_dir = d, timeout = 0 }
      hold_lock(d, 3) -- longer than the 1 s default
      local t0 = now()
      assert.equal(1, p:inc("n"))
      assert.is_true(now() - t0 > 0.3, "inc returned before the holder let go")
    end)

    it("rejects a timeout that is not a non-negative number", function()
      local ok, err = pcall(cache.FileSystemCache, { cache_dir = dir, timeout = -1 })
      assert.is_false(ok)
      assert.matches("timeout", err)
      ok, err = pcall(cache.FileSystemCache, { cache_dir = dir, timeout = "1" })
      assert.is_false(ok)
      assert.matches("timeout", err)
    end)
  end)

  it("rejects bad options, naming them", function()
    local ok, err = pcall(cache.FileSystemCache, {})
    assert.is_false(ok)
    assert.matches("option 'cache_dir' is required", err)
    ok, err = pcall(cache.FileSystemCache, { cache_dir = dir, threshold = -1 })
    assert.is_false(ok)
    assert.matches("threshold", err)
    ok, err = pcall(cache.FileSystemCache, { cache_dir = dir, mode = "600" })
    assert.is_false(ok)
    assert.matches("mode", err)
  end)
end)
