-- RedisSentinelCache: finding the master through the sentinels, following a
-- demotion (READONLY) and a real failover (the master killed) without losing
-- what was written before it.
local helpers = require "support.helpers"
local R = require "support.redis_helpers"

local SENTINELS = os.getenv("CACHE_TEST_SENTINELS")
local MASTER = os.getenv("CACHE_TEST_SENTINEL_MASTER") or "mymaster"
local DIR = os.getenv("CACHE_TEST_SENTINEL_DIR")

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return (s:gsub("%s+$", ""))
end

local function sentinel_ports() return R.ports_of(SENTINELS) end

-- The master's port as the sentinels see it now.
local function master_port() return R.sentinel_master_port(sentinel_ports(), MASTER) end

-- The node name ("master" / "replica", as started) listening on port.
local function node_on(port)
  for _, name in ipairs { "master", "replica" } do
    if tonumber(read(DIR .. "/" .. name .. ".port")) == port then return name end
  end
end

local function bulk(s) return ("$%d\r\n%s\r\n"):format(#s, s) end
local function addr_reply(port) return "*2\r\n" .. bulk("127.0.0.1") .. bulk(tostring(port)) end

describe("RedisSentinelCache options", function()
  local cache = require "cache"

  it("raises on sentinels given but naming none; absent means 127.0.0.1:26379", function()
    for _, given in ipairs { {}, "", " , ", { "" } } do
      local ok, err = pcall(cache.RedisSentinelCache, { sentinels = given })
      assert.is_false(ok)
      assert.matches("RedisSentinelCache: option 'sentinels': at least one host:port is required",
        err, 1, true)
    end
    assert.truthy(cache.RedisSentinelCache {}) -- connects lazily
  end)

  it("names the class and the option in every option error", function()
    for _, case in ipairs {
      { { sentinels = { true } }, "option 'sentinels': item 1 must be a string" },
      { { sentinels = { "127.0.0.1:1", { 1 } } }, "option 'sentinels': item 2 must be a string or {host, port}" },
      { { sentinels = "x" }, "option 'sentinels': 'x' is not host:port" },
      { { master = "" }, "option 'master': empty" },
      { { master = print }, "option 'master': unsupported type function" },
      { { db = -1 }, "option 'db':" },
      { { bogus = 1 }, "unknown option 'bogus'" },
    } do
      local ok, err = pcall(cache.RedisSentinelCache, case[1])
      assert.is_false(ok)
      assert.matches("RedisSentinelCache: " .. case[2], err, 1, true)
    end
  end)
end)

describe("RedisSentinelCache", function()
  if not SENTINELS then
    it("runs", function() pending("sentinels not started (spec/servers/redis_sentinel.sh)") end)
    return
  end
  local cache = require "cache"

  local function new(opts)
    local o = { sentinels = SENTINELS, master = MASTER, key_prefix = helpers.unique("sen"),
                timeout = 0.5, connect_timeout = 0.5 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.RedisSentinelCache(o), o.key_prefix
  end

  it("writes to the master the sentinels name, and accepts lists of both forms", function()
    local c, prefix = new()
    assert.is_true(c:set("k", 5))
    local mp = master_port()
    assert.equal("5", R.cli(mp, "GET", prefix .. "k"))
    local list = {}
    for _, p in ipairs(sentinel_ports()) do list[#list + 1] = { "127.0.0.1", p } end
    local d = cache.RedisSentinelCache { sentinels = list, key_prefix = prefix }
    assert.equal(5, d:get("k"))
    c:clear()
  end)

  it("skips sentinels that are down", function()
    local c = new { sentinels = { "127.0.0.1:1", SENTINELS } } -- port 1 refuses
    assert.is_true(c:set("k", 1))
    c:clear()
  end)

  it("fails cleanly when no sentinel knows the master or none answers", function()
    local c = new { master = "no-such-master" }
    local v, err = c:get("k")
    assert.is_nil(v)
    assert.matches("no sentinel gave the address of master 'no-such-master'", err, 1, true)
    assert.matches("does not know the master", err, 1, true)
    local d = new { sentinels = "127.0.0.1:1" }
    local ok
    ok, err = d:set("k", 1)
    assert.is_false(ok)
    assert.matches("sentinel 127.0.0.1:1: connect", err, 1, true)
  end)

  it("sends sentinel_password to the sentinels", function()
    -- these sentinels have no password, so AUTH itself is refused: proof it was sent
    local c = new { sentinel_password = "secret" }
    local v, err = c:get("k")
    assert.is_nil(v)
    assert.matches("AUTH failed", err, 1, true)
  end)

  it("asks again and retries once when the node answers READONLY", function()
    local mp = master_port()
    local rp = tonumber(read(DIR .. "/" .. (node_on(mp) == "master" and "replica" or "master") .. ".port"))
    -- a fake sentinel: first names the replica, then the master
    local fake = R.fake_redis { addr_reply(rp), addr_reply(mp) }
    finally(fake.stop)
    local c, prefix = new { sentinels = "127.0.0.1:" .. fake.port }
    assert.is_true(c:set("k", "v"))
    assert.equal("!", R.cli(mp, "GET", prefix .. "k"):sub(1, 1))
    fake.stop()
    c:clear()
  end)

  it("survives a failover (master killed): writes resume within down-after + 5 s, nothing lost", function()
    local mp = master_port()
    local name = node_on(mp)
    assert.is_not_nil(name, "master port " .. tostring(mp))
    local other = name == "master" and "replica" or "master"
    local rp = tonumber(read(DIR .. "/" .. other .. ".port"))
    local c = new()
    local map = {}
    for i = 1, 200 do map["k" .. i] = { i = i, s = ("x"):rep(i % 7) } end
    assert.is_true(c:set_many(map, 0))
    for i = 1, 50 do assert.is_true(c:set("n" .. i, i)) end
    -- the replica has everything the master acknowledged
    assert.equal("1", R.cli(mp, "WAIT", "1", "2000"))

    local t0 = R.now()
    os.execute("kill -KILL " .. read(DIR .. "/" .. name .. ".pid"))
    local attempts, ok, err = 0, false, nil
    while R.now() - t0 < 15 do
      attempts = attempts + 1
      ok, err = c:set("after", attempts)
      if ok then break end
      helpers.sleep(0.05)
    end
    local took = R.now() - t0
    assert.is_true(ok, err)
    assert.is_true(took < 1.0 + 5, ("writes resumed after %.2f s"):format(took))
    assert.equal(rp, master_port())

    local keys = {}
    for i = 1, 200 do keys[i] = "k" .. i end
    local got = { c:get_many(table.unpack(keys)) }
    for i = 1, 200 do assert.same(map["k" .. i], got[i], "k" .. i) end
    for i = 1, 50 do assert.equal(i, c:get("n" .. i)) end
    assert.equal(attempts, c:get("after"))
    c:clear()

    -- put the killed node back, as a replica of the new master
    local args = read(DIR .. "/" .. name .. ".args"):gsub("\n", " ")
    os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s/%s" ..
      " --logfile %s/%s/log %s --replicaof 127.0.0.1 %d </dev/null >/dev/null 2>&1 & echo $! >%s/%s.pid")
      :format(mp, DIR, name, DIR, name, args, rp, DIR, name))

    local f = io.open((os.getenv("CACHE_TEST_STATE") or "/tmp") .. "/redis_failover_timings", "w")
    if f then
      f:write(("failover (SIGKILL of the master, down-after 1000 ms): writes resumed after %.2f s, %d attempts\n")
        :format(took, attempts))
      f:close()
    end
  end)
end)
