-- cache.new(config): Flask-Caching's configuration keys (API.md §3,
-- behaviour.md §4), and the proxies of the Cache object.
local cache = require "cache"
local fake_backend = require "support.fake_backend"

local classes = { "NullCache", "SimpleCache", "FileSystemCache", "RedisCache",
                  "RedisSentinelCache", "RedisClusterCache", "MemcachedCache",
                  "SASLMemcachedCache", "SpreadSASLMemcachedCache", "UWSGICache" }

-- Replaces every backend constructor with a spy recording (class, options).
local function with_spies(fn)
  local saved, seen = {}, {}
  for _, class in ipairs(classes) do
    saved[class] = cache[class]
    cache[class] = function(options)
      seen[#seen + 1] = { class = class, options = options }
      return fake_backend.new(options)
    end
  end
  local ok, err = pcall(fn, seen)
  for _, class in ipairs(classes) do cache[class] = saved[class] end
  assert(ok, err)
end

-- The options the backend of this config receives.
local function options_for(config)
  local got
  with_spies(function(seen)
    cache.new(config)
    got = seen[#seen]
  end)
  return got.options, got.class
end

describe("cache.new", function()
  describe("CACHE_TYPE", function()
    it("defaults to SimpleCache", function()
      local _, class = options_for({})
      assert.equal("SimpleCache", class)
      _, class = options_for(nil)
      assert.equal("SimpleCache", class)
    end)

    it("takes class names, Flask-Caching's short names and dotted paths", function()
      local short = { null = "NullCache", simple = "SimpleCache", filesystem = "FileSystemCache",
                      redis = "RedisCache", redissentinel = "RedisSentinelCache",
                      rediscluster = "RedisClusterCache", memcached = "MemcachedCache",
                      saslmemcached = "SASLMemcachedCache",
                      spreadsaslmemcached = "SpreadSASLMemcachedCache", uwsgi = "UWSGICache" }
      for name, class in pairs(short) do
        local cfg = { CACHE_TYPE = name, CACHE_DIR = "/tmp" }
        local _, got = options_for(cfg)
        assert.equal(class, got, name)
        cfg.CACHE_TYPE = class
        _, got = options_for(cfg)
        assert.equal(class, got, class)
      end
      local _, got = options_for{ CACHE_TYPE = "flask_caching.backends.RedisCache" }
      assert.equal("RedisCache", got)
      _, got = options_for{ CACHE_TYPE = "cachelib.SimpleCache" }
      assert.equal("SimpleCache", got)
    end)

    it("raises on an unknown type, naming it", function()
      local ok, err = pcall(cache.new, { CACHE_TYPE = "MongoCache" })
      assert.is_false(ok)
      assert.matches("MongoCache", err)
    end)

    it("takes a factory function(config, options) for custom backends", function()
      local got
      local backend = fake_backend.new()
      local c = cache.new{ CACHE_TYPE = function(config, options) got = { config, options }; return backend end,
                           CACHE_DEFAULT_TIMEOUT = 5 }
      assert.equal(backend, c.cache)
      assert.equal(5, got[2].default_timeout)
      assert.is_function(got[1].CACHE_TYPE)
    end)

    it("a constructor the user removed raises, naming the type", function()
      local saved = cache.RedisCache
      cache.RedisCache = nil
      local ok, err = pcall(cache.new, { CACHE_TYPE = "redis" })
      cache.RedisCache = saved
      assert.is_false(ok)
      assert.matches("no constructor for cache type 'RedisCache'", err)
    end)
  end)

  describe("derived options", function()
    it("every backend gets default_timeout and ignore_errors", function()
      local o = options_for{ CACHE_TYPE = "null", CACHE_DEFAULT_TIMEOUT = 60, CACHE_IGNORE_ERRORS = true }
      assert.same({ default_timeout = 60, ignore_errors = true }, o)
      o = options_for{ CACHE_TYPE = "null" }
      assert.same({ default_timeout = 300, ignore_errors = false }, o)
    end)

    it("SimpleCache: threshold (default 500), no key prefix", function()
      local o = options_for{}
      assert.same({ default_timeout = 300, ignore_errors = false, threshold = 500 }, o)
      o = options_for{ CACHE_THRESHOLD = 10, CACHE_KEY_PREFIX = "ignored_" }
      assert.equal(10, o.threshold)
      assert.is_nil(o.key_prefix)
    end)

    it("FileSystemCache: cache_dir from CACHE_DIR, threshold, no key prefix", function()
      local o = options_for{ CACHE_TYPE = "filesystem", CACHE_DIR = "/var/cache/app" }
      assert.same({ default_timeout = 300, ignore_errors = false, threshold = 500,
                    cache_dir = "/var/cache/app" }, o)
      o = options_for{ CACHE_TYPE = "filesystem", CACHE_DIR = "/d", CACHE_FILE_HASH_METHOD = "sha256" }
      assert.equal("sha256", o.hash_method)
      local ok, err = pcall(cache.new, { CACHE_TYPE = "filesystem" })
      assert.is_false(ok)
      assert.matches("CACHE_DIR", err)
    end)

    it("RedisCache: host, port, db, password, key_prefix (default flask_cache_)", function()
      local o = options_for{ CACHE_TYPE = "redis" }
      assert.same({ default_timeout = 300, ignore_errors = false, host = "localhost", port = 6379,
                    db = 0, key_prefix = "flask_cache_" }, o)
      o = options_for{ CACHE_TYPE = "redis", CACHE_REDIS_HOST = "10.0.0.1", CACHE_REDIS_PORT = 6380,
                       CACHE_REDIS_DB = 2, CACHE_REDIS_PASSWORD = "pw", CACHE_KEY_PREFIX = "app:" }
      assert.same({ default_timeout = 300, ignore_errors = false, host = "10.0.0.1", port = 6380,
                    db = 2, password = "pw", key_prefix = "app:" }, o)
    end)

    it("RedisCache: CACHE_REDIS_URL replaces host, port and password", function()
      local o = options_for{ CACHE_TYPE = "redis", CACHE_REDIS_URL = "redis://:pw@h:1/3",
                             CACHE_REDIS_HOST = "ignored" }
      assert.same({ default_timeout = 300, ignore_errors = false, url = "redis://:pw@h:1/3",
                    key_prefix = "flask_cache_" }, o)
    end)

    it("an empty CACHE_KEY_PREFIX passes no key_prefix", function()
      local o = options_for{ CACHE_TYPE = "redis", CACHE_KEY_PREFIX = "" }
      assert.is_nil(o.key_prefix)
    end)

    it("RedisSentinelCache: sentinels, master, db, passwords", function()
      local o = options_for{ CACHE_TYPE = "redissentinel" }
      assert.same({ default_timeout = 300, ignore_errors = false, sentinels = { "127.0.0.1:26379" },
                    master = "mymaster", db = 0, key_prefix = "flask_cache_" }, o)
      o = options_for{ CACHE_TYPE = "redissentinel", CACHE_REDIS_SENTINELS = { { "h", 1 }, "g:2" },
                       CACHE_REDIS_SENTINEL_MASTER = "m", CACHE_REDIS_PASSWORD = "p",
                       CACHE_REDIS_SENTINEL_PASSWORD = "sp" }
      assert.same({ { "h", 1 }, "g:2" }, o.sentinels)
      assert.equal("m", o.master)
      assert.equal("p", o.password)
      assert.equal("sp", o.sentinel_password)
    end)

    it("RedisClusterCache: cluster, password, key_prefix", function()
      local o = options_for{ CACHE_TYPE = "rediscluster", CACHE_REDIS_CLUSTER = "a:1,b:2",
                             CACHE_REDIS_PASSWORD = "p" }
      assert.same({ default_timeout = 300, ignore_errors = false, cluster = "a:1,b:2",
                    password = "p", key_prefix = "flask_cache_" }, o)
    end)

    it("the memcached family: servers, key_prefix, SASL credentials", function()
      local o = options_for{ CACHE_TYPE = "memcached", CACHE_MEMCACHED_SERVERS = { "127.0.0.1:11211" } }
      assert.same({ default_timeout = 300, ignore_errors = false, servers = { "127.0.0.1:11211" },
                    key_prefix = "flask_cache_" }, o)
      o = options_for{ CACHE_TYPE = "memcached" }
      assert.is_nil(o.servers)
      for _, t in ipairs{ "saslmemcached", "spreadsaslmemcached" } do
        o = options_for{ CACHE_TYPE = t, CACHE_MEMCACHED_USERNAME = "u", CACHE_MEMCACHED_PASSWORD = "p" }
        assert.same({ default_timeout = 300, ignore_errors = false, username = "u", password = "p",
                      key_prefix = "flask_cache_" }, o)
      end
    end)

    it("UWSGICache: cache from CACHE_UWSGI_NAME, no key prefix", function()
      local o = options_for{ CACHE_TYPE = "uwsgi", CACHE_UWSGI_NAME = "mycache@127.0.0.1:3031" }
      assert.same({ default_timeout = 300, ignore_errors = false, cache = "mycache@127.0.0.1:3031" }, o)
    end)

    it("CACHE_OPTIONS are merged; derived options win over them", function()
      local o = options_for{ CACHE_TYPE = "redis", CACHE_OPTIONS = { timeout = 2.5, port = 1,
                                                                     default_timeout = 9 } }
      assert.equal(2.5, o.timeout)
      assert.equal(6379, o.port)        -- derived from the config (its default)
      assert.equal(9, o.default_timeout) -- CACHE_OPTIONS overrides the generic ones
    end)
  end)

  describe("config checks", function()
    it("raises on an unknown CACHE_ key, naming it", function()
      local ok, err = pcall(cache.new, { CACHE_TYPO = 1 })
      assert.is_false(ok)
      assert.matches("CACHE_TYPO", err)
    end)

    it("raises on keys that are not CACHE_ keys", function()
      local ok, err = pcall(cache.new, { DEBUG = true })
      assert.is_false(ok)
      assert.matches("DEBUG", err)
    end)

    it("says why Flask-Caching keys without a meaning here are refused", function()
      local ok, err = pcall(cache.new, { CACHE_SERIALIZER = "json" })
      assert.is_false(ok)
      assert.matches("CACHE_SERIALIZER", err)
    end)

    it("raises on wrong value types, naming the key", function()
      local ok, err = pcall(cache.new, { CACHE_DEFAULT_TIMEOUT = "60" })
      assert.is_false(ok)
      assert.matches("CACHE_DEFAULT_TIMEOUT", err)
      ok, err = pcall(cache.new, { CACHE_HASH_METHOD = "crc32" })
      assert.is_false(ok)
      assert.matches("CACHE_HASH_METHOD", err)
    end)

    it("takes the digest names from the engine (core.hash_methods)", function()
      local core = require "cache.core"
      assert.same({ md5 = true, sha1 = true, sha256 = true, sha512 = true }, core.hash_methods)
      assert.equal(core.hash_methods, require("cache.config").hash_methods)
      local ok, err = pcall(cache.new, { CACHE_HASH_METHOD = "crc32" })
      assert.is_false(ok)
      assert.matches("(md5, sha1, sha256, sha512, or a function)", err, 1, true)
    end)

    it("points errors at the caller", function()
      local ok, err = pcall(function() cache.new{ CACHE_BAD = 1 } end)
      assert.is_false(ok)
      assert.matches("cache_new_spec.lua:%d+:", err)
    end)

    it("keeps the effective config, hash method and source check on the object", function()
      local c = cache.new{ CACHE_TYPE = function() return fake_backend.new() end,
                           CACHE_HASH_METHOD = "sha1", CACHE_SOURCE_CHECK = true }
      assert.equal("sha1", c.hash_method)
      assert.is_true(c.source_check)
      assert.equal(300, c.config.CACHE_DEFAULT_TIMEOUT)
      local d = cache.new{ CACHE_TYPE = function() return fake_backend.new() end }
      assert.equal("md5", d.hash_method)
      assert.is_false(d.source_check)
    end)
  end)

  describe("proxies", function()
    it("forward every cache call to c.cache", function()
      local backend = fake_backend.new()
      local c = cache.new{ CACHE_TYPE = function() return backend end }
      assert.is_true(c:set("a", 1))
      assert.is_false(c:add("a", 2))
      assert.equal(1, c:get("a"))
      assert.is_true(c:has("a"))
      assert.equal(2, c:inc("a"))
      assert.equal(0, c:dec("a", 2))
      assert.is_true((c:set_many({ b = 2, c = 3 })))
      local b, cc = c:get_many("b", "c")
      assert.same({ 2, 3 }, { b, cc })
      assert.same({ b = 2, c = 3 }, c:get_dict("b", "c"))
      assert.is_true(c:delete("a"))
      assert.is_true((c:delete_many("b", "c")))
      assert.is_true(c:clear())
      for _, op in ipairs{ "get", "set", "add", "has", "inc", "set_many", "get_many",
                           "get_dict", "delete", "delete_many", "clear" } do
        assert.is_true(backend.calls[op] >= 1, op)
      end
    end)

    it("follow a replaced c.cache", function()
      local c = cache.new{ CACHE_TYPE = function() return fake_backend.new() end }
      local other = fake_backend.new()
      c.cache = other
      c:set("x", 1)
      assert.equal(1, other.calls.set)
    end)

    it("pass backend failures through unchanged", function()
      local backend = fake_backend.new()
      local c = cache.new{ CACHE_TYPE = function() return backend end }
      backend.fail = "down"
      local v, err = c:get("x")
      assert.is_nil(v)
      assert.equal("down", err)
      local ok, err2 = c:set("x", 1)
      assert.is_false(ok)
      assert.equal("down", err2)
    end)
  end)

  describe("on the real backends", function()
    it("NullCache", function()
      local c = cache.new{ CACHE_TYPE = "null" }
      assert.is_true(c:set("a", 1))
      assert.is_nil(c:get("a"))
      assert.equal(300, c.cache.default_timeout)
    end)

    it("SimpleCache (the default)", function()
      local c = cache.new{ CACHE_DEFAULT_TIMEOUT = 42 }
      assert.equal(42, c.cache.default_timeout)
      assert.is_true(c:set("a", { 1, 2 }))
      assert.same({ 1, 2 }, c:get("a"))
    end)

    it("FileSystemCache from CACHE_DIR", function()
      local dir = require("support.helpers").tmpdir("cache-new")
      local c = cache.new{ CACHE_TYPE = "filesystem", CACHE_DIR = dir }
      assert.is_true(c:set("a", "b"))
      assert.equal("b", c:get("a"))
    end)

    it("RedisCache from CACHE_REDIS_* keys, with the flask_cache_ prefix", function()
      local port = os.getenv("CACHE_TEST_REDIS_PORT")
      if not port or not cache.backend_types().RedisCache then
        pending("redis not started (spec/servers/redis.sh)")
        return
      end
      local c = cache.new{ CACHE_TYPE = "redis", CACHE_REDIS_HOST = "127.0.0.1",
                           CACHE_REDIS_PORT = tonumber(port), CACHE_REDIS_DB = 3 }
      assert.is_true(c:set("new_spec", "v"))
      local raw = cache.RedisCache{ host = "127.0.0.1", port = tonumber(port), db = 3 }
      assert.equal("v", raw:get("flask_cache_new_spec"))
      assert.is_true(raw:delete("flask_cache_new_spec"))
    end)

    it("RedisCache from CACHE_REDIS_URL, password and db in the URL", function()
      local port = os.getenv("CACHE_TEST_REDIS_AUTH_PORT")
      local pw = os.getenv("CACHE_TEST_REDIS_PASSWORD")
      if not port or not pw or not cache.backend_types().RedisCache then
        pending("redis with a password not started (spec/servers/redis.sh)")
        return
      end
      local enc = pw:gsub("[^%w]", function(ch) return ("%%%02X"):format(ch:byte()) end)
      local c = cache.new{ CACHE_TYPE = "RedisCache", CACHE_KEY_PREFIX = "app:",
                           CACHE_REDIS_URL = ("redis://:%s@127.0.0.1:%s/2"):format(enc, port) }
      assert.is_true(c:set("url_spec", 1))
      local raw = cache.RedisCache{ host = "127.0.0.1", port = tonumber(port), password = pw, db = 2 }
      assert.equal(1, raw:get("app:url_spec"))
      raw:delete("app:url_spec")
    end)

    it("UWSGICache from CACHE_UWSGI_NAME", function()
      local addr = os.getenv("CACHE_TEST_UWSGI")
      if not addr then
        pending("uWSGI not started (spec/servers/uwsgi.sh)")
        return
      end
      local c = cache.new{ CACHE_TYPE = "uwsgi", CACHE_UWSGI_NAME = "lazyc@" .. addr }
      assert.is_true(c:set("new_spec", { 1 }))
      assert.same({ 1 }, c:get("new_spec"))
      c:delete("new_spec")
    end)

    it("a backend option of the wrong type raises, naming the option", function()
      local ok, err = pcall(cache.new, { CACHE_OPTIONS = { no_such_option = 1 } })
      assert.is_false(ok)
      assert.matches("no_such_option", err)
    end)
  end)
end)
