-- TLS and ACL users on the Redis family, against the TLS-only servers of
-- spec/servers/redis_tls.sh and spec/servers/redis_tls_cluster.sh:
-- rediss:// and ssl = true on RedisCache, RedisSentinelCache (sentinels and
-- data nodes over TLS) and RedisClusterCache; a wrong CA, a name mismatch,
-- an expired certificate and plain text on the TLS port each give nil, err
-- naming the cause, within the timeouts; an ACL user limited to one key
-- prefix works on all three and is refused outside it.
local helpers = require "support.helpers"
local R = require "support.redis_helpers"

local CERTS = os.getenv("CACHE_TEST_TLS_CERTS")
local PORT = tonumber(os.getenv("CACHE_TEST_TLS_PORT") or "")
local MTLS_PORT = tonumber(os.getenv("CACHE_TEST_TLS_MTLS_PORT") or "")
local EXPIRED_PORT = tonumber(os.getenv("CACHE_TEST_TLS_EXPIRED_PORT") or "")
local OTHER_PORT = tonumber(os.getenv("CACHE_TEST_TLS_OTHER_PORT") or "")
local ACL_USER = os.getenv("CACHE_TEST_TLS_ACL_USER")
local ACL_PASSWORD = os.getenv("CACHE_TEST_TLS_ACL_PASSWORD")
local ACL_PREFIX = os.getenv("CACHE_TEST_TLS_ACL_PREFIX")
local SENTINEL = os.getenv("CACHE_TEST_TLS_SENTINEL")
local SENTINEL_MASTER = os.getenv("CACHE_TEST_TLS_SENTINEL_MASTER")
local SENTINEL_USER = os.getenv("CACHE_TEST_TLS_SENTINEL_USER")
local SENTINEL_PASSWORD = os.getenv("CACHE_TEST_TLS_SENTINEL_PASSWORD")
local CLUSTER = os.getenv("CACHE_TEST_TLS_CLUSTER")
local CLUSTER_CERTS = os.getenv("CACHE_TEST_TLS_CLUSTER_CERTS")
local PLAIN_PORT = tonumber(os.getenv("CACHE_TEST_REDIS_PORT") or "")

local unpack = table.unpack or unpack

local function pct(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- A failed call: nil / false and an error that names what it must, within
-- limit seconds (generous: the machine is shared).
local function fails_with(limit, fn, ...)
  local t0 = R.now()
  local v, err = fn()
  local took = R.now() - t0
  assert.is_falsy(v)
  assert.is_string(err)
  for _, want in ipairs { ... } do assert.matches(want, err, 1, true) end
  assert.is_true(took < limit, ("took %.2f s (limit %g): %s"):format(took, limit, err))
  return err
end

describe("RedisCache over TLS", function()
  if not PORT then
    it("runs", function() pending("TLS redis not started (spec/servers/redis_tls.sh)") end)
    return
  end
  local cache = require "cache"
  local CA = CERTS .. "/ca.crt"

  local function new(opts)
    local o = { host = "127.0.0.1", port = PORT, ssl = true, ssl_ca_certs = CA,
                key_prefix = helpers.unique("tls"), timeout = 5 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.RedisCache(o)
  end

  it("stores and reads with ssl = true, checking the certificate and its IP or name", function()
    local c = new()
    assert.is_true(c:set("k", { 1, "two", 3.5 }))
    assert.same({ 1, "two", 3.5 }, c:get("k"))
    assert.equal(7, c:inc("n", 7))
    local d = new { host = "localhost" } -- the DNS name in the certificate
    assert.is_true(d:set("k", "v"))
    assert.equal("v", d:get("k"))
    assert.is_true(c:clear())
    assert.is_true(d:clear())
  end)

  it("moves values larger than a TLS record both ways (get_many, set_many)", function()
    local c = new()
    local big = ("0123456789abcdef"):rep(64 * 1024) -- 1 MiB, 64 records
    assert.is_true(c:set("big", big))
    assert.equal(big, c:get("big"))
    local m = {}
    for i = 1, 50 do m["k" .. i] = ("x"):rep(i * 1000) end
    assert.is_true(c:set_many(m))
    local got = c:get_dict("k1", "k25", "k50")
    assert.equal(m.k25, got.k25)
    assert.equal(m.k50, got.k50)
    assert.is_true(c:clear())
  end)

  it("takes rediss:// in url (ssl options alongside, or in the query)", function()
    local prefix = helpers.unique("tlsurl")
    local a = cache.RedisCache { url = ("rediss://127.0.0.1:%d/0"):format(PORT), ssl_ca_certs = CA,
                                 key_prefix = prefix }
    assert.is_true(a:set("k", 1))
    local b = cache.RedisCache { url = ("rediss://localhost:%d?ssl_ca_certs=%s&ssl_check_hostname=true")
                                   :format(PORT, pct(CA)), key_prefix = prefix }
    assert.equal(1, b:get("k"))
    -- ssl_cert_reqs=none in the query: no verification, asked for
    local n = cache.RedisCache { url = ("rediss://127.0.0.1:%d?ssl_cert_reqs=none"):format(EXPIRED_PORT),
                                 key_prefix = prefix }
    assert.is_true(n:set("k", 2))
    assert.is_true(a:clear())
    assert.is_true(n:clear())
  end)

  it("takes CACHE_REDIS_URL = rediss://... in cache.new, and CACHE_REDIS_USERNAME", function()
    local c = cache.new { CACHE_TYPE = "redis", CACHE_REDIS_URL = ("rediss://127.0.0.1:%d"):format(PORT),
                          CACHE_OPTIONS = { ssl_ca_certs = CA }, CACHE_KEY_PREFIX = helpers.unique("tlsnew") }
    assert.is_true(c:set("k", "v"))
    assert.equal("v", c:get("k"))
    assert.is_true(c:clear())
    local u = cache.new { CACHE_TYPE = "redis", CACHE_REDIS_HOST = "127.0.0.1", CACHE_REDIS_PORT = PORT,
                          CACHE_REDIS_USERNAME = ACL_USER, CACHE_REDIS_PASSWORD = ACL_PASSWORD,
                          CACHE_OPTIONS = { ssl = true, ssl_ca_certs = CA }, CACHE_KEY_PREFIX = ACL_PREFIX .. "new:" }
    assert.is_true(u:set("k", 1))
    assert.is_true(u:clear())
  end)

  it("presents a client certificate (ssl_certfile, ssl_keyfile) where the server asks for one", function()
    local c = new { port = MTLS_PORT, ssl_certfile = CERTS .. "/client.crt",
                    ssl_keyfile = CERTS .. "/client.key" }
    assert.is_true(c:set("k", 1))
    assert.equal(1, c:get("k"))
    assert.is_true(c:clear())
    -- without one the server ends the handshake
    fails_with(4, function() return new({ port = MTLS_PORT, connect_timeout = 1, timeout = 1 }):get("k") end,
      "redis 127.0.0.1:" .. MTLS_PORT)
  end)

  it("refuses a server whose certificate another CA signed", function()
    local c = new { ssl_ca_certs = CERTS .. "/other-ca.crt", connect_timeout = 1, timeout = 1 }
    -- (the server sends its CA along, so OpenSSL names an untrusted self-signed root)
    fails_with(4, function() return c:get("k") end, "certificate verify failed", "certificate in certificate chain")
    fails_with(4, function() return c:set("k", 1) end, "certificate verify failed")
  end)

  it("refuses a certificate for another name (hostname or IP address mismatch)", function()
    local by_name = new { host = "localhost", port = OTHER_PORT, connect_timeout = 1, timeout = 1 }
    fails_with(4, function() return by_name:get("k") end, "certificate verify failed", "hostname mismatch")
    local by_ip = new { port = OTHER_PORT, connect_timeout = 1, timeout = 1 }
    fails_with(4, function() return by_ip:get("k") end, "certificate verify failed", "IP address mismatch")
    -- signed by the CA, so with the name check off it is accepted
    local unchecked = new { port = OTHER_PORT, ssl_check_hostname = false }
    assert.is_true(unchecked:set("k", 1))
    assert.is_true(unchecked:clear())
  end)

  it("refuses an expired certificate", function()
    local c = new { port = EXPIRED_PORT, connect_timeout = 1, timeout = 1 }
    fails_with(4, function() return c:get("k") end, "certificate verify failed", "expired")
  end)

  it("verifies against the system's CAs when no ssl_ca_certs is given", function()
    local c = cache.RedisCache { host = "127.0.0.1", port = PORT, ssl = true, connect_timeout = 1, timeout = 1 }
    fails_with(4, function() return c:get("k") end, "certificate verify failed")
  end)

  it("skips verification only when ssl_cert_reqs = 'none' is asked for", function()
    for _, port in ipairs { EXPIRED_PORT, OTHER_PORT } do
      local c = new { port = port, ssl_ca_certs = CERTS .. "/other-ca.crt", ssl_cert_reqs = "none" }
      assert.is_true(c:set("k", port))
      assert.equal(port, c:get("k"))
      assert.is_true(c:clear())
    end
  end)

  it("never falls back to plain text: a plain client on the TLS port fails fast", function()
    local c = cache.RedisCache { host = "127.0.0.1", port = PORT, connect_timeout = 1, timeout = 1 }
    fails_with(4, function() return c:get("k") end, "redis 127.0.0.1:" .. PORT)
    fails_with(4, function() return c:set("k", 1) end, "redis 127.0.0.1:" .. PORT)
  end)

  it("gives up on a server that does not speak TLS within connect_timeout", function()
    if not PLAIN_PORT then return pending("no plain redis (spec/servers/redis.sh)") end
    local c = new { port = PLAIN_PORT, connect_timeout = 0.5, timeout = 1 }
    fails_with(3, function() return c:get("k") end, "TLS handshake", "timed out")
  end)

  it("reconnects after the server drops the connection, without SIGPIPE", function()
    local c = new()
    assert.is_true(c:set("k", 1))
    local function kill_clients() -- every connection but redis-cli's own
      R.cli_raw(("-h 127.0.0.1 -p %d --tls --cacert %s CLIENT KILL TYPE normal SKIPME yes"):format(PORT, R.q(CA)))
    end
    kill_clients()
    assert.equal(1, c:get("k"))
    -- a big write into a closed connection: EPIPE / reset, never a signal
    -- that would end this process; the request goes again on a new one
    kill_clients()
    local big = ("x"):rep(8 * 1024 * 1024)
    assert.is_true(c:set("big", big))
    assert.equal(#big, #c:get("big"))
    assert.is_true(c:clear())
  end)

  it("rejects bad TLS options, naming them", function()
    local function raises(opts, want)
      local ok, err = pcall(cache.RedisCache, opts)
      assert.is_false(ok, want)
      assert.matches(want, err, 1, true)
    end
    raises({ ssl = "yes" }, "ssl")
    raises({ ssl = true, ssl_cert_reqs = "maybe" }, "ssl_cert_reqs")
    raises({ ssl = true, ssl_check_hostname = 1 }, "ssl_check_hostname")
    raises({ ssl = true, ssl_ca_certs = CERTS .. "/missing.crt" }, "ssl_ca_certs")
    raises({ ssl = true, ssl_certfile = CERTS .. "/missing.crt" }, "ssl_certfile")
    raises({ ssl = true, ssl_certfile = CERTS .. "/client.crt", ssl_keyfile = CERTS .. "/server.key" },
      "ssl_keyfile")
    raises({ ssl = true, ssl_keyfile = CERTS .. "/client.key" }, "ssl_keyfile")
    raises({ ssl = true, ssl_certfile = CERTS .. "/client.crt" }, "no private key")
    raises({ ssl = true, ssl_cert_reqs = "none", ssl_check_hostname = true }, "ssl_check_hostname")
    -- TLS files without TLS would silently mean plain text
    raises({ ssl_ca_certs = CA }, "ssl_ca_certs")
    raises({ url = "redis://h", ssl_cert_reqs = "none" }, "ssl_cert_reqs")
    raises({ ssl = true, unix_socket = "/tmp/x.sock" }, "unix_socket")
    raises({ url = "rediss://h?ssl_cert_reqs=maybe" }, "ssl_cert_reqs")
    raises({ url = "rediss://h?ssl_check_hostname=perhaps" }, "ssl_check_hostname")
  end)

  describe("ACL user", function()
    it("works inside its key prefix and is refused outside it", function()
      local c = new { username = ACL_USER, password = ACL_PASSWORD, key_prefix = ACL_PREFIX .. "single:" }
      assert.is_true(c:set("k", "v"))
      assert.equal("v", c:get("k"))
      assert.equal(2, c:inc("n", 2))
      assert.is_true(c:clear())
      local out = new { username = ACL_USER, password = ACL_PASSWORD, key_prefix = "elsewhere:" }
      fails_with(4, function() return out:set("k", "v") end, "NOPERM")
      fails_with(4, function() return out:get("k") end, "NOPERM")
    end)

    it("takes the user from a rediss:// URL", function()
      local c = cache.RedisCache { url = ("rediss://%s:%s@127.0.0.1:%d"):format(pct(ACL_USER), pct(ACL_PASSWORD), PORT),
                                   ssl_ca_certs = CA, key_prefix = ACL_PREFIX .. "url:" }
      assert.is_true(c:set("k", 1))
      assert.is_true(c:clear())
    end)

    it("logs in as a user without a password (AUTH user \"\")", function()
      local c = new { username = "nopw", key_prefix = "nopw:" }
      assert.is_true(c:set("k", 1))
      assert.is_true(c:clear())
      -- refused outside its keys: proof the session is that user's, not default's
      local out = new { username = "nopw", key_prefix = "elsewhere:" }
      fails_with(4, function() return out:set("k", 1) end, "NOPERM")
    end)

    it("fails cleanly with a wrong password", function()
      local c = new { username = ACL_USER, password = "wrong", key_prefix = ACL_PREFIX }
      fails_with(4, function() return c:get("k") end, "AUTH failed")
    end)
  end)
end)

describe("RedisSentinelCache over TLS", function()
  if not SENTINEL then
    it("runs", function() pending("TLS sentinel not started (spec/servers/redis_tls.sh)") end)
    return
  end
  local cache = require "cache"
  local CA = CERTS .. "/ca.crt"

  -- opts override the defaults; drop lists defaults to leave out
  local function new(opts, drop)
    local o = { sentinels = SENTINEL, master = SENTINEL_MASTER, ssl = true, sentinel_ssl = true,
                ssl_ca_certs = CA, sentinel_username = SENTINEL_USER,
                sentinel_password = SENTINEL_PASSWORD, username = ACL_USER, password = ACL_PASSWORD,
                key_prefix = ACL_PREFIX .. helpers.unique("sentinel"), timeout = 5 }
    for k, v in pairs(opts or {}) do o[k] = v end
    for _, k in ipairs(drop or {}) do o[k] = nil end
    return cache.RedisSentinelCache(o)
  end

  it("asks the sentinels over TLS as their ACL user, then uses the master over TLS", function()
    local c = new()
    assert.is_true(c:set("k", { a = 1 }))
    assert.same({ a = 1 }, c:get("k"))
    assert.equal(3, c:inc("n", 3))
    assert.is_true(c:clear())
  end)

  it("lets the data nodes' ACL user only inside its prefix", function()
    local c = new { key_prefix = "elsewhere:" }
    fails_with(4, function() return c:set("k", 1) end, "NOPERM")
  end)

  it("fails without the sentinels' user, or in plain text to them", function()
    fails_with(4, function() return new(nil, { "sentinel_username", "sentinel_password" }):get("k") end,
      "NOAUTH")
    fails_with(4, function()
      return new({ sentinel_ssl = false, connect_timeout = 1, timeout = 1 }):get("k")
    end, "no sentinel gave the address")
  end)

  it("fails in plain text to the master, and with a wrong CA", function()
    fails_with(4, function() return new({ ssl = false, connect_timeout = 1, timeout = 1 }):get("k") end,
      "redis master 127.0.0.1:") -- ssl_* still serve the sentinels
    fails_with(4, function()
      return new({ ssl_ca_certs = CERTS .. "/other-ca.crt", connect_timeout = 1, timeout = 1 }):get("k")
    end, "certificate verify failed")
  end)
end)

describe("RedisClusterCache over TLS", function()
  if not CLUSTER then
    it("runs", function() pending("TLS cluster not started (spec/servers/redis_tls_cluster.sh)") end)
    return
  end
  local cache = require "cache"

  local function new(opts, plain)
    local o = { cluster = CLUSTER, ssl = true, ssl_ca_certs = CLUSTER_CERTS .. "/ca.crt",
                key_prefix = helpers.unique("tlscl"), timeout = 5 }
    if plain then o.ssl, o.ssl_ca_certs = nil, nil end
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.RedisClusterCache(o)
  end

  it("uses TLS to every node: keys on all three masters, batches and clear", function()
    local c = new()
    local m, keys = {}, {}
    for i = 1, 60 do
      m["k" .. i] = i
      keys[i] = "k" .. i
    end
    assert.is_true(c:set_many(m))
    local got = { c:get_many(unpack(keys)) }
    for i = 1, 60 do assert.equal(i, got[i]) end
    assert.is_true(c:set("one", "v"))
    assert.equal("v", c:get("one"))
    assert.is_true(c:clear())
    assert.is_nil(c:get("k1"))
  end)

  it("lets the ACL user only inside its prefix, on every node", function()
    local c = new { username = ACL_USER, password = ACL_PASSWORD, key_prefix = ACL_PREFIX .. "cl:" }
    for i = 1, 30 do assert.is_true(c:set("k" .. i, i)) end
    assert.equal(30, c:get("k30"))
    assert.is_true(c:clear())
    local out = new { username = ACL_USER, password = ACL_PASSWORD, key_prefix = "elsewhere:" }
    fails_with(4, function() return out:set("k", 1) end, "NOPERM")
  end)

  it("fails fast in plain text, or with a wrong CA", function()
    fails_with(6, function()
      return new({ connect_timeout = 1, timeout = 1 }, true):get("k")
    end, "cannot read the slot map")
    -- the standalone servers' CA signed none of the cluster's certificates
    if not CERTS then return end
    fails_with(6, function()
      return new({ ssl_ca_certs = CERTS .. "/ca.crt", connect_timeout = 1, timeout = 1 }):get("k")
    end, "certificate verify failed")
  end)
end)

describe("cache.new's ACL keys", function()
  it("CACHE_REDIS_USERNAME reaches all three backends, CACHE_REDIS_SENTINEL_USERNAME the sentinels", function()
    local config = require "cache.config"
    local _, _, o = config.resolve { CACHE_TYPE = "redis", CACHE_REDIS_USERNAME = "u", CACHE_REDIS_PASSWORD = "p" }
    assert.equal("u", o.username)
    _, _, o = config.resolve { CACHE_TYPE = "redissentinel", CACHE_REDIS_USERNAME = "u",
                               CACHE_REDIS_SENTINEL_USERNAME = "su", CACHE_REDIS_SENTINEL_PASSWORD = "sp" }
    assert.equal("u", o.username)
    assert.equal("su", o.sentinel_username)
    assert.equal("sp", o.sentinel_password)
    _, _, o = config.resolve { CACHE_TYPE = "rediscluster", CACHE_REDIS_CLUSTER = "h:1", CACHE_REDIS_USERNAME = "u" }
    assert.equal("u", o.username)
    local ok, err = pcall(config.resolve, { CACHE_TYPE = "redis", CACHE_REDIS_USERNAME = 5 })
    assert.is_false(ok)
    assert.matches("CACHE_REDIS_USERNAME", err, 1, true)
  end)
end)
