-- RedisCache beyond the shared contract: options and URLs, AUTH and db,
-- what is stored on the server and with which commands, clear, failures
-- (server down, timeouts, a kill and restart, malformed replies).
local helpers = require "support.helpers"
local R = require "support.redis_helpers"

local PORT = tonumber(os.getenv("CACHE_TEST_REDIS_PORT") or "")
local HOST = os.getenv("CACHE_TEST_REDIS_HOST") or "127.0.0.1"
local SOCKET = os.getenv("CACHE_TEST_REDIS_SOCKET")
local AUTH_PORT = tonumber(os.getenv("CACHE_TEST_REDIS_AUTH_PORT") or "")
local PASSWORD = os.getenv("CACHE_TEST_REDIS_PASSWORD")
local ACL_USER = os.getenv("CACHE_TEST_REDIS_ACL_USER")
local ACL_PASSWORD = os.getenv("CACHE_TEST_REDIS_ACL_PASSWORD")

local function pct(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

describe("RedisCache", function()
  if not PORT then
    it("runs", function() pending("redis not started (spec/servers/redis.sh)") end)
    return
  end
  local cache = require "cache"

  local function new(opts)
    local o = { host = HOST, port = PORT, key_prefix = helpers.unique("rs") }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.RedisCache(o), o.key_prefix
  end

  describe("options", function()
    it("rejects unknown options and wrong types, naming them", function()
      local ok, err = pcall(cache.RedisCache, { port = PORT, bogus = 1 })
      assert.is_false(ok)
      assert.matches("bogus", err)
      for _, case in ipairs { { "port", "x" }, { "port", 70000 }, { "host", 1 },
                              { "db", -1 }, { "timeout", "1" }, { "key_prefix", {} },
                              { "password", true }, { "url", 5 } } do
        ok, err = pcall(cache.RedisCache, { [case[1]] = case[2] })
        assert.is_false(ok, case[1])
        assert.matches(case[1], err)
      end
      ok, err = pcall(cache.RedisCache, { host = "" })
      assert.is_false(ok)
      assert.matches("host", err)
    end)

    it("defaults to localhost:6379 with 1 s timeouts and connects lazily", function()
      -- Constructing never connects; the first call does (and may fail).
      local c = cache.RedisCache {}
      assert.equal(300, c.default_timeout)
    end)

    it("reads host and port from a redis:// URL, with the db", function()
      local c = cache.RedisCache { url = ("redis://%s:%d/4"):format(HOST, PORT), key_prefix = "url:" }
      assert.is_true(c:set("k", 7))
      assert.equal("7", R.cli(PORT, "-n", "4", "GET", "url:k"))
      assert.is_true(c:clear())
    end)

    it("takes ?db= and lets the URL win over host, port and db options", function()
      local c = cache.RedisCache { url = ("redis://%s:%d?db=5"):format(HOST, PORT),
                                   host = "nowhere.invalid", port = 1, db = 2, key_prefix = "url:" }
      assert.is_true(c:set("k", 8))
      assert.equal("8", R.cli(PORT, "-n", "5", "GET", "url:k"))
      c:clear()
    end)

    it("refuses malformed URLs", function()
      for _, u in ipairs { "http://x", "redis://h:0", "redis://h:99999", "redis://h/x",
                           "redis://h?nope=1", "redis://[::1", "unix://relative",
                           "redis://u:p%zz@h" } do
        local ok, err = pcall(cache.RedisCache, { url = u })
        assert.is_false(ok, u)
        assert.matches("url", err, 1, true)
      end
      -- rediss:// (TLS): spec/redis_tls_spec.lua
    end)

    it("connects over a unix socket, by option and by unix:// URL", function()
      if not SOCKET then return pending("no socket") end
      local a = cache.RedisCache { unix_socket = SOCKET, key_prefix = "sock:" }
      assert.is_true(a:set("k", "v"))
      local b = cache.RedisCache { url = "unix://" .. SOCKET .. "?db=0", key_prefix = "sock:" }
      assert.equal("v", b:get("k"))
      assert.equal("v", new({ key_prefix = "sock:" }):get("k"))
      a:clear()
    end)

    it("selects the db", function()
      local c, prefix = new { db = 7 }
      c:set("x", 1)
      assert.is_nil(new({ key_prefix = prefix }):get("x"))
      assert.equal(1, new({ db = 7, key_prefix = prefix }):get("x"))
      assert.equal("1", R.cli(PORT, "-n", "7", "GET", prefix .. "x"))
      c:clear()
    end)
  end)

  describe("AUTH", function()
    if not AUTH_PORT then
      it("runs", function() pending("no password-protected redis") end)
      return
    end

    it("authenticates with password (default user)", function()
      local c = cache.RedisCache { port = AUTH_PORT, password = PASSWORD, key_prefix = "auth:" }
      assert.is_true(c:set("k", 1))
      assert.equal(1, c:get("k"))
    end)

    it("authenticates with username and password (ACL)", function()
      local c = cache.RedisCache { port = AUTH_PORT, username = ACL_USER, password = ACL_PASSWORD,
                                   key_prefix = "auth:" }
      assert.equal(1, c:get("k"))
      local u = cache.RedisCache { url = ("redis://%s:%s@127.0.0.1:%d/0"):format(
        pct(ACL_USER), pct(ACL_PASSWORD), AUTH_PORT), key_prefix = "auth:" }
      assert.equal(1, u:get("k"))
      local p = cache.RedisCache { url = ("redis://:%s@127.0.0.1:%d"):format(pct(PASSWORD), AUTH_PORT),
                                   key_prefix = "auth:" }
      assert.equal(1, p:get("k"))
      assert.is_true(p:clear())
    end)

    it("fails cleanly without or with a wrong password", function()
      local none = cache.RedisCache { port = AUTH_PORT, key_prefix = "auth:" }
      local v, err = none:get("k")
      assert.is_nil(v)
      assert.matches("NOAUTH", err)
      local wrong = cache.RedisCache { port = AUTH_PORT, password = "nope", key_prefix = "auth:" }
      local ok
      ok, err = wrong:set("k", 1)
      assert.is_false(ok)
      assert.matches("AUTH failed", err)
      assert.matches("WRONGPASS", err)
    end)
  end)

  describe("what the server holds", function()
    it("stores integers as decimal text and other values behind a '!' marker", function()
      local c, prefix = new()
      c:set("i", 42)
      c:set("neg", -7)
      c:set("f", 1.5)
      c:set("s", "42")
      assert.equal("42", R.cli(PORT, "GET", prefix .. "i"))
      assert.equal("-7", R.cli(PORT, "GET", prefix .. "neg"))
      assert.equal("!", R.cli(PORT, "GET", prefix .. "f"):sub(1, 1))
      assert.equal("!", R.cli(PORT, "GET", prefix .. "s"):sub(1, 1))
      assert.equal("42", c:get("s")) -- a string stays a string
      assert.equal("12", R.cli(PORT, "INCRBY", prefix .. "i", "-30"))
      assert.equal(12, c:get("i"))
      c:clear()
    end)

    it("reads foreign values without the marker as integer or string", function()
      local c, prefix = new()
      R.cli(PORT, "SET", prefix .. "n", "123")
      R.cli(PORT, "SET", prefix .. "t", "hello world")
      R.cli(PORT, "SET", prefix .. "d", "1.5")
      assert.equal(123, c:get("n"))
      if math.type then -- Lua 5.3+; LuaJIT has one number type
        assert.equal("integer", math.type(c:get("n")))
      end
      assert.equal("hello world", c:get("t"))
      assert.equal("1.5", c:get("d"))
      assert.equal(124, c:inc("n"))
      R.cli(PORT, "SET", prefix .. "bad", "!\193")
      local v = c:get("bad")
      assert.is_nil(v) -- a marker with corrupt bytes reads as a miss
      c:clear()
    end)

    it("set with a timeout is one SET PX; 0 is no expiry; add is SET NX PX", function()
      local c, prefix = new()
      local cmds = R.monitor(PORT, function()
        c:set("a", 1, 10)
        c:set("b", 1, 0)
        c:set("c", 1, 0.25)
        c:add("d", 1, 10)
        c:add("e", 1, 0)
        c:set("neg", 1, -1)
      end)
      assert.same({
        { "SET", prefix .. "a", "1", "PX", "10000" },
        { "SET", prefix .. "b", "1" },
        { "SET", prefix .. "c", "1", "PX", "250" },
        { "SET", prefix .. "d", "1", "NX", "PX", "10000" },
        { "SET", prefix .. "e", "1", "NX" },
        { "DEL", prefix .. "neg" },
      }, cmds)
      local pttl = tonumber(R.cli(PORT, "PTTL", prefix .. "a"))
      assert.is_true(pttl > 9000 and pttl <= 10000)
      assert.equal("-1", R.cli(PORT, "PTTL", prefix .. "b"))
      c:clear()
    end)

    it("inc on a missing key gives it the default timeout; an existing key keeps its own", function()
      local c, prefix = new { default_timeout = 100 }
      assert.equal(3, c:inc("n", 3))
      local ttl = tonumber(R.cli(PORT, "TTL", prefix .. "n"))
      assert.is_true(ttl > 90 and ttl <= 100, tostring(ttl))
      c:set("kept", 1, 500)
      assert.equal(2, c:inc("kept"))
      ttl = tonumber(R.cli(PORT, "TTL", prefix .. "kept"))
      assert.is_true(ttl > 490, tostring(ttl))
      c:set("never", 5, 0)
      assert.equal(4, c:dec("never"))
      assert.equal("-1", R.cli(PORT, "TTL", prefix .. "never"))
      local z, zp = new { default_timeout = 0 }
      z:inc("n")
      assert.equal("-1", R.cli(PORT, "TTL", zp .. "n"))
      z:clear()
      c:clear()
    end)

    it("inc refuses values that are not integers and overflow", function()
      if not math.maxinteger then return end -- LuaJIT: no 64-bit integers
      local c = new()
      c:set("big", math.maxinteger)
      local v, err = c:inc("big")
      assert.is_nil(v)
      assert.matches("overflow", err)
      assert.equal(math.maxinteger, c:get("big"))
      c:clear()
    end)

    it("get_many is one MGET, set_many one pipeline, delete_many one pipeline", function()
      -- INFO counts reads server-wide, and a connection that closes counts one:
      -- on the shared server every object of an earlier spec that the collector
      -- finalizes meanwhile would add to the count, so this one is private
      local srv = R.private_redis()
      finally(srv.stop)
      local c = new { port = srv.port }
      local keys, map = {}, {}
      for i = 1, 100 do keys[i] = "k" .. i; map["k" .. i] = i end
      -- objects left to the collector, still connected to the shared server
      for _ = 1, 20 do assert.is_true(new():set("left", 1)) end
      R.cli(srv.port, "CONFIG", "RESETSTAT")
      local cmds = R.monitor(srv.port, function()
        collectgarbage() -- they close here, and must not count
        collectgarbage()
        assert.is_true(c:set_many(map, 60))
        local got = { c:get_many(table.unpack(keys)) }
        assert.equal(100, #got)
        assert.equal(57, got[57])
        local all = c:delete_many(table.unpack(keys))
        assert.is_true(all)
      end)
      assert.equal(100, #R.only(cmds, "SET"))
      assert.equal(1, #R.only(cmds, "MGET"))
      assert.equal(101, #R.only(cmds, "MGET")[1])
      assert.equal(0, #R.only(cmds, "GET"))
      assert.equal(100, #R.only(cmds, "DEL"))
      -- The pipelines arrive in one read each: Redis counts them as
      -- processed in a single event-loop turn per batch, which INFO shows
      -- as one read per batch at most a few (TCP may split big writes).
      local stats = R.cli(srv.port, "INFO", "stats")
      local reads = tonumber(stats:match("total_reads_processed:(%d+)"))
      assert.is_true(reads < 20, "reads: " .. tostring(reads))
    end)

    it("clear with a prefix deletes that prefix only (SCAN + UNLINK, never KEYS)", function()
      local prefix = "glob*?[x]\\:" .. helpers.unique("c")
      local c = new { key_prefix = prefix }
      -- matched by the prefix read as a glob, not by the prefix itself
      local other = "globAAAx:" .. prefix:sub(#"glob*?[x]\\:" + 1) .. "k"
      R.cli(PORT, "SET", other, "keep")
      R.cli(PORT, "SET", "outside:" .. prefix, "keep")
      local map = {}
      for i = 1, 2500 do map["k" .. i] = i end
      assert.is_true(c:set_many(map))
      local cmds = R.monitor(PORT, function()
        assert.is_true(c:clear())
      end)
      assert.equal(0, #R.only(cmds, "KEYS"))
      assert.is_true(#R.only(cmds, "SCAN") >= 3)
      assert.is_true(#R.only(cmds, "UNLINK") >= 3)
      assert.equal("MATCH", R.only(cmds, "SCAN")[1][3])
      local escaped = prefix:gsub("[%*%?%[%]\\]", "\\%0")
      assert.equal(escaped .. "*", R.only(cmds, "SCAN")[1][4])
      assert.is_nil(c:get("k1"))
      assert.equal("0", R.cli(PORT, "EVAL",
        "return #redis.call('KEYS', ARGV[1])", "0", (prefix:gsub("[%*%?%[%]\\]", "\\%0")) .. "*"))
      assert.equal("keep", R.cli(PORT, "GET", other))
      assert.equal("keep", R.cli(PORT, "GET", "outside:" .. prefix))
      R.cli(PORT, "DEL", other, "outside:" .. prefix)
    end)

    it("clear without a prefix is FLUSHDB of its db only", function()
      local c = cache.RedisCache { port = PORT, db = 9 }
      R.cli(PORT, "-n", "9", "SET", "x", "1")
      R.cli(PORT, "-n", "8", "SET", "y", "1")
      assert.is_true(c:clear())
      assert.equal("0", R.cli(PORT, "-n", "9", "DBSIZE"))
      assert.equal("1", R.cli(PORT, "-n", "8", "EXISTS", "y"))
      R.cli(PORT, "-n", "8", "FLUSHDB")
    end)
  end)

  describe("failures", function()
    it("a server that is not there: nil/false plus an error naming it, quickly", function()
      local port = tonumber(helpers.sh((os.getenv("CACHE_ROOT") or ".") .. "/spec/support/freeport.sh"))
      local c = cache.RedisCache { host = "127.0.0.1", port = port }
      local t0 = R.now()
      local v, err = c:get("k")
      assert.is_nil(v)
      assert.matches("redis 127.0.0.1:" .. port .. ": connect", err, 1, true)
      local ok
      ok, err = c:set("k", 1)
      assert.is_false(ok)
      assert.is_string(err)
      ok, err = c:has("k")
      assert.is_false(ok)
      assert.is_string(err)
      v, err = c:inc("k")
      assert.is_nil(v)
      assert.is_string(err)
      ok, err = c:clear()
      assert.is_false(ok)
      assert.is_string(err)
      ok, err = c:add("k", 1)
      assert.is_false(ok)
      assert.is_string(err)
      ok = c:set_many { a = 1 }
      assert.is_false(ok)
      ok = c:delete_many("a")
      assert.is_false(ok)
      assert.is_nil((c:get_many("a", "b")))
      assert.is_true(R.now() - t0 < 1, "refused connections fail at once")
    end)

    it("a server that does not answer: fails after `timeout`, then works again", function()
      local fake = R.fake_redis { "SILENT" }
      finally(fake.stop)
      local c = cache.RedisCache { host = "127.0.0.1", port = fake.port, timeout = 0.3 }
      local t0 = R.now()
      local v, err = c:get("k")
      local took = R.now() - t0
      assert.is_nil(v)
      assert.matches("timed out after 0.3s without a reply", err)
      assert.is_true(took >= 0.28 and took < 1.0, "took " .. took)
      -- the next call reconnects; the fake now answers nil
      v, err = c:get("k")
      assert.is_nil(v)
      assert.is_nil(err)
      fake.stop()
    end)

    local malformed = {
      { "an unknown type byte", "?what\r\n", "protocol error" },
      { "a bad length", "$abc\r\n", "protocol error" },
      { "an integer reply to GET", ":5\r\n", "unexpected integer reply" },
      { "a truncated reply, then close", "THENCLOSE:$10\r\nabc", "closed" },
      { "an array too large to allocate", "*2000000000\r\n", "too large" },
      { "extra bytes after the reply", "$-1\r\n+OK\r\n", "unexpected data" },
      { "an error reply", "-ERR nope\r\n", "ERR nope" },
    }
    for _, m in ipairs(malformed) do
      it("a malformed reply (" .. m[1] .. ") is an error, then the next call reconnects", function()
        local reply = m[2]
        local fake = R.fake_redis { reply }
        finally(fake.stop)
        local c = cache.RedisCache { host = "127.0.0.1", port = fake.port, timeout = 0.5 }
        local v, err = c:get("k")
        assert.is_nil(v)
        assert.is_string(err)
        assert.matches(m[3], err, 1, true)
        v, err = c:get("k") -- a nil from the fake: a clean miss
        assert.is_nil(v)
        assert.is_nil(err)
        fake.stop()
      end)
    end

    it("survives a kill and restart of the server: fails cleanly, then recovers", function()
      local srv = R.private_redis()
      finally(function() srv.stop() end)
      local c = cache.RedisCache { host = "127.0.0.1", port = srv.port, timeout = 0.5,
                                   connect_timeout = 0.5 }
      for i = 1, 20 do assert.is_true(c:set("k" .. i, i)) end
      srv.kill("KILL")
      local failures, worst = 0, 0
      for _ = 1, 10 do
        local t0 = R.now()
        local ok, err = c:set("k", 1)
        worst = math.max(worst, R.now() - t0)
        assert.is_false(ok)
        assert.matches("redis 127.0.0.1:" .. srv.port, err, 1, true)
        failures = failures + 1
      end
      assert.equal(10, failures)
      assert.is_true(worst < 0.6, "a call while down took " .. worst)
      srv.restart()
      local t0 = R.now()
      local ok, err = c:set("k", "back")
      local first = R.now() - t0
      assert.is_true(ok, err)
      assert.equal("back", c:get("k"))
      -- restarted while the connection sat idle: the stale connection is
      -- noticed and the call goes through on a new one, without a failure
      srv.kill("TERM")
      srv.restart()
      ok, err = c:set("k", "again")
      assert.is_true(ok, err)
      assert.equal("again", c:get("k"))
      srv.stop()
      -- figures for the report (busted prints nothing on success)
      local f = io.open((os.getenv("CACHE_TEST_STATE") or "/tmp") .. "/redis_restart_timings", "w")
      if f then
        f:write(("down: worst failing call %.1f ms; first call after restart %.1f ms\n")
          :format(worst * 1000, first * 1000))
        f:close()
      end
    end)
  end)
end)

-- Option errors of the whole family read "<Class>: option '<name>': ...",
-- whichever layer finds them (the binding converting Lua values, or the
-- backend reading them), and come from the caller's line.
describe("Redis family option errors", function()
  local cache = require "cache"
  local single = {
    { { port = "x" }, "option 'port': integer expected" },
    { { host = "" }, "option 'host': empty" },
    { { url = "http://x" }, "option 'url':" },
    { { unix_socket = {} }, "option 'unix_socket': string expected" },
  }
  local common = {
    { { db = -1 }, "option 'db':" },
    { { password = "a\0b" }, "option 'password': contains a NUL byte" },
    { { timeout = print }, "option 'timeout': unsupported type function" },
    { { key_prefix = { true } }, "option 'key_prefix': item 1 must be a string" },
    { { bogus = 1 }, "unknown option 'bogus'" },
    { { [1] = "x" }, "option names must be strings" },
  }
  local SEED = "127.0.0.1:1"
  local clusters = {
    { { cluster = "" }, "option 'cluster': at least one host:port is required" },
    { { cluster = {} }, "option 'cluster': at least one host:port is required" },
    { { cluster = { false } }, "option 'cluster': item 1 must be a string" },
    { { cluster = { { "h" } } }, "option 'cluster': item 1 must be a string or {host, port}" },
    { { cluster = "h" }, "option 'cluster': 'h' is not host:port" },
    { { cluster = SEED, password = "a\0b" }, "option 'password': contains a NUL byte" },
    { { cluster = SEED, timeout = print }, "option 'timeout': unsupported type function" },
    { { cluster = SEED, key_prefix = { true } }, "option 'key_prefix': item 1 must be a string" },
    { { cluster = SEED, db = 1 }, "unknown option 'db'" },
    { { cluster = SEED, [1] = "x" }, "option names must be strings" },
  }

  local function check(class, list)
    for _, case in ipairs(list) do
      local ok, err = pcall(cache[class], case[1])
      assert.is_false(ok)
      assert.matches(class .. ": " .. case[2], err, 1, true)
    end
  end

  it("name the class and the option", function()
    check("RedisCache", single)
    check("RedisCache", common)
    check("RedisSentinelCache", common)
    check("RedisClusterCache", clusters)
  end)

  it("come from the caller's line", function()
    for _, o in ipairs { { port = "x" }, { timeout = { true } } } do
      local ok, err = pcall(function() cache.RedisCache(o) end)
      assert.is_false(ok)
      assert.matches("redis_spec.lua:%d+: RedisCache: option '", err)
    end
  end)
end)

-- inc/dec on RedisCache, RedisSentinelCache and RedisClusterCache: the
-- increment runs in a server-side script, whose numbers are doubles; the
-- result must still be the exact 64-bit integer the server stored.
describe("inc/dec exact across the int64 range", function()
  if not math.maxinteger then -- LuaJIT: no 64-bit integers to compare
    it("runs", function() pending("needs Lua 5.3+ integers") end)
    return
  end
  local MAX, MIN = math.maxinteger, math.mininteger
  local B60 = math.tointeger(2 ^ 60) -- no `<<`: this file also loads in Lua 5.1
  -- busted prints numbers with 16 digits: show both in full
  local function exact(want, got)
    assert.equal(want, got, ("want %d, got %s"):format(want, tostring(got)))
  end
  for _, name in ipairs { "redis", "redis_sentinel", "redis_cluster" } do
    local f = require("backends." .. name)
    describe(f.name, function()
      local up, why = f.available()
      if not up then
        it("runs", function() pending(why) end)
        return
      end

      it("returns what get reads past 2^53 and near +-2^63, and refuses overflow", function()
        local c = f.new()
        c:set("n", B60)
        exact(B60 + 1, c:inc("n"))
        exact(B60 + 1, c:get("n"))
        exact(B60 - 2, c:dec("n", 3))
        exact(B60 - 2, c:get("n"))
        c:set("top", MAX - 1)
        exact(MAX, c:inc("top"))
        exact(MAX, c:get("top"))
        c:set("bottom", MIN + 1)
        exact(MIN, c:dec("bottom"))
        exact(MIN, c:get("bottom"))
        -- a missing key starts at the delta, exactly
        exact(MAX, c:inc("fresh_max", MAX))
        exact(MIN + 1, c:dec("fresh_min", MAX))
        exact(MIN, c:dec("fresh_min"))
        -- past the range: nil, err, and the stored value untouched
        local v, err = c:inc("top")
        assert.is_nil(v)
        assert.matches("overflow", err)
        exact(MAX, c:get("top"))
        v, err = c:dec("bottom")
        assert.is_nil(v)
        assert.matches("overflow", err)
        exact(MIN, c:get("bottom"))
        v, err = c:inc("n", MAX)
        assert.is_nil(v)
        assert.matches("overflow", err)
        exact(B60 - 2, c:get("n"))
        c:clear()
      end)
    end)
  end
end)
