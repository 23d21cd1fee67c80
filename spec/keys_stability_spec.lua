-- Memoize keys are the same in separate processes running the same code:
-- two lua5.4 processes sharing a FileSystemCache directory compute the same
-- key and the second one gets the first one's result.
local cache = require "cache"
local helpers = require "support.helpers"

local LUA = os.getenv("LUA_BIN") or "lua5.4"

-- Runs a Lua script file in a new process; returns its output lines.
local function run(script, ...)
  local args = {}
  for i, a in ipairs{ ... } do args[i] = "'" .. a .. "'" end
  local out = helpers.sh(("%s '%s' %s 2>&1"):format(LUA, script, table.concat(args, " ")))
  local lines = {}
  for line in (out .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines, out
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("memoize keys across processes", function()
  local dir
  before_each(function()
    dir = helpers.tmpdir("keys-stability")
  end)

  it("hash table arguments identically (string hashing is seeded per process)", function()
    local script = dir .. "/key.lua"
    write(script, [[
      local core = require "cache.core"
      local t = {}
      for i = 1, 50 do t["k" .. i] = { i, tostring(i), i % 2 == 0 } end
      io.write(core.memo_key("md5", "app/views.lua:12", nil, "abcdef", 1, "x", t), "\n")
      io.write(core.query_digest("sha256", { offset = "20", mock = "true", limit = "15" }), "\n")
    ]])
    local a, out_a = run(script)
    local b = run(script)
    assert.equal(22, #a[1], out_a)
    assert.equal(a[1], b[1])
    assert.equal("c0088a69f42cdb281e81cb823159251693b5afccff7e539107c3c05d1c269c78", a[2])
    -- and this process agrees
    local t = {}
    for i = 50, 1, -1 do t["k" .. i] = { i, tostring(i), i % 2 == 0 } end
    assert.equal(a[1], cache.core.memo_key("md5", "app/views.lua:12", nil, "abcdef", 1, "x", t))
  end)

  it("share memoized results through a FileSystemCache directory", function()
    local script = dir .. "/app.lua"
    write(script, [[
      local cache = require "cache"
      local c = cache.new{ CACHE_TYPE = "filesystem", CACHE_DIR = arg[1] }
      local calls = 0
      local lookup = c:memoize{ timeout = 60 }(function(id, opts)
        calls = calls + 1
        return ("%d/%s/%d"):format(id, opts.lang, math.random(1, 1e9))
      end)
      local r = lookup(7, { lang = "en", fields = { "a", "b" } })
      io.write(lookup.make_cache_key(7, { fields = { "a", "b" }, lang = "en" }), "\n")
      io.write(r, "\n", calls, "\n")
    ]])
    local cdir = dir .. "/cache"
    assert(os.execute("mkdir -p '" .. cdir .. "'"))
    local first, out1 = run(script, cdir)
    local second, out2 = run(script, cdir)
    assert.matches("^[A-Za-z0-9+/]+$", first[1], out1)
    assert.equal(22, #first[1], out1)
    assert.equal(first[1], second[1], out2)  -- same key
    assert.equal(first[2], second[2])        -- same (random) result
    assert.equal("1", first[3])              -- computed by the first process
    assert.equal("0", second[3])             -- a hit in the second
  end)
end)
