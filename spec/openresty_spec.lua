-- OpenResty: a real nginx (master + 2 workers, LuaJIT) runs
-- examples/openresty (nginx.conf + app.lua) with the rock installed for LuaJIT
-- in a luarocks tree as README tells users (spec/support/rocks.lua, shared
-- with luarocks_spec), and real HTTP requests (curl) check the decorators
-- inside handlers. spec/support/openresty.sh starts nginx on a free port in
-- a temporary prefix and stops it by PID (teardown runs even when setup or an
-- assertion fails).
--
-- Two ways to reach workers:
--   * several URLs in one curl run share one keep-alive connection, so they
--     reach ONE worker (checked with the X-Worker header) - for per-worker
--     behaviour (SimpleCache, cached, memoize);
--   * "Connection: close" makes each request a new connection, which
--     `listen ... reuseport` spreads over both workers - for sharing.
local helpers = require "support.helpers"
local rocks = require "support.rocks"

local root = os.getenv("CACHE_ROOT") or "."

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function missing_prerequisite()
  if helpers.sh("command -v nginx") == "" then return "nginx is not installed" end
  if not file_exists("/usr/lib/nginx/modules/ngx_http_lua_module.so") then
    return "libnginx-mod-http-lua is not installed"
  end
  if helpers.sh("command -v curl") == "" then return "curl is not installed" end
  return rocks.missing(rocks.get("luajit"))
end

local curl = require "support.curl"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Fresh connections until responses came from `want` distinct workers (or
-- `max` requests were made). Returns the responses and the set of pids.
local function spread(port, path, want, max)
  local all, pids, n = {}, {}, 0
  while n < max do
    local batch = {}
    for i = 1, 10 do batch[i] = path end
    for _, r in ipairs(curl(port, batch, true)) do
      all[#all + 1] = r
      pids[r.headers["x-worker"]] = true
    end
    n = n + 10
    local count = 0
    for _ in pairs(pids) do count = count + 1 end
    if count >= want then break end
  end
  return all, pids
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("OpenResty (nginx + LuaJIT, 2 workers)", function()
  local why = missing_prerequisite()
  if why then
    it("runs the example", function() pending(why) end)
    return
  end

  local dir, port, info, tree
  local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e6))

  setup(function()
    math.randomseed(os.time())
    dir = helpers.tmpdir("openresty")
    local err
    tree, err = rocks.tree(rocks.get("luajit"))
    assert(tree, err)
    -- CACHE_NGX_OWNER=$PPID (this Lua process): nginx goes away with it even
    -- if busted is interrupted before teardown
    local out = helpers.sh(("CACHE_NGX_OWNER=$PPID CACHE_NGX_TREE=%s bash %s/spec/support/openresty.sh start %s 2>%s/start.err")
      :format(q(tree), q(root), q(dir), q(dir)))
    port = out:match("CACHE_NGX_PORT=(%d+)")
    assert(port, "nginx did not start:\n" .. read_file(dir .. "/start.err"))
    local r = curl(port, { "/info" })[1]
    assert.equal(200, r.status)
    info = {}
    for k, v in r.body:gmatch("([%w_]+)=([^;]*)") do info[k] = v end
  end)

  teardown(function()
    if dir then
      helpers.sh(("bash %s/spec/support/openresty.sh stop %s"):format(q(root), q(dir)))
      -- a Lua error in a handler shows here
      local errors = {}
      for line in read_file(dir .. "/logs/error.log"):gmatch("[^\n]+") do
        if (line:find("%[error%]") or line:find("%[alert%]"))
           and not line:find("GET /down/", 1, true) then -- expected: the fail-open check
          errors[#errors + 1] = line
        end
      end
      if #errors > 0 then
        io.stderr:write("openresty_spec: nginx error.log:\n", table.concat(errors, "\n"), "\n")
      end
    end
  end)

  local function needs_decorators()
    if info.new ~= "true" then
      pending("cache.new / decorators are not installed in this build")
      return false
    end
    return true
  end

  it("loads cache/core.so built for LuaJIT in both workers", function()
    assert.matches("^LuaJIT", info.jit)
    assert.equal("2", info.inits) -- init_worker ran once in each worker
  end)

  it("loads cache.lua and cache/core.so from the luarocks tree, in every worker", function()
    -- nginx runs in the checkout root, where ./cache/core.so is the Lua 5.4
    -- build: the file each worker mapped must be the tree's
    local all, pids = spread(port, "/info", 2, 200)
    assert.equal(2, count_keys(pids))
    for _, r in ipairs(all) do
      local got = {}
      for k, v in r.body:gmatch("([%w_]+)=([^;]*)") do got[k] = v end
      assert.equal(tree .. "/lib/lua/5.1/cache/core.so", got.core)
      assert.equal("@" .. tree .. "/share/lua/5.1/cache.lua", got.lua)
    end
  end)

  it("creates one SimpleCache per worker in init_worker_by_lua", function()
    if not needs_decorators() then return end
    local key = "k" .. run
    -- set through one worker...
    local set = curl(port, { "/simple/set?k=" .. key .. "&v=mine" })[1]
    assert.equal("true", set.body)
    local owner = set.headers["x-worker"]
    -- ...then read from both: only the owner's cache has it
    local all, pids = spread(port, "/simple/get?k=" .. key, 2, 200)
    assert.equal(2, count_keys(pids), "requests never reached the second worker")
    for _, r in ipairs(all) do
      assert.equal(r.headers["x-worker"] == owner and "mine" or "MISS", r.body)
    end
    -- the same cache object across requests of a worker
    local ids = {}
    for _, r in ipairs((spread(port, "/info", 2, 200))) do
      local pid, id = r.headers["x-worker"], r.body:match("simple=([^;]*)")
      if ids[pid] then assert.equal(ids[pid], id) else ids[pid] = id end
    end
  end)

  it("computes a cached view (key_prefix 'view/%s') once, then serves it", function()
    if not needs_decorators() then return end
    local path = "/view/page-" .. run
    local rs = curl(port, { path, path, path, path, path })
    local pid = rs[1].headers["x-worker"]
    for i, r in ipairs(rs) do
      assert.equal(200, r.status)
      assert.equal(pid, r.headers["x-worker"]) -- one connection, one worker
      assert.equal(rs[1].body, r.body)
      assert.equal("1", r.headers["x-computed"])
      assert.equal(i > 1 and "True" or nil, r.headers["hit_cache"])
    end
    assert.matches("^page " .. path:gsub("%-", "%%-") .. " #%d+$", rs[1].body)
    -- over both workers: each computes it at most once (per-worker cache)
    local all, pids = spread(port, path, 2, 200)
    assert.equal(2, count_keys(pids))
    local body_of = {}
    for _, r in ipairs(all) do
      local w = r.headers["x-worker"]
      assert.equal("1", r.headers["x-computed"])
      if body_of[w] then assert.equal(body_of[w], r.body) else body_of[w] = r.body end
    end
    assert.equal(rs[1].body, body_of[pid])
  end)

  it("separates query strings with query_string = true, in any order", function()
    if not needs_decorators() then return end
    local path = "/qs/search-" .. run
    local rs = curl(port, { path .. "?a=1&b=2", path .. "?b=2&a=1", path .. "?a=2",
                            path .. "?a=1&b=2", path .. "?a=2" })
    for _, r in ipairs(rs) do assert.equal(rs[1].headers["x-worker"], r.headers["x-worker"]) end
    assert.equal(rs[1].body, rs[2].body)        -- ?b=2&a=1 is ?a=1&b=2
    assert.equal("True", rs[2].headers["hit_cache"])
    assert.not_equal(rs[1].body, rs[3].body)    -- ?a=2 is another entry
    assert.is_nil(rs[3].headers["hit_cache"])
    assert.equal(rs[1].body, rs[4].body)
    assert.equal(rs[3].body, rs[5].body)
    assert.equal("2", rs[5].headers["x-computed"])
  end)

  it("bypasses the cache when `unless` sees the X-Bypass request header", function()
    if not needs_decorators() then return end
    local path = "/bypass/item-" .. run
    local rs = curl(port, { path, path, { path, headers = { ["X-Bypass"] = "1" } },
                            { path, headers = { ["X-Bypass"] = "1" } }, path })
    for _, r in ipairs(rs) do assert.equal(rs[1].headers["x-worker"], r.headers["x-worker"]) end
    assert.equal(rs[1].body, rs[2].body)
    assert.equal("True", rs[2].headers["hit_cache"])
    -- bypassed: computed each time, not served from nor stored in the cache
    assert.not_equal(rs[1].body, rs[3].body)
    assert.not_equal(rs[3].body, rs[4].body)
    assert.is_nil(rs[3].headers["hit_cache"])
    assert.equal("3", rs[4].headers["x-computed"])
    assert.equal(rs[1].body, rs[5].body)
    assert.equal("True", rs[5].headers["hit_cache"])
  end)

  it("memoizes a function called from a handler (numbers round-trip on LuaJIT)", function()
    if not needs_decorators() then return end
    -- a fresh argument: the other worker may have memoized earlier ones
    local n = 1000 + math.random(1, 1e6)
    local rs = curl(port, { "/memo?n=" .. n, "/memo?n=" .. n, "/memo?n=" .. n,
                            "/memo?n=1.5", "/memo?n=1.5", "/memo?n=94906265" })
    for _, r in ipairs(rs) do assert.equal(rs[1].headers["x-worker"], r.headers["x-worker"]) end
    local c1 = tonumber(rs[1].headers["x-computed"])
    assert.equal(tostring(n * n), rs[1].body)
    assert.equal(rs[1].body, rs[3].body)
    assert.equal(c1, tonumber(rs[3].headers["x-computed"]))
    assert.equal("2.25", rs[4].body)
    assert.equal(rs[4].headers["x-computed"], rs[5].headers["x-computed"])
    -- 94906265^2 = 9007199136250225 < 2^53: still an exact integer in a double
    assert.equal("9007199136250225", rs[6].body)
  end)

  it("fails open when the cache's server is down: computed each time, logged", function()
    if not needs_decorators() then return end
    if not ("," .. info.backends .. ","):find(",RedisCache,", 1, true) then
      return pending("RedisCache is not built")
    end
    local path = "/down/page-" .. run
    local rs = curl(port, { path, path, path })
    for i, r in ipairs(rs) do
      assert.equal(200, r.status)
      assert.equal(rs[1].headers["x-worker"], r.headers["x-worker"])
      assert.equal(tostring(i), r.headers["x-computed"])
    end
    assert.not_equal(rs[1].body, rs[2].body)
    assert.matches("cache: get failed, [^\n]* runs uncached until the backend recovers: redis 127%.0%.0%.1:1",
                   read_file(dir .. "/logs/error.log"))
  end)

  describe("with Redis", function()
    local function needs_redis()
      if not needs_decorators() then return false end
      if info.redis ~= "yes" then
        pending("RedisCache in nginx: " .. tostring(info.redis))
        return false
      end
      return true
    end

    it("shares values between the two workers", function()
      if not needs_redis() then return end
      local key, value = "shared-" .. run, "from-" .. run
      local set = curl(port, { "/redis/set?k=" .. key .. "&v=" .. value })[1]
      assert.equal("true", set.body)
      local all, pids = spread(port, "/redis/get?k=" .. key, 2, 200)
      assert.equal(2, count_keys(pids), "requests never reached the second worker")
      assert.truthy(pids[set.headers["x-worker"]])
      for _, r in ipairs(all) do
        assert.equal(200, r.status)
        assert.equal(value, r.body)
      end
    end)

    it("computes a Redis-cached view once for both workers", function()
      if not needs_redis() then return end
      local path = "/redis/view/page-" .. run
      local all, pids = spread(port, path, 2, 200)
      assert.equal(2, count_keys(pids))
      local computed = {}
      for _, r in ipairs(all) do
        assert.equal(all[1].body, r.body)
        computed[r.headers["x-worker"]] = tonumber(r.headers["x-computed"])
      end
      local total = 0
      for _, c in pairs(computed) do total = total + c end
      assert.equal(1, total)
    end)
  end)

  -- Last: a worker that crashed was respawned silently by the master, and a
  -- sanitizer report (make test SANITIZE=1) goes to nginx's stderr.
  it("no worker crashed and no sanitizer report was written", function()
    local log = read_file(dir .. "/logs/error.log")
    assert.is_nil(log:match("[^\n]*exited on signal[^\n]*"))
    assert.is_nil(log:match("[^\n]*lua entry thread aborted[^\n]*"))
    local stderr = read_file(dir .. "/logs/stdout")
    assert.is_nil(stderr:match("[^\n]*AddressSanitizer[^\n]*"))
    assert.is_nil(stderr:match("[^\n]*runtime error:[^\n]*"))
  end)
end)
