-- FileSystemCache's read cache (backends/filesystem/fs_readcache.c): a get
-- served from the bytes kept for a recently read entry must never differ
-- from reading the file. Two objects on one directory stand for two
-- processes.
local cache = require "cache"
local helpers = require "support.helpers"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function write_file(path, bytes)
  local f = assert(io.open(path, "r+b"))
  f:write(bytes)
  f:close()
end

describe("FileSystemCache read cache", function()
  local dir, a, b
  before_each(function()
    dir = tmpdir()
    a = cache.FileSystemCache { cache_dir = dir }
    b = cache.FileSystemCache { cache_dir = dir }
  end)
  after_each(function()
    a:clear()
    a:close()
    b:close()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("sees another writer's replacement, removal and re-creation", function()
    assert.is_true(b:set("k", "one"))
    assert.equal("one", a:get("k"))
    assert.equal("one", a:get("k")) -- from the kept bytes
    assert.is_true(b:set("k", "two")) -- same size, new file
    assert.equal("two", a:get("k"))
    assert.equal("two", a:get("k"))
    assert.is_true(b:delete("k"))
    assert.is_nil(a:get("k"))
    assert.is_true(b:set("k", "six"))
    assert.equal("six", a:get("k"))
    assert.is_true(b:clear())
    assert.is_nil(a:get("k"))
  end)

  it("sees its own writes and an entry expiring", function()
    assert.is_true(a:set("k", 1, 0.3))
    assert.equal(1, a:get("k"))
    assert.equal(1, a:get("k"))
    assert.is_true(a:set("k", 2, 0.3))
    assert.equal(2, a:get("k"))
    assert.equal(3, a:inc("k"))
    assert.equal(3, a:get("k"))
    helpers.sleep(0.4)
    assert.is_nil(a:get("k"))
    assert.is_false(a:has("k"))
  end)

  it("sees a file rewritten in place by someone else", function()
    assert.is_true(a:set("k", "aaaa"))
    assert.equal("aaaa", a:get("k"))
    assert.equal("aaaa", a:get("k"))
    -- find the entry's file and flip a value byte in place (same size)
    local p = io.popen("ls '" .. dir .. "'")
    local name = p:read("l")
    p:close()
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "rb"))
    local bytes = f:read("a")
    f:close()
    write_file(path, bytes:sub(1, -2) .. "b")
    assert.equal("aaab", a:get("k"))
    -- corrupt it in place: a miss, and the file is removed
    write_file(path, "XXXX")
    assert.is_nil(a:get("k"))
  end)

  it("serves large values (not kept) and many keys correctly", function()
    local big = ("z"):rep(100000)
    assert.is_true(b:set("big", big))
    assert.equal(big, a:get("big"))
    assert.equal(big, a:get("big"))
    for i = 1, 300 do assert.is_true(b:set("k" .. i, i)) end
    for round = 1, 2 do
      for i = 1, 300 do assert.equal(i, a:get("k" .. i)) end
    end
    for i = 1, 300, 2 do assert.is_true(b:set("k" .. i, -i)) end
    for i = 1, 300 do assert.equal(i % 2 == 1 and -i or i, a:get("k" .. i)) end
  end)

  -- A child under a small descriptor limit: the read caches of many
  -- objects must leave the rest of the program room to open files, and a
  -- get must still work when the program itself used up every descriptor.
  local function under_ulimit(n, script)
    local lua = jit and "luajit" or "lua5.4"
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local out = helpers.sh(("ulimit -n %d; %s '%s' '%s' 2>&1"):format(n, lua, path, dir))
    os.remove(path)
    return out
  end

  it("shares a descriptor budget sized from RLIMIT_NOFILE between objects", function()
    local out = under_ulimit(150, [[
      local cache = require "cache"
      local root = arg[1]
      local objs = {}
      for o = 1, 8 do
        objs[o] = cache.FileSystemCache { cache_dir = root .. "/o" .. o }
        for i = 1, 100 do assert(objs[o]:set("k" .. i, o * 1000 + i)) end
      end
      local bad = 0
      for _ = 1, 3 do -- read again soon: the entries are kept open
        for o = 1, 8 do
          for i = 1, 100 do
            local v, err = objs[o]:get("k" .. i)
            if v ~= o * 1000 + i then
              bad = bad + 1
              if bad == 1 then io.write("get: ", tostring(err), "\n") end
            end
          end
        end
      end
      local f, err = io.open(root .. "/new-file", "w")
      io.write("open: ", f and "ok" or err, "\n")
      if f then f:close() end
      local sf = assert(io.open("/proc/self/stat"))
      local pid = sf:read("n")
      sf:close()
      local kept = 0 -- entries held open; the 8 directories are not counted
      local ls = assert(io.popen("ls -l /proc/" .. pid .. "/fd"))
      for line in ls:lines() do
        local at = line:find(root, 1, true)
        if at and line:sub(at + #root):match("^/o%d+/%x+$") then kept = kept + 1 end
      end
      ls:close()
      io.write("kept: ", kept, "\n")
      io.write("bad gets: ", bad, "\n")
    ]])
    assert.matches("open: ok", out, 1, true)
    assert.matches("bad gets: 0$", out)
    local kept = tonumber(out:match("kept: (%d+)"))
    assert.is_true(kept > 0 and kept <= math.floor(150 / 8), "entries kept open: " .. tostring(kept))
  end)

  it("gives kept descriptors back when the process runs out", function()
    local out = under_ulimit(150, [[
      local cache = require "cache"
      local root = arg[1]
      local c = cache.FileSystemCache { cache_dir = root .. "/o" }
      for i = 1, 80 do assert(c:set("k" .. i, i)) end
      -- k1..k40 read twice: kept open; k41..k80 never read yet
      for _ = 1, 2 do for i = 1, 40 do assert(c:get("k" .. i) == i) end end
      local held = {}
      while true do -- the program takes every descriptor left
        local f = io.open("/dev/null")
        if not f then break end
        held[#held + 1] = f
      end
      local bad = 0
      for i = 80, 1, -1 do
        local v, err = c:get("k" .. i)
        if v ~= i then
          bad = bad + 1
          if bad == 1 then io.write("get: ", tostring(err), "\n") end
        end
      end
      local ok, err = c:set("fresh", 1)
      io.write("set: ", tostring(ok), " ", tostring(err), "\n")
      io.write("inc: ", tostring((c:inc("n"))), "\n")
      for _, f in ipairs(held) do f:close() end
      io.write("bad gets: ", bad, "\n")
    ]])
    assert.matches("bad gets: 0$", out)
    assert.matches("set: true nil", out, 1, true)
    assert.matches("inc: 1", out, 1, true)
  end)

  it("keeps a bounded number of files open", function()
    for i = 1, 500 do assert.is_true(a:set("k" .. i, i)) end
    for i = 1, 500 do assert.equal(i, a:get("k" .. i)) end
    local sf = assert(io.open("/proc/self/stat"))
    local pid = sf:read("n")
    sf:close()
    local n = 0
    local d = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
    for line in d:lines() do if line:find(dir, 1, true) then n = n + 1 end end
    d:close()
    assert.is_true(n <= 2 * 64 + 2, "open files under the cache dir: " .. n)
  end)
end)
