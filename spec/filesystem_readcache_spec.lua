-- FileSystemCache's read cache (backends/filesystem.c): a get served from
-- the bytes kept for a recently read entry must never differ from reading
-- the file. Two objects on one directory stand for two processes.
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
