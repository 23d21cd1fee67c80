-- The cosocket transport (lua/cache/cosocket.lua, engine/co.h) in a real
-- nginx: master + 2 workers, LuaJIT, the rock installed for LuaJIT in a
-- luarocks tree (spec/support/rocks.lua), spec/support/cosocket_nginx.conf
-- and spec/support/cosocket_app.lua started by spec/support/openresty.sh.
-- The handlers run the shared contract (spec/support/contract.lua) on each
-- network backend, probe every kind of phase, and report; this file checks
-- what they report.
local helpers = require "support.helpers"
local rocks = require "support.rocks"
local curl = require "support.curl"
local R = require "support.redis_helpers"

local root = os.getenv("CACHE_ROOT") or "."

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function missing_prerequisite()
  if helpers.sh("command -v nginx") == "" then return "nginx is not installed" end
  if helpers.sh("test -e /usr/lib/nginx/modules/ngx_http_lua_module.so && echo y") ~= "y" then
    return "libnginx-mod-http-lua is not installed"
  end
  if helpers.sh("command -v curl") == "" then return "curl is not installed" end
  return rocks.missing(rocks.get("luajit"))
end

local function redis_info(field)
  local port = os.getenv("CACHE_TEST_REDIS_PORT")
  local out = helpers.sh(("redis-cli -p %s INFO stats"):format(port))
  return tonumber(out:match(field .. ":(%d+)"))
end

describe("cosocket transport (nginx + LuaJIT, 2 workers)", function()
  local why = missing_prerequisite()
  if why then
    it("runs", function() pending(why) end)
    return
  end

  local dir, port
  local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e6))

  local function get(path) return curl(port, { path })[1] end

  setup(function()
    dir = helpers.tmpdir("cosocket")
    local tree, err = rocks.tree(rocks.get("luajit"))
    assert(tree, err)
    local out = helpers.sh((
      "CACHE_NGX_OWNER=$PPID CACHE_NGX_TREE=%s CACHE_NGX_CONF=%s CACHE_NGX_APP=%s " ..
      "bash %s/spec/support/openresty.sh start %s 2>%s/start.err")
      :format(q(tree), q(root .. "/spec/support/cosocket_nginx.conf"),
              q(root .. "/spec/support/cosocket_app.lua"), q(root), q(dir), q(dir)))
    port = out:match("CACHE_NGX_PORT=(%d+)")
    assert(port, "nginx did not start:\n" .. read_file(dir .. "/start.err"))
  end)

  teardown(function()
    if dir then
      helpers.sh(("bash %s/spec/support/openresty.sh stop %s"):format(q(root), q(dir)))
    end
  end)

  local function contract_on(file, name)
    it("runs the cache contract in a handler for " .. name .. " on the cosocket path", function()
      local r = get("/contract?b=" .. file)
      assert.equal(200, r.status, r.body)
      if r.body:match("^unavailable") then return pending(r.body) end
      local passed, failed, transport, co, blk =
        r.body:match("^passed=(%d+) failed=(%d+) transport=(%S+) cosocket=(%d+) blocking=(%d+)")
      assert(passed, r.body)
      if transport == "nil" then
        return pending(name .. " has no cosocket path yet: it blocks the worker in OpenResty")
      end
      assert.equal("0", failed, r.body)
      assert.truthy(tonumber(passed) >= 20, r.body)
      assert.equal("auto", transport)
      assert.truthy(tonumber(co) > 100, r.body) -- every call took the cosocket path
      assert.equal("0", blk, r.body)
    end)
  end
  contract_on("redis", "RedisCache")
  contract_on("uwsgi", "UWSGICache")
  contract_on("redis_sentinel", "RedisSentinelCache")
  contract_on("redis_cluster", "RedisClusterCache")
  contract_on("memcached", "MemcachedCache")
  contract_on("sasl_memcached", "SASLMemcachedCache")
  contract_on("spread_sasl_memcached", "SpreadSASLMemcachedCache")

  it("takes cosockets where the phase allows them and the blocking path elsewhere", function()
    local content = get("/phase/content").body
    assert.matches("^auto=cosocket ok=true strict=content err=nil$", content)
    assert.matches("^auto=cosocket ok=true strict=access err=nil$", get("/phase/access").body)
    assert.matches("^auto=cosocket ok=true strict=timer err=nil$", get("/phase/timer").body)
    -- set_by_lua and init_worker: blocking; transport = "cosocket" there is
    -- nil, err naming the phase
    assert.matches("^auto=blocking ok=true strict=nil err=RedisCache: transport 'cosocket' is not available in the set phase",
                   get("/phase/set").body)
    assert.matches("^auto=blocking ok=true strict=nil err=RedisCache: transport 'cosocket' is not available in the init_worker phase",
                   get("/phase/result?k=init_worker").body)
    -- log and header_filter run after the response: read their results next
    local id = run .. "-" .. math.random(1, 1e6)
    get("/phase/log?id=" .. id)
    get("/phase/header?id=" .. id)
    local log, header
    for _ = 1, 50 do
      log = get("/phase/result?k=log:" .. id).body
      header = get("/phase/result?k=header:" .. id).body
      if log ~= "nil" and header ~= "nil" then break end
      helpers.sleep(0.05)
    end
    assert.matches("^auto=blocking ok=true strict=nil err=RedisCache: transport 'cosocket' is not available in the log phase", log)
    assert.matches("^auto=blocking ok=true strict=nil err=RedisCache: transport 'cosocket' is not available in the header_filter phase", header)
  end)

  it("never hands a late reply (after a timeout) to the next request", function()
    local fake = R.fake_redis { "$1\\r\\n1\\r\\n", "DELAY:600:$1\\r\\n2\\r\\n", "$1\\r\\n3\\r\\n" }
    local ok, body = pcall(function() return get("/late?port=" .. fake.port).body end)
    fake.stop()
    assert(ok, body)
    assert.matches("^first=1 second=nil %(redis [^)]*timed out[^)]*%) third=3$", body)
  end)

  it("serves 200 concurrent light threads on distinct keys without a mismatch", function()
    local body = get("/concurrent?n=200&run=" .. run).body
    assert.equal("threads=200 mismatches=0 errors=0", body)
  end)

  it("keeps at most workers x pool_size connections over 1000 requests", function()
    -- warm both workers' pools, then count the connections Redis accepts
    local warm = {}
    for i = 1, 40 do warm[i] = "/pooled?k=w" .. i end
    curl(port, warm, true)
    local before = redis_info("total_connections_received")
    local paths = {}
    for i = 1, 1000 do paths[i] = "/pooled?k=" .. i end
    local ok_count = 0
    for i = 1, 1000, 100 do
      local batch = {}
      for j = i, i + 99 do batch[#batch + 1] = paths[j] end
      for _, r in ipairs(curl(port, batch, true)) do
        if r.body == "ok" then ok_count = ok_count + 1 end
      end
    end
    local after = redis_info("total_connections_received")
    assert.equal(1000, ok_count)
    assert.truthy(after - before <= 2 * 4, ("%d new connections"):format(after - before))
  end)

  it("resolves localhost without a resolver, names `resolver` for other names, keeps dbs and passwords apart", function()
    local body = get("/names").body
    assert.matches("localhost=v", body)
    assert.matches("unresolved=[^\n]*resolver", body)
    assert.matches("db0=zero\ndb1=one", body)
    if os.getenv("CACHE_TEST_REDIS_SOCKET") then assert.matches("unix=zero", body) end
    if os.getenv("CACHE_TEST_REDIS_AUTH_PORT") then
      assert.matches("auth=1", body)
      assert.matches("wrongpass=[^\n]*AUTH failed", body)
    end
  end)

  it("reads back through one transport what the other wrote", function()
    local body = get("/cross").body
    for line in body:gmatch("[^\n]+") do
      assert.matches("^%w+ good=22 bad=$", line)
    end
    assert.truthy(#body > 0)
  end)

  it("follows a Redis Cluster slot migration on the cosocket path: ASK, then MOVED", function()
    local cluster = os.getenv("CACHE_TEST_REDIS_CLUSTER")
    if not cluster then return pending("cluster not started") end
    local ports = R.ports_of(cluster)
    local prefix = helpers.unique("cosocket-mig")
    local tag = "{" .. helpers.unique("t") .. "}"
    -- braces escaped: curl would read them as a URL glob
    local base = ("/cluster?p=%s&tag=%s"):format(prefix, tag:gsub("{", "%%7B"):gsub("}", "%%7D"))
    local r = get(base .. "&s=1")
    local pid = r.body:match("^pid=(%d+)")
    assert.matches("set=true", r.body)
    -- the same worker (the one holding the object) for every step
    local function step(n)
      for _ = 1, 200 do
        local x = curl(port, { base .. "&s=" .. n .. "&w=" .. pid }, true)[1]
        if x.status == 200 then return x.body end
      end
      error("never reached worker " .. pid)
    end
    local key_a = prefix .. tag .. "a"
    local slot = tonumber(R.cli(ports[1], "CLUSTER", "KEYSLOT", key_a))
    local from = R.cluster_owner(ports, slot)
    local to
    for _, p in ipairs(ports) do if p ~= from then to = p; break end end
    local id_from, id_to = R.cli(from, "CLUSTER", "MYID"), R.cli(to, "CLUSTER", "MYID")
    assert.equal("OK", R.cli(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", id_from))
    assert.equal("OK", R.cli(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", id_to))
    -- migrating: a is still served by `from`, b goes to `to` through ASK
    assert.matches("a=first setb=true b=second$", step(2))
    -- finish the move; the object's map still says `from`
    assert.equal("OK", R.cli(from, "MIGRATE", "127.0.0.1", to, "", "0", "5000", "KEYS", key_a))
    for _, p in ipairs(ports) do R.cli(p, "CLUSTER", "SETSLOT", slot, "NODE", id_to) end
    local function moved()
      return tonumber(R.cli(from, "INFO", "errorstats"):match("errorstat_MOVED:count=(%d+)") or "0")
    end
    local before = moved()
    assert.matches("a=first all=true n=2 c=3 many=first,3,4$", step(3))
    assert.truthy(moved() > before, "no MOVED was answered")
    assert.equal("3", R.cli(to, "GET", prefix .. tag .. "c"))
    assert.equal("!", R.cli(to, "GET", prefix .. tag .. "b"):sub(1, 1)) -- written through ASK
    assert.matches("clear=true", step(4))
  end)

  it("rediscovers the Sentinel master on the cosocket path when a node answers READONLY", function()
    local sentinels = os.getenv("CACHE_TEST_SENTINELS")
    if not sentinels then return pending("sentinels not started") end
    local mp = R.sentinel_master_port(R.ports_of(sentinels), os.getenv("CACHE_TEST_SENTINEL_MASTER") or "mymaster")
    local rp
    local info = R.cli(mp, "INFO", "replication")
    rp = tonumber(info:match("slave0:ip=[^,]*,port=(%d+)"))
    assert(rp, info)
    local function bulk(x) return ("$%d\r\n%s\r\n"):format(#x, x) end
    local function addr(p) return "*2\r\n" .. bulk("127.0.0.1") .. bulk(tostring(p)) end
    local fake = R.fake_redis { addr(rp), addr(mp) }
    local prefix = helpers.unique("cosocket-sen")
    local ok, body = pcall(function() return get(("/sentinel?fake=%d&p=%s"):format(fake.port, prefix)).body end)
    fake.stop()
    assert(ok, body)
    assert.equal("true nil v", body)
    assert.equal("!", R.cli(mp, "GET", prefix .. "k"):sub(1, 1))
    R.cli(mp, "DEL", prefix .. "k")
  end)

  it("picks the same memcached server for every key on both transports; spread chunks cross too", function()
    local body = get("/memcached?p=" .. helpers.unique("cosocket-mc")).body
    if body == "unavailable" then return pending("two memcached servers not started") end
    local good, n, first = body:match("^good=(%d+)/(%d+) first=(%d+)")
    assert.equal(n, good, body)
    assert.truthy(tonumber(first) > 0 and tonumber(first) < tonumber(n), body) -- both servers hold keys
    assert.matches("many=1,2,3,nil all=true moved=1,two,3 deleted=true inc=5 dec=%-2 spread=true,true,true,true$", body)
  end)

  it("authenticates fresh memcached connections with SASL PLAIN, and names a refusal", function()
    local body = get("/sasl").body
    if body == "unavailable" then return pending("SASL memcached not started") end
    assert.matches("^good=true,v bad=nil %(memcached [^)]*sasl authentication failed", body)
  end)

  -- Last: what nginx logged over the whole run.
  it("logs no alert, no yield across a C-call boundary, no crash", function()
    local log = read_file(dir .. "/logs/error.log")
    assert.is_nil(log:match("[^\n]*%[alert%][^\n]*"))
    assert.is_nil(log:match("[^\n]*yield across[^\n]*"))
    assert.is_nil(log:match("[^\n]*exited on signal[^\n]*"))
    assert.is_nil(log:match("[^\n]*lua entry thread aborted[^\n]*"))
    local stderr = read_file(dir .. "/logs/stdout")
    assert.is_nil(stderr:match("[^\n]*AddressSanitizer[^\n]*"))
    assert.is_nil(stderr:match("[^\n]*runtime error:[^\n]*"))
  end)
end)
