-- UWSGICache specifics: addresses (TCP, unix socket), the `cache` option,
-- keys uWSGI cannot take as they are, value limits, failures and recovery,
-- expiry. The shared contract runs from spec/backends/uwsgi.lua.
local cache = require "cache"
local helpers = require "support.helpers"

local TCP = os.getenv("CACHE_TEST_UWSGI")
local SOCK = os.getenv("CACHE_TEST_UWSGI_SOCKET")
local ROOT = os.getenv("CACHE_ROOT") or "."
local now = require("cache.core").monotonic
local unpack = table.unpack or unpack

local function have_uwsgi()
  return helpers.sh("command -v uwsgi") ~= ""
end

describe("UWSGICache options", function()
  it("raises without an address, saying to give name@host:port", function()
    for _, spec in ipairs { "mycache", "" } do
      local ok, err = pcall(cache.UWSGICache, { cache = spec })
      assert.is_false(ok)
      assert.matches("UWSGICache: option 'cache': '" .. spec .. "' has no address; outside uWSGI give "
        .. "'name@host:port'", err, 1, true)
    end
    local ok, err = pcall(cache.UWSGICache, {})
    assert.is_false(ok)
    assert.matches("has no address", err, 1, true)
  end)

  it("raises on an address that is neither host:port nor a socket path", function()
    for _, spec in ipairs { "c@localhost", "c@host:0", "c@host:70000", "c@:3031", "c@[::1", "c@" } do
      local ok, err = pcall(cache.UWSGICache, { cache = spec })
      assert.is_false(ok, spec)
      assert.matches("host:port or /path/to.sock", err, 1, true)
    end
  end)

  it("names the class and the option in every option error", function()
    local long = "/" .. ("d"):rep(200) .. ".sock"
    for _, case in ipairs {
      { { cache = "c@localhost" }, "option 'cache': 'c@localhost': the address after '@' must be host:port" },
      { { cache = "c\0@h:1" }, "option 'cache': contains a NUL byte" },
      { { cache = ("n"):rep(1001) .. "@h:1" }, "option 'cache': the name of 1001 bytes is too long" },
      { { cache = "c@" .. long }, "option 'cache': the unix socket path of 206 bytes is too long (max 107)" },
      { { cache = { "c@h:1" } }, "option 'cache': string expected" },
      { { cache = "c@h:1", timeout = 0 }, "option 'timeout':" },
      { { cache = "c@h:1", timeout = print }, "option 'timeout': unsupported type function" },
      { { cache = { true } }, "option 'cache': item 1 must be a string" },
      { { cache = "c@h:1", bogus = 1 }, "unknown option 'bogus'" },
      { { "c@h:1" }, "option names must be strings" },
    } do
      local ok, err = pcall(cache.UWSGICache, case[1])
      assert.is_false(ok)
      assert.matches("UWSGICache: " .. case[2], err, 1, true)
    end
    local ok, err = pcall(function() cache.UWSGICache { cache = "c" } end)
    assert.is_false(ok)
    assert.matches("uwsgi_spec.lua:%d+: UWSGICache: option 'cache'", err)
  end)

  it("accepts host:port, [v6]:port, a socket path and a timeout", function()
    assert.truthy(cache.UWSGICache { cache = "c@127.0.0.1:3031" })
    assert.truthy(cache.UWSGICache { cache = "c@[::1]:3031" })
    assert.truthy(cache.UWSGICache { cache = "c@/run/uwsgi.sock", timeout = 0.5 })
    assert.truthy(cache.UWSGICache { cache = "@127.0.0.1:3031" }) -- the server's first cache
    assert.has_error(function() cache.UWSGICache { cache = "c@127.0.0.1:3031", timeout = "x" } end)
    assert.has_error(function() cache.UWSGICache { cache = "c@127.0.0.1:3031", bogus = 1 } end)
  end)

  it("reaches the backend through cache.new and CACHE_UWSGI_NAME", function()
    if not TCP then return pending("uWSGI not started") end
    local c = cache.new { CACHE_TYPE = "uwsgi", CACHE_UWSGI_NAME = "lazyc@" .. TCP }
    assert.is_true(c:set("via_new", 1))
    assert.equal(1, c:get("via_new"))
    assert.is_true(c:delete("via_new"))
  end)
end)

describe("UWSGICache on a server", function()
  if not TCP then
    it("runs", function() pending("uWSGI not started (CACHE_TEST_UWSGI unset)") end)
    return
  end

  local c
  before_each(function()
    c = cache.UWSGICache { cache = "lazyc@" .. TCP }
    assert.is_true(c:clear())
  end)

  it("shares the cache between TCP and the unix socket", function()
    if not SOCK then return pending("no unix socket") end
    local u = cache.UWSGICache { cache = "lazyc@" .. SOCK }
    assert.is_true(c:set("shared", { 1, "two" }))
    assert.same({ 1, "two" }, u:get("shared"))
    assert.is_true(u:delete("shared"))
    assert.is_nil(c:get("shared"))
  end)

  it("keeps named caches apart, and clear clears one", function()
    local other = cache.UWSGICache { cache = "mycache@" .. TCP }
    assert.is_true(other:set("k", "mine"))
    assert.is_true(c:set("k", "lazy"))
    assert.equal("mine", other:get("k"))
    assert.is_true(c:clear())
    assert.equal("mine", other:get("k"))
    assert.is_true(other:delete("k"))
  end)

  it("stores keys with CR/LF/NUL/spaces and of 3000 bytes, leaving others alone", function()
    local long = ("k"):rep(3000)
    local keys = { "a\r\nb", "nul\0key", "with spaces", "cmd", "", long, long .. "x", ("y"):rep(2000),
      ("y"):rep(2001) }
    for i, k in ipairs(keys) do assert.is_true(c:set(k, i)) end
    for i, k in ipairs(keys) do assert.equal(i, c:get(k)) end
    assert.is_nil(c:get("a"))
    assert.is_nil(c:get("nul"))
    assert.is_nil(c:get(("k"):rep(2999)))
    for _, k in ipairs(keys) do assert.is_true(c:delete(k)) end
    -- the connection handling is still sound
    assert.is_true(c:set("after", "ok"))
    assert.equal("ok", c:get("after"))
  end)

  it("no key aliases another: a key shaped like a mapped one is mapped too", function()
    local hex = require("cache.core").hex_digest
    for _, k in ipairs { "", ("z"):rep(2001) } do
      assert.is_true(c:set(k, "victim"))
      local lookalike = "#" .. hex("sha256", k)
      assert.is_nil(c:get(lookalike), #k .. " bytes")
      assert.is_true(c:set(lookalike, "other"))
      assert.equal("victim", c:get(k))
      assert.equal("other", c:get(lookalike))
    end
  end)

  it("gives false, err for a value over the server's item size", function()
    local ok, err = c:set("big", ("x"):rep(70000))
    assert.is_false(ok)
    assert.matches("value too large or server refused", err, 1, true)
    ok, err = c:add("big", ("x"):rep(70000))
    assert.is_false(ok)
    assert.matches("value too large", err, 1, true)
    assert.is_nil(c:get("big"))
    -- just under 64 KiB of codec bytes fits
    assert.is_true(c:set("fits", ("x"):rep(65000)))
    assert.equal(65000, #c:get("fits"))
  end)

  it("set_many goes past a value the server refuses, and names it", function()
    local ok, set, err = c:set_many { big = ("x"):rep(70000), small = 1 }
    assert.is_false(ok)
    assert.same({ "small" }, set)
    assert.matches("value too large", err, 1, true)
    assert.equal(1, c:get("small"))
  end)

  it("add is false for a live key, true after it expired or was deleted", function()
    assert.is_true(c:add("a", 1))
    assert.is_false(c:add("a", 2))
    assert.is_true(c:delete("a"))
    assert.is_true(c:add("a", 3))
    assert.equal(3, c:get("a"))
  end)

  it("inc/dec work (get + set: not atomic across clients)", function()
    assert.equal(5, c:inc("n", 5))
    assert.equal(3, c:dec("n", 2))
    assert.equal(3, c:get("n"))
  end)

  it("inc/dec keep an existing entry's expiry; a new entry gets default_timeout", function()
    -- c's default_timeout is 300 s, d's 1 s: an increment that wrote the
    -- default would make "short" outlive 2 s and "forever" expire
    local d = cache.UWSGICache { cache = "lazyc@" .. TCP, default_timeout = 1 }
    local t0 = now()
    assert.is_true(c:set("short", 42, 1))
    assert.is_true(d:set("forever", 7, 0))
    assert.equal(43, c:inc("short"))
    assert.equal(8, d:inc("forever"))
    assert.equal(-3, d:dec("fresh", 3))
    assert.equal(42, c:dec("short"))
    -- every deadline above is at most 2 s away (1 s rounded up to the second)
    helpers.sleep(2.1 - (now() - t0))
    assert.is_nil(c:get("short"))
    assert.is_nil(d:get("fresh"))
    assert.equal(8, d:get("forever"))
  end)

  it("expires whole seconds: never early, gone within the next second", function()
    local t0 = now()
    assert.is_true(c:set("t", "v", 1))
    assert.is_true(c:set("t3", "v", 3))
    local function sleep_until(t) if now() - t0 < t then helpers.sleep(t - (now() - t0)) end end
    sleep_until(0.7)
    if now() - t0 < 1 then assert.equal("v", c:get("t")) end -- lives at least 1 s
    sleep_until(2.05)
    assert.is_nil(c:get("t")) -- and at most 2 s (the deadline rounds up to a second)
    assert.is_false(c:has("t"))
    if now() - t0 < 3 then assert.equal("v", c:get("t3")) end
  end)

  it("set resets the timeout; 0 never expires", function()
    assert.is_true(c:set("r", 1, 1))
    assert.is_true(c:set("r", 2, 0))
    helpers.sleep(2.1)
    assert.equal(2, c:get("r"))
  end)

  it("a misspelt cache name misses on get and fails on set", function()
    local bad = cache.UWSGICache { cache = "nosuchcache@" .. TCP }
    assert.is_nil(bad:get("k"))
    local ok, err = bad:set("k", 1)
    assert.is_false(ok)
    assert.matches("unknown cache name", err, 1, true)
  end)
end)

describe("UWSGICache failures", function()
  it("a server that is not there gives nil, err / false, err at once", function()
    local port = helpers.sh("'" .. ROOT .. "/spec/support/freeport.sh'")
    local c = cache.UWSGICache { cache = "lazyc@127.0.0.1:" .. port }
    local v, err = c:get("k")
    assert.is_nil(v)
    assert.matches("connect: Connection refused", err, 1, true)
    local ok
    ok, err = c:set("k", 1)
    assert.is_false(ok)
    assert.is_string(err)
    ok, err = c:add("k", 1)
    assert.is_false(ok)
    assert.is_string(err)
    ok, err = c:clear()
    assert.is_false(ok)
    assert.is_string(err)
    assert.is_false((c:has("k")))
    assert.is_false((c:delete("k")))
    v, err = c:inc("k")
    assert.is_nil(v)
    assert.is_string(err)
  end)

  it("recovers when the server comes back (TCP and unix socket)", function()
    if not have_uwsgi() then return pending("uwsgi not installed") end
    local dir = helpers.tmpdir("uwsgi")
    local script = "'" .. ROOT .. "/spec/servers/uwsgi.sh'"
    local function start(port)
      local env = helpers.sh((port and ("UWSGI_PORT=" .. port .. " ") or "") .. "bash " .. script
        .. " start '" .. dir .. "' 2>/dev/null")
      return env:match("CACHE_TEST_UWSGI=(%S+)"), env:match("CACHE_TEST_UWSGI_SOCKET=(%S+)")
    end
    local function stop() os.execute("bash " .. script .. " stop '" .. dir .. "' >/dev/null 2>&1") end
    local ok, err = pcall(function()
      local addr, sock = start()
      assert.is_string(addr, "own uWSGI did not start")
      local port = addr:match(":(%d+)$")
      local t = cache.UWSGICache { cache = "lazyc@" .. addr }
      local u = cache.UWSGICache { cache = "lazyc@" .. sock }
      assert.is_true(t:set("k", "before"))
      assert.equal("before", u:get("k"))

      stop()
      local v, e = t:get("k")
      assert.is_nil(v)
      assert.matches("Connection refused", e, 1, true)
      local s
      s, e = t:set("k", 1)
      assert.is_false(s)
      assert.is_string(e)
      v, e = u:get("k")
      assert.is_nil(v)
      assert.is_string(e)

      local addr2 = start(port)
      assert.equal(addr, addr2)
      -- a new server has an empty cache; the same objects work again
      assert.is_nil(t:get("k"))
      assert.is_true(t:set("k", "after"))
      assert.equal("after", u:get("k"))
    end)
    stop()
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
  end)

  -- A listener that never accepts: connects succeed (the kernel's backlog),
  -- no reply ever comes. Returns its port and a function that stops it.
  local function silent_server()
    local port = helpers.sh("'" .. ROOT .. "/spec/support/freeport.sh'")
    local pidf = os.tmpname()
    os.execute(("python3 -c 'import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
      .. "s.bind((\"127.0.0.1\",%s));s.listen(64);time.sleep(60)' >/dev/null 2>&1 & echo $! > %s"):format(port, pidf))
    for _ = 1, 50 do -- until it listens (python starts in about 50 ms)
      local r = os.execute(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s' 2>/dev/null"):format(port))
      if r == true or r == 0 then break end -- 5.4: true; LuaJIT/5.1: 0
      helpers.sleep(0.1)
    end
    local pid = helpers.sh("cat " .. pidf)
    os.remove(pidf)
    return port, function() os.execute("kill " .. pid .. " 2>/dev/null") end
  end

  it("a silent server costs at most about the timeout", function()
    if helpers.sh("command -v python3") == "" then return pending("python3 not installed") end
    local port, stop = silent_server()
    finally(stop)
    local c = cache.UWSGICache { cache = "lazyc@127.0.0.1:" .. port, timeout = 0.3 }
    local t0 = now()
    local v, err = c:get("k")
    stop()
    assert.is_nil(v)
    assert.matches("timed out", err, 1, true)
    local dt = now() - t0
    assert.is_true(dt >= 0.25 and dt < 1.0, "took " .. dt .. " s")
  end)

  it("set_many / delete_many on a silent server stop at the first failure, with its message", function()
    if helpers.sh("command -v python3") == "" then return pending("python3 not installed") end
    local port, stop = silent_server()
    finally(stop)
    local spec = "lazyc@127.0.0.1:" .. port
    local map, keys = {}, {}
    for i = 1, 20 do map["k" .. i] = i; keys[i] = "k" .. i end
    -- one timeout for the whole batch, not one per key (20 x 0.5 s = 10 s);
    -- the bound is generous for a loaded machine
    for _, ignore in ipairs { false, true } do
      local c = cache.UWSGICache { cache = spec, timeout = 0.5, ignore_errors = ignore }
      local t0 = now()
      local ok, set, err = c:set_many(map)
      local dt = now() - t0
      assert.is_false(ok)
      assert.same({}, set)
      assert.matches("timed out", err, 1, true)
      assert.is_true(dt < 2.0, "set_many took " .. dt .. " s")
      t0 = now()
      local deleted
      ok, deleted, err = c:delete_many(unpack(keys))
      dt = now() - t0
      assert.is_false(ok)
      assert.same({}, deleted)
      assert.is_string(err, "ignore_errors = " .. tostring(ignore))
      assert.matches("timed out", err, 1, true)
      assert.is_true(dt < 2.0, "delete_many took " .. dt .. " s")
    end
  end)
end)
