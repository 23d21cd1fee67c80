-- RedisCache over TLS for the shared contract (and the fault and decorator
-- specs that run on every backend): spec/servers/redis_tls.sh's server,
-- its certificate checked against the test CA, a fresh key prefix per
-- object.
local helpers = require "support.helpers"
return {
  name = "RedisCache (TLS)",
  available = function()
    return os.getenv("CACHE_TEST_TLS_PORT") ~= nil, "TLS redis not started (spec/servers/redis_tls.sh)"
  end,
  new = function(opts)
    local cache = require "cache"
    local o = {
      host = "127.0.0.1",
      port = tonumber(os.getenv("CACHE_TEST_TLS_PORT")),
      ssl = true,
      ssl_ca_certs = os.getenv("CACHE_TEST_TLS_CERTS") .. "/ca.crt",
      -- generous: the shared test machine can be loaded, and 64 MB values
      -- (faults_spec) must not be cut off by the 1 s default
      timeout = 5,
      key_prefix = helpers.unique("redistls"),
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    local c = cache.RedisCache(o)
    assert(c:clear())
    return c
  end,
  caps = { ttl_granularity = 0.001, atomic_inc = true },
}
