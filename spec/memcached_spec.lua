-- The memcached backends beyond the shared contract: key mapping (no key can
-- inject protocol text), ketama over two servers, failures and recovery,
-- timeouts, the stored form (flags, integers, foreign values), SASL with a
-- wrong password on every operation, and SpreadSASLMemcachedCache's chunks.
local helpers = require "support.helpers"

local A = os.getenv("CACHE_TEST_MEMCACHED")
local B = os.getenv("CACHE_TEST_MEMCACHED2")
local SOCKET = os.getenv("CACHE_TEST_MEMCACHED_SOCKET")
local SASL = os.getenv("CACHE_TEST_MEMCACHED_SASL")
local USER = os.getenv("CACHE_TEST_MEMCACHED_USER")
local PASS = os.getenv("CACHE_TEST_MEMCACHED_PASS")
local ROOT = os.getenv("CACHE_ROOT") or "."

local function now()
  return require("cache.core").monotonic()
end

-- Lua 5.4 and LuaJIT alike
local unpack = table.unpack or unpack
local function ok_exec(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

-- Sends ASCII protocol text to a plain memcached and returns its reply up to
-- the meta no-op's "MN" (appended here), so any command can be checked raw.
local function raw(hostport, text)
  local host, port = hostport:match("^(.*):(%d+)$")
  local f = os.tmpname()
  local fh = assert(io.open(f, "wb"))
  fh:write(text, "mn\r\n")
  fh:close()
  local out = helpers.sh(([[timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%s; cat %s >&3;
    while IFS= read -r line <&3; do printf "%%s\n" "$line"; case $line in MN*) break;; esac; done' 2>/dev/null]])
    :format(host, port, f))
  os.remove(f)
  return (out:gsub("\r", ""))
end

-- "mg KEY f t v" through the ASCII protocol: flags, remaining ttl, value.
local function meta(hostport, key)
  local out = raw(hostport, ("mg %s f t v\r\n"):format(key))
  local flags, ttl, value = out:match("^VA %d+ f(%d+) t(%-?%d+)\n([^\n]*)\n")
  if not flags then
    flags, value = out:match("^VA %d+ f(%d+)\n([^\n]*)\n")
  end
  return tonumber(flags), tonumber(ttl), value, out
end

-- A memcached of the spec's own (to kill and restart), on a free port.
local function port_open(port)
  return ok_exec(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d' 2>/dev/null"):format(port))
end

-- The SASL settings of the spec's own SASL servers: a sasldb made here (the
-- realm is this host's name, as in spec/servers/memcached.sh), shared by all.
local own_sasl
local function sasl_conf()
  if own_sasl then return own_sasl end
  local dir = helpers.tmpdir("mcsasl")
  local pass = "own-" .. os.time()
  assert(ok_exec(("printf '%%s' %s | saslpasswd2 -p -a memcached -c -f %s/sasldb2 ownuser")
    :format(pass, dir)), "saslpasswd2 failed")
  local fh = assert(io.open(dir .. "/memcached.conf", "w"))
  fh:write("mech_list: plain cram-md5\nsasldb_path: ", dir, "/sasldb2\n")
  fh:close()
  own_sasl = { dir = dir, user = "ownuser", pass = pass }
  return own_sasl
end

local own = {}
-- opts.sasl: a SASL server (-S) with sasl_conf()'s user.
local function start_own(port, opts)
  port = port or tonumber(helpers.sh(ROOT .. "/spec/support/freeport.sh"))
  local dir = helpers.tmpdir("mcown")
  local pidf = dir .. "/pid"
  local as_root = helpers.sh("id -u") == "0" and " -u root" or ""
  local env, extra = "", ""
  if opts and opts.sasl then
    env, extra = ("SASL_CONF_PATH=%s "):format(sasl_conf().dir), " -S"
  end
  assert(ok_exec(("%smemcached -d -P %s -l 127.0.0.1 -p %d -U 0 -m 16%s%s 2>>%s/err")
    :format(env, pidf, port, as_root, extra, dir)))
  local deadline = now() + 5
  while not port_open(port) and now() < deadline do helpers.sleep(0.05) end
  assert(port_open(port), "own memcached did not start on " .. port .. ": " .. helpers.sh("cat " .. dir .. "/err; ss -tanp | grep " .. port))
  local pid
  deadline = now() + 2
  repeat
    local fh = io.open(pidf)
    if fh then pid = fh:read("n"); fh:close() end
    if not pid then helpers.sleep(0.05) end
  until pid or now() > deadline
  local s = { port = port, pid = assert(pid, "no pid file"), addr = "127.0.0.1:" .. port }
  own[#own + 1] = s
  return s
end

-- How many threads of process pid are not stopped.
local function running_threads(pid)
  return tonumber(helpers.sh(("cat /proc/%d/task/*/stat 2>/dev/null | awk '$3 != \"T\"' | wc -l")
    :format(pid)))
end

-- SIGSTOP, then wait until every thread of the process is stopped: kill
-- returns before a busy machine has stopped them all, and a thread still
-- running would answer the next request.
local function freeze(pid)
  assert(ok_exec("kill -STOP " .. pid))
  local deadline = now() + 5
  repeat
    if running_threads(pid) == 0 then return end
    helpers.sleep(0.02)
  until now() > deadline
  error("process " .. pid .. " did not stop")
end

local function stop_own(s)
  if not s.pid then return end
  os.execute("kill " .. s.pid .. " 2>/dev/null")
  local deadline = now() + 5
  while now() < deadline and (port_open(s.port) or
      ok_exec("kill -0 " .. s.pid .. " 2>/dev/null")) do
    helpers.sleep(0.05)
  end
  os.execute("kill -9 " .. s.pid .. " 2>/dev/null")
  s.pid = nil
end

describe("memcached backends", function()
  if not A then
    it("runs", function() pending("memcached not started (spec/servers/memcached.sh)") end)
    return
  end
  local cache = require "cache"

  local function new(opts)
    local o = { servers = { A }, key_prefix = helpers.unique("mcs") }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.MemcachedCache(o), o.key_prefix
  end

  teardown(function()
    for _, s in ipairs(own) do stop_own(s) end
  end)

  describe("options", function()
    it("rejects unknown options, bad servers and wrong types, naming them", function()
      local ok, err = pcall(cache.MemcachedCache, { servers = { A }, bogus = 1 })
      assert.is_false(ok)
      assert.matches("bogus", err)
      for _, bad in ipairs { "127.0.0.1:0", "127.0.0.1:x", "127.0.0.1:70000", ":11211", "::1:11211", "" } do
        ok, err = pcall(cache.MemcachedCache, { servers = { bad } })
        assert.is_false(ok, bad)
        assert.matches("servers", err)
      end
      ok, err = pcall(cache.MemcachedCache, { key_prefix = {} })
      assert.is_false(ok)
      assert.matches("key_prefix", err)
      ok, err = pcall(cache.SASLMemcachedCache, { servers = SASL or A, password = "x" })
      assert.is_false(ok)
      assert.matches("username", err)
      ok, err = pcall(cache.SASLMemcachedCache, { servers = SASL or A, username = "x" })
      assert.is_false(ok)
      assert.matches("password", err)
      ok, err = pcall(cache.SpreadSASLMemcachedCache, { servers = A, chunksize = 0 })
      assert.is_false(ok)
      assert.matches("chunksize", err)
      ok, err = pcall(cache.SpreadSASLMemcachedCache, { servers = A, maxchunk = "2" })
      assert.is_false(ok)
      assert.matches("maxchunk", err)
    end)

    it("takes one server as a string, several as a list or comma-separated, and [v6]:port", function()
      local prefix = helpers.unique("srv")
      local c1 = cache.MemcachedCache { servers = A, key_prefix = prefix }
      assert.is_true(c1:set("k", 1))
      local c2 = cache.MemcachedCache { servers = A .. "," .. B, key_prefix = prefix }
      local c3 = cache.MemcachedCache { servers = { A, B }, key_prefix = prefix }
      c2:set("x", "same")
      assert.equal("same", c3:get("x"))
      assert.has_no.errors(function() cache.MemcachedCache { servers = { "[::1]:11211" } } end)
      -- {host, port} pairs reach the backend bracketed when the host is IPv6.
      assert.has_no.errors(function() cache.MemcachedCache { servers = { { "::1", 11211 } } } end)
      -- The default is 127.0.0.1:11211, used lazily (nothing listens there
      -- in the test machine, or something does: either way no raise).
      local d = cache.MemcachedCache {}
      assert.equal(300, d.default_timeout)
    end)

    it("SASLMemcachedCache without credentials: no SASL, as Flask-Caching (pylibmc) does", function()
      local c = cache.SASLMemcachedCache { servers = { A, B }, key_prefix = helpers.unique("nosasl") }
      assert.is_true(c:set("k", "v"))
      assert.equal("v", c:get("k"))
      assert.equal(2, c:inc("n", 2))
      if cache.new then
        local n = cache.new { CACHE_TYPE = "saslmemcached", CACHE_MEMCACHED_SERVERS = { A },
                              CACHE_KEY_PREFIX = helpers.unique("nosaslcfg") }
        assert.is_true(n:set("k", 1))
        assert.equal(1, n:get("k"))
      end
    end)

    it("works on a unix socket", function()
      if not SOCKET then return pending("no socket server") end
      local c = cache.MemcachedCache { servers = SOCKET, key_prefix = helpers.unique("sock") }
      assert.is_true(c:set("k", { 1, 2 }))
      assert.same({ 1, 2 }, c:get("k"))
      assert.equal(3, c:inc("n", 3))
      assert.equal(-1, c:dec("n", 4))
    end)

    it("reaches the backends through cache.new and CACHE_MEMCACHED_*", function()
      if not cache.new then return pending("cache.new not installed") end
      local c = cache.new { CACHE_TYPE = "memcached", CACHE_MEMCACHED_SERVERS = { A, B },
                            CACHE_KEY_PREFIX = helpers.unique("cfg") }
      assert.is_true(c:set("k", "v"))
      assert.equal("v", c:get("k"))
      if SASL then
        local s = cache.new { CACHE_TYPE = "saslmemcached", CACHE_MEMCACHED_SERVERS = SASL,
                              CACHE_MEMCACHED_USERNAME = USER, CACHE_MEMCACHED_PASSWORD = PASS,
                              CACHE_KEY_PREFIX = helpers.unique("cfgs") }
        assert.is_true(s:set("k", "v"))
        assert.equal("v", s:get("k"))
        local sp = cache.new { CACHE_TYPE = "spreadsaslmemcached", CACHE_MEMCACHED_SERVERS = SASL,
                               CACHE_MEMCACHED_USERNAME = USER, CACHE_MEMCACHED_PASSWORD = PASS,
                               CACHE_KEY_PREFIX = helpers.unique("cfgp") }
        assert.is_true(sp:set("k", ("x"):rep(3000000)))
        assert.equal(3000000, #sp:get("k"))
      end
    end)
  end)

  describe("keys", function()
    it("stores keys with CR LF, spaces, NUL, control bytes and 300 bytes, and nothing leaks into the protocol", function()
      local c, prefix = new()
      -- Keys that are also valid and would be hit by an injection.
      assert.is_true(c:set("evil", "untouched"))
      assert.is_true(c:set("a", "plain a"))
      local keys = {
        "x\r\nset evil 0 0 4\r\nPWND\r\n",
        "a b",
        "a\0b",
        "tab\there",
        "\r\n",
        "delete a\r\n",
        ("k"):rep(300),
        ("\255"):rep(10),
        "",
      }
      for i, k in ipairs(keys) do
        assert.is_true(c:set(k, i), ("key #%d"):format(i))
      end
      for i, k in ipairs(keys) do
        assert.equal(i, c:get(k), ("key #%d"):format(i))
        assert.is_true(c:has(k))
      end
      assert.equal("untouched", c:get("evil"))
      assert.equal("plain a", c:get("a"))
      -- The raw server has no key "evil" of its own, and the prefixed key
      -- shows the mapping: prefix .. "#" .. sha256 hex.
      local _, _, v = meta(A, "evil")
      assert.is_nil(v)
      local out = raw(A, ("mg %sevil v\r\n"):format(prefix))
      assert.matches("untouched", out)
      -- Many at once, then the connection still answers correctly.
      local r = helpers.pack(c:get_many(unpack(keys)))
      for i = 1, #keys do assert.equal(i, r[i]) end
      local all, deleted = c:delete_many(keys[1], keys[2], keys[7], "never-set")
      assert.is_false(all)
      assert.equal(3, #deleted)
      assert.is_nil(c:get(keys[1]))
      assert.equal(3, c:get(keys[3]))
      assert.equal(5, c:inc(keys[5], 0))
      assert.is_true(c:set("after", "sound"))
      assert.equal("sound", c:get("after"))
    end)

    it("maps an invalid or long key deterministically to prefix#sha256", function()
      local c, prefix = new()
      c:set("a b", 1)
      local d = cache.MemcachedCache { servers = { A }, key_prefix = prefix }
      assert.equal(1, d:get("a b"))
      local long = ("y"):rep(251 - #prefix)
      c:set(long, "long")
      -- 250 bytes with the prefix is kept as it is; one more is hashed.
      local kept = ("y"):rep(250 - #prefix)
      c:set(kept, "kept")
      assert.matches("kept$", select(3, meta(A, prefix .. kept)))
      local _, _, v = meta(A, prefix .. long)
      assert.is_nil(v)
    end)

    it("no key aliases another: a key shaped like a mapped one is mapped too", function()
      local hex = require("cache.core").hex_digest
      for _, prefix in ipairs { "", helpers.unique("alias") } do
        local c = cache.MemcachedCache { servers = { A }, key_prefix = prefix }
        assert.is_true(c:set("a b", "victim"))
        local lookalike = "#" .. hex("sha256", prefix .. "a b")
        assert.is_nil(c:get(lookalike), "prefix '" .. prefix .. "'")
        assert.is_true(c:set(lookalike, "other"))
        assert.equal("victim", c:get("a b"))
        assert.equal("other", c:get(lookalike))
      end
      -- an unprintable prefix is dropped in front of the digest: the key
      -- "#<hex>" of an object without a prefix must not reach its entries
      local bad = cache.MemcachedCache { servers = { A }, key_prefix = "my app:" }
      local none = cache.MemcachedCache { servers = { A }, key_prefix = "" }
      assert.is_true(bad:set("k", "victim"))
      assert.is_nil(none:get("#" .. hex("sha256", "my app:k")))
      -- keys that do not start with '#' keep their exact form on the server
      local c, prefix = new()
      assert.is_true(c:set("x#y", "kept"))
      assert.matches("kept$", select(3, meta(A, prefix .. "x#y")))
    end)

    it("keeps prefixes apart, and clear() flushes every prefix (flush_all)", function()
      local c1 = new()
      local c2 = new()
      c1:set("k", 1)
      c2:set("k", 2)
      assert.equal(1, c1:get("k"))
      assert.equal(2, c2:get("k"))
      assert.is_true(c1:clear())
      assert.is_nil(c2:get("k"))
    end)
  end)

  describe("ketama over two servers", function()
    it("spreads keys over both, each key on one", function()
      local prefix = helpers.unique("ket")
      local pool = cache.MemcachedCache { servers = { A, B }, key_prefix = prefix }
      local only_a = cache.MemcachedCache { servers = { A }, key_prefix = prefix }
      local only_b = cache.MemcachedCache { servers = { B }, key_prefix = prefix }
      local on_a, on_b = 0, 0
      for i = 1, 200 do
        assert.is_true(pool:set("k" .. i, i))
      end
      for i = 1, 200 do
        local a, b = only_a:get("k" .. i), only_b:get("k" .. i)
        assert.is_true((a == nil) ~= (b == nil), "key on exactly one server")
        if a then on_a = on_a + 1 else on_b = on_b + 1 end
      end
      assert.is_true(on_a > 40 and on_b > 40, ("%d / %d"):format(on_a, on_b))
    end)

    it("adding a third server moves about a third of the keys (consistent hashing)", function()
      local extra = start_own()
      local prefix = helpers.unique("ket3")
      local two = cache.MemcachedCache { servers = { A, B }, key_prefix = prefix }
      for i = 1, 300 do two:set("k" .. i, i) end
      local three = cache.MemcachedCache { servers = { A, B, extra.addr }, key_prefix = prefix }
      local stayed = 0
      for i = 1, 300 do
        if three:get("k" .. i) == i then stayed = stayed + 1 end
      end
      -- modulo hashing would keep about 1/3; ketama about 2/3
      assert.is_true(stayed > 150, "keys still found: " .. stayed)
    end)
  end)

  describe("failures", function()
    it("a server down gives nil/false and an error, fast, and recovers when it returns", function()
      local s = start_own()
      local c = cache.MemcachedCache { servers = { s.addr }, key_prefix = helpers.unique("down") }
      assert.is_true(c:set("k", "v"))
      stop_own(s)
      local t0 = now()
      local v, err = c:get("k")
      assert.is_nil(v)
      assert.matches("memcached 127%.0%.0%.1:" .. s.port, err)
      local ok, _
      ok, err = c:set("k", 1)
      assert.is_false(ok)
      assert.is_string(err)
      v, err = c:inc("n")
      assert.is_nil(v)
      assert.is_string(err)
      ok, err = c:has("k")
      assert.is_false(ok)
      assert.is_string(err)
      ok, err = c:delete("k")
      assert.is_false(ok)
      assert.is_string(err)
      local r = helpers.pack(c:get_many("a", "b"))
      assert.equal(3, r.n)
      assert.is_string(r[3])
      ok, _, err = c:set_many { a = 1, b = 2 }
      assert.is_false(ok)
      assert.is_string(err)
      ok, _, err = c:delete_many("a", "b", "c")
      assert.is_false(ok)
      assert.is_string(err)
      ok, err = c:clear()
      assert.is_false(ok)
      assert.is_string(err)
      assert.is_true(now() - t0 < 5, "failures are fast")
      -- Back on the same port: a later call reconnects (retry after 1 s).
      start_own(s.port)
      local deadline = now() + 10
      repeat
        ok = c:set("k", "again")
        if not ok then helpers.sleep(0.2) end
      until ok or now() > deadline
      assert.is_true(ok)
      assert.equal("again", c:get("k"))
      assert.equal(1, c:inc("fresh"))
    end)

    it("a server that stops answering (SIGSTOP) fails each call after the 1 s poll timeout", function()
      local s = start_own()
      local c = cache.MemcachedCache { servers = { s.addr }, key_prefix = helpers.unique("stop") }
      assert.is_true(c:set("k", 1))
      freeze(s.pid)
      -- In a fixed order (a failure replays), each call then checked to
      -- have left the server stopped: an answer from a server something
      -- else resumed is not this client's fault, and must say so.
      local ops = {
        { "get", function() return c:get("k") end },
        { "set", function() return c:set("k", 2) end },
        { "inc", function() return c:inc("k") end },
        { "has", function() return c:has("k") end },
        { "get_many", function() return nil, select(3, c:get_many("a", "b")) end },
        { "delete_many", function() return nil, select(3, c:delete_many("a", "b", "c")) end },
        { "set_many", function() return nil, select(3, c:set_many { a = 1 }) end },
        { "clear", function() return c:clear() end },
      }
      for _, o in ipairs(ops) do
        local name, op = o[1], o[2]
        local t0 = now()
        local v, err = op()
        local took = now() - t0
        assert.equal(0, running_threads(s.pid), name .. ": the server was resumed from outside")
        assert.is_true(v == nil or v == false, name)
        assert.matches("^memcached 127%.0%.0%.1:%d+: ", err, name)
        assert.is_true(took < 3, name .. " took " .. took)
      end
      assert(ok_exec("kill -CONT " .. s.pid))
      -- a fresh key: writes sent while the server was stopped may still be
      -- applied after it resumes, and would overwrite "k". That includes
      -- clear()'s flush_all, which the resumed server may run after a first
      -- new write (seen: "recovered" absent on the server itself), so
      -- recovery is a write that reads back.
      local deadline, back = now() + 10
      repeat
        if c:set("recovered", "back") then back = c:get("recovered") end
        if back ~= "back" then helpers.sleep(0.2) end
      until back == "back" or now() > deadline
      assert.equal("back", back)
    end)

    it("killing one of two servers leaves the other's keys readable", function()
      local s1, s2 = start_own(), start_own()
      local prefix = helpers.unique("kill")
      local pool = cache.MemcachedCache { servers = { s1.addr, s2.addr }, key_prefix = prefix }
      local only1 = cache.MemcachedCache { servers = { s1.addr }, key_prefix = prefix }
      for i = 1, 60 do assert.is_true(pool:set("k" .. i, i)) end
      local on1 = {}
      for i = 1, 60 do on1[i] = only1:get("k" .. i) ~= nil end
      stop_own(s2)
      local read, failed = 0, 0
      for i = 1, 60 do
        local v, err = pool:get("k" .. i)
        if on1[i] then
          assert.equal(i, v)
          read = read + 1
        else
          assert.is_nil(v)
          assert.matches("memcached 127%.0%.0%.1:" .. s2.port, err)
          failed = failed + 1
        end
      end
      assert.is_true(read > 0 and failed > 0)
      -- get_many: the live server's hits, nil for the dead one's keys
      local keys = {}
      for i = 1, 60 do keys[i] = "k" .. i end
      local r = helpers.pack(pool:get_many(unpack(keys)))
      for i = 1, 60 do
        if on1[i] then assert.equal(i, r[i]) else assert.is_nil(r[i]) end
      end
      -- and it comes back (empty)
      start_own(s2.port)
      local deadline, back = now() + 10
      repeat
        back = pool:set_many { x1 = 1, x2 = 2, x3 = 3, x4 = 4, x5 = 5, x6 = 6 }
        if not back then helpers.sleep(0.2) end
      until back or now() > deadline
      assert.is_true(back)
    end)

    -- A pool of two own servers with keys k1..k20; which keys live on the
    -- first (read through an object of that server alone).
    local function pool_of_two(tag)
      local s1, s2 = start_own(), start_own()
      local prefix = helpers.unique(tag)
      local pool = cache.MemcachedCache { servers = { s1.addr, s2.addr }, key_prefix = prefix }
      local only1 = cache.MemcachedCache { servers = { s1.addr }, key_prefix = prefix }
      local keys, on1 = {}, {}
      for i = 1, 20 do
        keys[i] = "k" .. i
        assert.is_true(pool:set(keys[i], i))
      end
      for i = 1, 20 do on1[i] = only1:get(keys[i]) ~= nil end
      return pool, keys, on1, s1, s2
    end

    it("get_many and get_dict with one member down: the other's hits, and an error naming it", function()
      local pool, keys, on1, s1, s2 = pool_of_two("gmdown")
      stop_own(s2)
      local r = helpers.pack(pool:get_many(unpack(keys)))
      assert.equal(21, r.n)
      for i = 1, 20 do
        if on1[i] then assert.equal(i, r[i]) else assert.is_nil(r[i]) end
      end
      assert.matches("^memcached 127%.0%.0%.1:" .. s2.port .. ": ", r[21])
      local d, err = pool:get_dict(unpack(keys))
      for i = 1, 20 do assert.equal(on1[i] and i or nil, d[keys[i]]) end
      assert.matches("^memcached 127%.0%.0%.1:" .. s2.port .. ": ", err)
      -- only the keys of the dead server fail: alone, the others have no error
      local live = {}
      for i = 1, 20 do if on1[i] then live[#live + 1] = keys[i] end end
      r = helpers.pack(pool:get_many(unpack(live)))
      assert.equal(#live, r.n)
      stop_own(s1)
    end)

    it("set_many with one item too large: false, the other keys, and why", function()
      for _, servers in ipairs { { A }, { A, B } } do
        local c = cache.MemcachedCache { servers = servers, key_prefix = helpers.unique("big") }
        local ok, keys, err = c:set_many { a = 1, b = 2, big = ("x"):rep(2 * 1048576) }
        assert.is_false(ok)
        table.sort(keys)
        assert.same({ "a", "b" }, keys)
        assert.matches("^memcached 127%.0%.0%.1:%d+: .*too big.*larger %-I", err)
        assert.equal(1, c:get("a"))
      end
    end)

    it("clear() names the member that failed", function()
      local pool, _, _, s1, s2 = pool_of_two("clr")
      freeze(s2.pid)
      local ok, err = pool:clear()
      assert(ok_exec("kill -CONT " .. s2.pid))
      assert.is_false(ok)
      assert.matches("^memcached 127%.0%.0%.1:" .. s2.port .. ": ", err)
      helpers.sleep(1.1) -- past the retry interval of the stalled member
      stop_own(s2)
      ok, err = pool:clear()
      assert.is_false(ok)
      assert.matches("^memcached 127%.0%.0%.1:" .. s2.port .. ": ", err)
      stop_own(s1)
    end)

    it("delete_many with a stalled member (SIGSTOP) fails its keys after about the 1 s timeout", function()
      local pool, keys, on1, s1, s2 = pool_of_two("dmstop")
      freeze(s2.pid)
      local t0 = now()
      local all, deleted, err = pool:delete_many(unpack(keys))
      local took = now() - t0
      assert(ok_exec("kill -CONT " .. s2.pid))
      assert.is_false(all)
      local want = 0
      for i = 1, 20 do if on1[i] then want = want + 1 end end
      assert.equal(want, #deleted)
      assert.matches("^memcached 127%.0%.0%.1:" .. s2.port .. ": ", err)
      -- documented: about 1 s (one poll timeout); a generous bound
      assert.is_true(took < 2.5, "took " .. took)
      stop_own(s1)
      stop_own(s2)
    end)

    -- A batch of several steps (the heads, then the heads and pieces to
    -- delete) asks a server that failed in one step nothing more.
    it("Spread delete_many with a stalled member: one timeout, and the live member's values deleted", function()
      local s1, s2 = start_own(), start_own()
      local prefix = helpers.unique("spdm")
      local opts = { servers = { s1.addr, s2.addr }, key_prefix = prefix, chunksize = 100 }
      local c = cache.SpreadSASLMemcachedCache(opts)
      local only1 = cache.MemcachedCache { servers = { s1.addr }, key_prefix = prefix }
      local keys, on1 = {}, {}
      for i = 1, 20 do
        keys[i] = "k" .. i
        -- every other value spans chunks (on both servers)
        assert.is_true(c:set(keys[i], i % 2 == 0 and ("v"):rep(450) .. i or i))
        on1[i] = only1:has(keys[i] .. ".0")
      end
      freeze(s2.pid)
      local t0 = now()
      local all, deleted, err = c:delete_many(unpack(keys))
      local took = now() - t0
      assert(ok_exec("kill -CONT " .. s2.pid))
      assert.is_false(all)
      local want = {}
      for i = 1, 20 do if on1[i] then want[#want + 1] = keys[i] end end
      table.sort(deleted)
      table.sort(want)
      assert.same(want, deleted)
      assert.matches("^memcached 127%.0%.0%.1:" .. s2.port .. ": ", err)
      assert.is_true(took < 2.5, "took " .. took)
      local fresh = cache.SpreadSASLMemcachedCache(opts)
      for i = 1, 20 do
        if on1[i] then assert.is_nil(fresh:get(keys[i]), keys[i]) end
      end
      stop_own(s1)
      stop_own(s2)
    end)

    -- libmemcached keeps a server's last error until that server fails
    -- again: a member that failed in an earlier call must not be blamed
    -- for a call in which only another member failed.
    it("get_many and get_dict name only the member that failed in this call", function()
      local pool, keys, on1, s1, s2 = pool_of_two("blame")
      local k1, k2 = {}, {}
      for i = 1, 20 do
        if on1[i] then k1[#k1 + 1] = keys[i] else k2[#k2 + 1] = keys[i] end
      end
      stop_own(s1) -- s1 fails once...
      assert.is_nil((pool:get(k1[1])))
      start_own(s1.port) -- ...and comes back empty
      local deadline, back = now() + 10
      repeat
        back = pool:set(k1[1], "back")
        if not back then helpers.sleep(0.2) end
      until back or now() > deadline
      assert.is_true(back)
      freeze(s2.pid) -- now only s2 fails
      local r = helpers.pack(pool:get_many(k1[2], k2[1], k1[1]))
      local d, derr = pool:get_dict(k1[2], k2[1], k1[1])
      assert(ok_exec("kill -CONT " .. s2.pid))
      assert.equal(4, r.n)
      assert.is_nil(r[1])
      assert.is_nil(r[2])
      assert.equal("back", r[3])
      assert.matches("^memcached 127%.0%.0%.1:" .. s2.port .. ": ", r[4])
      assert.same({ [k1[1]] = "back" }, d)
      assert.matches("^memcached 127%.0%.0%.1:" .. s2.port .. ": ", derr)
      stop_own(s1)
      stop_own(s2)
    end)

    -- libmemcached waits on several servers at once and gives up without
    -- an error when none of them answers; their replies may still come.
    it("two of three members stalled: get_many fails their keys once, and later calls read their own replies", function()
      local s = { start_own(), start_own(), start_own() }
      local prefix = helpers.unique("two")
      local pool = cache.MemcachedCache { servers = { s[1].addr, s[2].addr, s[3].addr }, key_prefix = prefix }
      local only1 = cache.MemcachedCache { servers = { s[1].addr }, key_prefix = prefix }
      local keys, on1 = {}, {}
      for i = 1, 30 do
        keys[i] = "k" .. i
        assert.is_true(pool:set(keys[i], i))
        on1[i] = only1:get(keys[i]) == i
      end
      freeze(s[2].pid)
      freeze(s[3].pid)
      local t0 = now()
      local r = helpers.pack(pool:get_many(unpack(keys)))
      local took = now() - t0
      assert(ok_exec("kill -CONT " .. s[2].pid))
      assert(ok_exec("kill -CONT " .. s[3].pid))
      assert.equal(31, r.n, "no error")
      for i = 1, 30 do assert.equal(on1[i] and i or nil, r[i], keys[i]) end
      assert.matches("^memcached 127%.0%.0%.1:", r[31])
      assert.is_true(took < 2.5, "took " .. took)
      -- the stalled members' late replies are not taken for later answers
      for i = 1, 30 do
        local v = pool:get(keys[i])
        assert.equal(i, v, keys[i])
        assert.is_true(pool:set(keys[i], "new" .. i), keys[i])
        assert.equal("new" .. i, pool:get(keys[i]), keys[i])
      end
      for i = 1, 3 do stop_own(s[i]) end
    end)
  end)

  describe("batches", function()
    -- As SimpleCache, FileSystemCache, Redis and uWSGI: the first occurrence
    -- of a key deletes it, a later one finds nothing, so the key is listed
    -- once and not everything was deleted.
    it("delete_many with a repeated key lists it once and is not all deleted", function()
      local made = { MemcachedCache = function(prefix)
        return cache.MemcachedCache { servers = { A, B }, key_prefix = prefix }
      end }
      if SASL then
        for _, ctor in ipairs { "SASLMemcachedCache", "SpreadSASLMemcachedCache" } do
          made[ctor] = function(prefix)
            return cache[ctor] { servers = SASL, username = USER, password = PASS, key_prefix = prefix }
          end
        end
      end
      local wrong = {}
      for name, make in pairs(made) do
        local c = make(helpers.unique("dup"))
        for _, keys in ipairs { { "t", "t" }, { "t", "t", "t" }, { "x", "t", "t" },
                                { "t", "x", "t", "y", "t" } } do
          assert.is_true(c:set("t", 1), name)
          local all, deleted = c:delete_many(unpack(keys))
          if all ~= false or #deleted ~= 1 or deleted[1] ~= "t" or c:has("t") then
            wrong[#wrong + 1] = ("%s delete_many(%s) -> %s, {%s}"):format(name,
              table.concat(keys, ", "), tostring(all), table.concat(deleted, ", "))
          end
        end
      end
      table.sort(wrong)
      assert.same({}, wrong)
    end)
  end)

  describe("timeouts", function()
    it("sends more than 30 days as an absolute time, fractions rounded up", function()
      local c, prefix = new()
      local forty_days = 40 * 86400
      assert.is_true(c:set("long", "v", forty_days))
      assert.equal("v", c:get("long"))
      local _, ttl = meta(A, prefix .. "long")
      -- memcached turns the date back into seconds on its own clock, which
      -- may lag a second or two behind
      assert.is_true(ttl > forty_days - 10 and ttl <= forty_days + 3, "ttl " .. tostring(ttl))
      assert.is_true(c:set("thirty", "v", 2592000))
      _, ttl = meta(A, prefix .. "thirty")
      assert.is_true(ttl > 2592000 - 10, "ttl " .. tostring(ttl))
      -- 2.2 s is sent as 3 (rounded up): memcached then reports t3, unless
      -- its once-a-second clock ticks in between (so: three tries).
      local seen = {}
      for _ = 1, 3 do
        assert.is_true(c:set("frac", "v", 2.2))
        _, ttl = meta(A, prefix .. "frac")
        seen[#seen + 1] = tostring(ttl)
        if ttl == 3 then break end
      end
      assert.equal(3, ttl, "ttls seen: " .. table.concat(seen, " "))
      assert.is_true(c:set("never", "v", 0))
      _, ttl = meta(A, prefix .. "never")
      assert.equal(-1, ttl)
      assert.is_true(c:add("huge", "v", 1e12)) -- clamped to the 32-bit field
      assert.equal("v", c:get("huge"))
    end)

    it("a negative timeout deletes (set) or only checks (add)", function()
      local c = new()
      c:set("k", 1)
      assert.is_true(c:set("k", 2, -1))
      assert.is_nil(c:get("k"))
      c:set("k", 1)
      assert.is_false(c:add("k", 2, -1))
      assert.equal(1, c:get("k"))
      assert.is_true(c:add("fresh", 2, -1))
      assert.is_false(c:has("fresh"))
      local ok, keys = c:set_many({ a = 1, b = 2 }, -5)
      assert.is_true(ok)
      assert.equal(2, #keys)
      assert.is_nil(c:get("a"))
    end)

    it("inc keeps the entry's expiry; a new key gets default_timeout", function()
      local c, prefix = new { default_timeout = 100 }
      c:set("n", 1, 1000)
      assert.equal(2, c:inc("n"))
      local _, ttl = meta(A, prefix .. "n")
      assert.is_true(ttl > 900, "ttl " .. tostring(ttl))
      assert.equal(1, c:inc("m"))
      _, ttl = meta(A, prefix .. "m")
      assert.is_true(ttl <= 100 and ttl > 90, "ttl " .. tostring(ttl))
    end)
  end)

  describe("the stored form", function()
    it("stores integers as decimal text with flag 2 (negatives as 2^64 - n), others as MessagePack with flag 256", function()
      local c, prefix = new()
      c:set("i", 42)
      local flags, _, v = meta(A, prefix .. "i")
      assert.equal(2, flags)
      assert.equal("42", v)
      c:set("neg", -7)
      flags, _, v = meta(A, prefix .. "neg")
      assert.equal(2, flags)
      assert.equal("18446744073709551609", v)
      c:set("s", "str")
      flags = meta(A, prefix .. "s")
      assert.equal(256, flags)
      -- memcached's own incr/decr on them, from another client:
      assert.matches("^52", raw(A, ("incr %si 10\r\n"):format(prefix)))
      assert.equal(52, c:get("i"))
      assert.matches("^2\n", raw(A, ("decr %si 50\r\n"):format(prefix)))
      assert.equal(2, c:get("i"))
      raw(A, ("incr %sneg 3\r\n"):format(prefix))
      assert.equal(-4, c:get("neg"))
    end)

    it("inc/dec are atomic on the server, exact across zero and the int64 range", function()
      local c = new()
      assert.equal(5, c:inc("n", 5))
      assert.equal(-5, c:dec("n", 10))
      assert.equal(0, c:inc("n", 5))
      assert.equal(-3, c:dec("m", 3))
      assert.equal(-1, c:inc("m", 2))
      if not math.maxinteger then return end -- LuaJIT: no 64-bit integers
      c:set("big", math.maxinteger - 1)
      assert.equal(math.maxinteger, c:inc("big"))
      local v, err = c:inc("big")
      assert.is_nil(v)
      assert.matches("overflow", err)
      assert.equal(math.maxinteger, c:get("big"))
      c:set("small", math.mininteger + 1)
      assert.equal(math.mininteger, c:dec("small"))
      v, err = c:dec("small")
      assert.is_nil(v)
      assert.is_string(err)
      assert.equal(math.mininteger, c:get("small"))
    end)

    -- memcached before 1.6.22 looks for a '-' past the end of a value of
    -- 2^63 or more (a negative integer here) and may then refuse to
    -- increment it: after values full of '-' were freed, the chunks reused
    -- for counters hold '-' behind their text, and every such incr is
    -- refused. An overflow must leave the stored value as it was all the same.
    it("an overflowing inc/dec leaves the value as it was, over many tries on a pool of two", function()
      if not math.maxinteger then return end -- LuaJIT: no 64-bit integers
      local s1, s2 = start_own(), start_own()
      local c = cache.MemcachedCache { servers = { s1.addr, s2.addr }, key_prefix = helpers.unique("ovf") }
      local n = 200
      for i = 1, n do assert.is_true(c:set("p" .. i, ("-"):rep(16 + i % 40))) end
      for i = 1, n do assert.is_true(c:delete("p" .. i)) end
      local wrapped = {}
      local function check(k, want, v, err)
        if v ~= nil or err ~= "integer overflow" or c:get(k) ~= want then
          wrapped[#wrapped + 1] = ("%s: %s, %s, then %s"):format(k, tostring(v), tostring(err),
            tostring(c:get(k)))
        end
      end
      for i = 1, n do
        local k = "n" .. i
        assert.is_true(c:set(k, math.maxinteger))
        check(k, math.maxinteger, c:inc(k, 1))
        check(k, math.maxinteger, c:dec(k, -math.maxinteger))
        assert.is_true(c:set(k, math.mininteger))
        check(k, math.mininteger, c:dec(k, 1))
        check(k, math.mininteger, c:inc(k, math.mininteger))
      end
      assert.equal(0, #wrapped, ("%d wrong, the first %s"):format(#wrapped, wrapped[1]))
      stop_own(s1)
      stop_own(s2)
    end)

    it("loses no increment between concurrent clients", function()
      local prefix = helpers.unique("conc")
      local script = os.tmpname()
      local fh = assert(io.open(script, "w"))
      fh:write(([[
        local cache = require "cache"
        local c = cache.MemcachedCache { servers = { %q, %q }, key_prefix = %q }
        for i = 1, 200 do
          assert(c:inc("counter"))
          assert(c:dec("down"))
        end
      ]]):format(A, B, prefix))
      fh:close()
      local lua = helpers.sh(type(jit) == "table" and "command -v luajit" or "command -v lua5.4")
      local cmd = ("for i in 1 2 3 4; do %s %s & done; wait"):format(lua, script)
      assert(ok_exec(cmd))
      os.remove(script)
      local c = cache.MemcachedCache { servers = { A, B }, key_prefix = prefix }
      assert.equal(800, c:get("counter"))
      assert.equal(-800, c:get("down"))
    end)

    it("reads a corrupt entry under the codec flag as a miss, in get and get_many", function()
      -- server bytes under the codec flag: mc_decode's check (the one check
      -- of these bytes: the backend says values_checked) makes them a miss
      local c, prefix = new()
      raw(A, ("set %scbad 256 0 2\r\n\193\193\r\n"):format(prefix))
      raw(A, ("set %sctrunc 256 0 3\r\n\165ab\r\n"):format(prefix))
      assert.is_true(c:set("good", { 1 }))
      assert.is_nil(c:get("cbad"))
      assert.is_nil(c:get("ctrunc"))
      local a, b, g = c:get_many("cbad", "ctrunc", "good")
      assert.is_nil(a)
      assert.is_nil(b)
      assert.same({ 1 }, g)
    end)

    it("reads foreign values: decimal as integer, '!' + MessagePack, anything else as a string", function()
      local c, prefix = new()
      raw(A, ("set %sfi 0 0 3\r\n123\r\n"):format(prefix))
      raw(A, ("set %sfs 0 0 5\r\nhello\r\n"):format(prefix))
      raw(A, ("set %sfe 0 0 0\r\n\r\n"):format(prefix))
      raw(A, ("set %sfn 2 0 2\r\n-5\r\n"):format(prefix)) -- pylibmc's negative int
      local packed = "!" .. cache.encode({ a = 1 })
      raw(A, ("set %sfm 0 0 %d\r\n%s\r\n"):format(prefix, #packed, packed))
      raw(A, ("set %sfbad 0 0 2\r\n!\193\r\n"):format(prefix))
      assert.equal(123, c:get("fi"))
      assert.equal("hello", c:get("fs"))
      assert.equal("", c:get("fe"))
      assert.equal(-5, c:get("fn"))
      assert.same({ a = 1 }, c:get("fm"))
      assert.is_nil(c:get("fbad")) -- marker, corrupt bytes: unreadable, a miss
      assert.equal(124, c:inc("fi"))
      assert.equal(-4, c:inc("fn")) -- memcached cannot incr "-5": rewritten by CAS
      assert.equal(-6, c:dec("fn", 2))
      local v, err = c:inc("fs")
      assert.is_nil(v)
      assert.matches("not an integer", err)
      assert.equal("hello", c:get("fs"))
      assert.equal(2, c:inc(("k"):rep(300), 2)) -- still a sound connection
    end)
  end)

  describe("SASLMemcachedCache", function()
    if not SASL then
      it("runs", function() pending("SASL memcached not started") end)
      return
    end

    it("authenticates and works", function()
      local c = cache.SASLMemcachedCache { servers = SASL, username = USER, password = PASS,
                                           key_prefix = helpers.unique("sasl") }
      assert.is_true(c:set("k", "v"))
      assert.equal("v", c:get("k"))
      assert.equal(1, c:inc("n"))
      assert.equal(-2, c:dec("n", 3))
    end)

    -- Every operation with a wrong password, and without credentials at all:
    -- false/nil and an error, quickly, and above all no abort (libmemcached
    -- aborts in incr/decr on an unauthenticated connection; this process
    -- would die here if a path were unguarded).
    local function every_op(c, expect_get_error)
      local t0 = now()
      local results = {}
      local function rec(name, ...) results[name] = helpers.pack(...) end
      rec("set", c:set("k", "v"))
      rec("add", c:add("k2", "v"))
      rec("get", c:get("k"))
      rec("delete", c:delete("k"))
      rec("has", c:has("k"))
      rec("inc", c:inc("n"))
      rec("dec", c:dec("n"))
      rec("get_many", c:get_many("a", "b", "c"))
      rec("get_dict", c:get_dict("a", "b", "c"))
      rec("set_many", c:set_many { a = 1, b = 2, c = 3 })
      rec("delete_many", c:delete_many("a", "b", "c"))
      rec("clear", c:clear())
      local elapsed = now() - t0
      assert.is_true(elapsed < 10, "took " .. elapsed)
      for _, name in ipairs { "set", "add", "delete", "has" } do
        assert.is_false(results[name][1], name)
        assert.matches("memcached", results[name][2], name)
      end
      for _, name in ipairs { "inc", "dec" } do
        assert.is_nil(results[name][1], name)
        assert.matches("memcached", results[name][2], name)
      end
      assert.is_false(results.set_many[1])
      assert.same({}, results.set_many[2])
      assert.matches("memcached", results.set_many[3])
      assert.is_false(results.delete_many[1])
      assert.same({}, results.delete_many[2])
      if expect_get_error then
        assert.is_nil(results.get[1])
        assert.matches("memcached", results.get[2])
        assert.equal(4, results.get_many.n)
        assert.matches("memcached", results.get_many[4])
        assert.is_nil(results.get_dict[1])
        assert.matches("memcached", results.get_dict[2])
        assert.is_false(results.clear[1])
        assert.matches("memcached", results.delete_many[3])
      else
        assert.is_nil(results.get[1])
      end
      return results
    end

    it("a wrong password fails every operation with an error, never a hang or an abort", function()
      local c = cache.SASLMemcachedCache { servers = SASL, username = USER, password = "wrong",
                                           key_prefix = helpers.unique("bad") }
      local r = every_op(c, true)
      assert.matches("authentication", r.set[2])
      -- and again, while the server is disabled for a second, then after
      every_op(c, true)
      helpers.sleep(1.2)
      every_op(c, true)
    end)

    it("a wrong password fails each operation as the first call of a new object too", function()
      local ops = {
        get = function(c) return c:get("k") end, set = function(c) return c:set("k", 1) end,
        add = function(c) return c:add("k", 1) end, delete = function(c) return c:delete("k") end,
        has = function(c) return c:has("k") end, inc = function(c) return c:inc("k") end,
        dec = function(c) return c:dec("k") end,
        get_many = function(c) return select(3, c:get_many("a", "b")) end,
        get_dict = function(c) return c:get_dict("a", "b") end,
        set_many = function(c) return select(2, c:set_many { a = 1, b = 2 }) end,
        delete_many = function(c) return select(2, c:delete_many("a", "b", "c")) end,
        clear = function(c) return c:clear() end,
      }
      for _, ctor in ipairs { "SASLMemcachedCache", "SpreadSASLMemcachedCache" } do
        for name, op in pairs(ops) do
          local c = cache[ctor] { servers = SASL, username = USER, password = "wrong",
                                  key_prefix = helpers.unique("first") }
          local v, err = op(c)
          if name == "get_many" then v, err = nil, v end
          if name == "set_many" or name == "delete_many" then v, err = false, err end
          assert.is_true(v == nil or v == false, ctor .. " " .. name)
          assert.matches("^memcached 127%.0%.0%.1:%d+: ", err, ctor .. " " .. name)
        end
      end
    end)

    it("an unknown user fails the same way", function()
      local c = cache.SpreadSASLMemcachedCache { servers = SASL, username = "nobody", password = "x",
                                                 key_prefix = helpers.unique("bad") }
      every_op(c, true)
    end)

    it("no credentials against a SASL server: errors, and no abort in inc/dec", function()
      -- libmemcached reports an unauthenticated get as NOT FOUND (a miss),
      -- the writes as "authentication failure".
      local c = cache.MemcachedCache { servers = SASL, key_prefix = helpers.unique("anon") }
      local r = every_op(c, false)
      assert.matches("authentication", r.inc[2])
      local s = cache.SpreadSASLMemcachedCache { servers = SASL, key_prefix = helpers.unique("anon") }
      every_op(s, false)
    end)

    it("gives the reason when the server is disabled after a failed login", function()
      local c = cache.SASLMemcachedCache { servers = SASL, username = USER, password = "wrong",
                                           key_prefix = helpers.unique("bad") }
      local _, err1 = c:set("k", 1)
      local _, err2 = c:set("k", 1)
      assert.matches("authentication failure", err1)
      assert.matches("authentication failure", err2)
    end)
  end)

  describe("SpreadSASLMemcachedCache", function()
    if not SASL then
      it("runs", function() pending("SASL memcached not started") end)
      return
    end
    local function spread(opts)
      local o = { servers = SASL, username = USER, password = PASS,
                  key_prefix = helpers.unique("spr"), chunksize = 1048576 }
      for k, v in pairs(opts or {}) do o[k] = v end
      local raw_view = cache.SASLMemcachedCache { servers = SASL, username = USER,
                                                  password = PASS, key_prefix = o.key_prefix }
      return cache.SpreadSASLMemcachedCache(o), raw_view
    end

    local function blob(n)
      local parts, seed = {}, 7
      for i = 1, math.floor(n / 1024) do
        seed = (seed * 1103515245 + 12345) % 2147483648
        parts[i] = string.char(seed % 256, math.floor(seed / 256) % 256) .. ("%08d"):format(i) .. ("."):rep(1014)
      end
      return table.concat(parts) .. ("z"):rep(n % 1024)
    end

    it("round-trips a 3 MB value in 1 MB chunks, under <key>.0 .. <key>.3", function()
      local c, view = spread()
      local v = blob(3 * 1048576 + 100)
      assert.is_true(c:set("big", v))
      local got = c:get("big")
      assert.equal(#v, #got)
      assert.is_true(got == v)
      for i = 0, 3 do assert.is_true(view:has("big." .. i), "chunk " .. i) end
      assert.is_false(view:has("big.4"))
      assert.is_true(c:has("big"))
      -- tables too, and get_many mixing chunked and small values
      local t = { data = v, n = 1 }
      assert.is_true(c:set("tbl", t))
      c:set("small", "s")
      local a, b, s, m = c:get_many("big", "tbl", "small", "missing")
      assert.is_true(a == v)
      assert.is_true(b.data == v)
      assert.equal("s", s)
      assert.is_nil(m)
    end)

    it("a missing chunk, or one that is not a piece of this value, is a miss", function()
      local c, view = spread()
      local v = blob(2 * 1048576 + 10)
      c:set("k", v)
      assert.is_true(view:delete("k.1"))
      assert.is_nil(c:get("k"))
      assert.is_nil((c:get_many("k")))
      c:set("k", v)
      assert.is_true(view:set("k.2", "not a piece"))
      assert.is_nil(c:get("k"))
      -- leftovers of a bigger, older value are ignored
      c:set("k", v)
      local smaller = blob(1048576 + 5)
      c:set("k", smaller)
      assert.is_true(view:has("k.2"))
      assert.is_true(c:get("k") == smaller)
    end)

    it("delete removes every chunk", function()
      local c, view = spread()
      c:set("k", blob(3 * 1048576))
      assert.is_true(c:delete("k"))
      for i = 0, 3 do assert.is_false(view:has("k." .. i), "chunk " .. i) end
      assert.is_false(c:delete("k"))
      c:set("a", blob(1048577))
      c:set("b", 1)
      local all, keys = c:delete_many("a", "b", "nope")
      assert.is_false(all)
      table.sort(keys)
      assert.same({ "a", "b" }, keys)
      for i = 0, 1 do assert.is_false(view:has("a." .. i)) end
    end)

    it("a value too large for maxchunk chunks gives false and an error", function()
      local c = spread { chunksize = 1000, maxchunk = 3 }
      local ok, err = c:set("k", ("x"):rep(5000))
      assert.is_false(ok)
      assert.matches("maxchunk", err)
      assert.is_nil(c:get("k"))
      ok = c:set("fits", ("x"):rep(2900))
      assert.is_true(ok)
      assert.equal(2900, #c:get("fits"))
      local all, keys = c:set_many { big = ("x"):rep(5000), small = "s" }
      assert.is_false(all)
      assert.same({ "small" }, keys)
    end)

    it("small values are one item, integers count on the server", function()
      local c, view = spread()
      c:set("n", 10)
      assert.equal(10, view:get("n.0"))
      assert.equal(11, c:inc("n"))
      assert.equal(-4, c:dec("new", 4))
      c:set("big", blob(1048577))
      local v, err = c:inc("big")
      assert.is_nil(v)
      assert.matches("not an integer", err)
    end)

    it("add on a chunked value: the head decides", function()
      local c = spread()
      local v = blob(1048576 * 2)
      assert.is_true(c:add("k", v))
      assert.is_false(c:add("k", "other"))
      assert.is_true(c:get("k") == v)
    end)
  end)

  -- Every libmemcached handle of one object (the first, the batch-delete
  -- handle, the one a forked child makes) must place a key on the same
  -- server, or a key written through one is missed by another. The fork
  -- case is spec/c/test_memcached.c (server_pool_fork).
  describe("one key distribution on every handle", function()
    local function keys20()
      local keys = {}
      for i = 1, 20 do keys[i] = "k" .. i end
      return keys
    end

    -- Stores 20 keys through c, runs drop(c, keys), then counts the keys a
    -- fresh object on the same servers still reads.
    local function survivors(ctor, opts, drop)
      local c = cache[ctor](opts)
      local keys = keys20()
      for i, k in ipairs(keys) do assert.is_true(c:set(k, i), k) end
      drop(c, keys)
      local fresh = cache[ctor](opts)
      local left = {}
      for _, k in ipairs(keys) do
        if fresh:get(k) ~= nil then left[#left + 1] = k end
      end
      return left
    end

    local function delete_all(c, keys)
      local all, deleted = c:delete_many(unpack(keys))
      assert.is_true(all)
      assert.equal(#keys, #deleted)
    end

    local function expire_all(c, keys)
      local map = {}
      for _, k in ipairs(keys) do map[k] = "x" end
      local all, set = c:set_many(map, -1)
      assert.is_true(all)
      assert.equal(#keys, #set)
    end

    it("MemcachedCache: delete_many of 20 keys leaves none readable", function()
      local opts = { servers = { A, B }, key_prefix = helpers.unique("dist") }
      assert.same({}, survivors("MemcachedCache", opts, delete_all))
    end)

    it("MemcachedCache: set_many with a negative timeout leaves none readable", function()
      local opts = { servers = { A, B }, key_prefix = helpers.unique("dist") }
      assert.same({}, survivors("MemcachedCache", opts, expire_all))
    end)

    it("SASL and Spread pools of two: delete_many and set_many(-1) leave none readable", function()
      local s1, s2 = start_own(nil, { sasl = true }), start_own(nil, { sasl = true })
      local conf = sasl_conf()
      for _, ctor in ipairs { "SASLMemcachedCache", "SpreadSASLMemcachedCache" } do
        for _, drop in ipairs { delete_all, expire_all } do
          local opts = { servers = { s1.addr, s2.addr }, username = conf.user,
                         password = conf.pass, key_prefix = helpers.unique("sdist") }
          assert.same({}, survivors(ctor, opts, drop), ctor)
        end
      end
      stop_own(s1)
      stop_own(s2)
    end)
  end)
end)
