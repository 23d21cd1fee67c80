--- cache.config: Flask-Caching's configuration keys turned into a backend.
--
-- resolve(config) checks the CACHE_* keys, applies Flask-Caching's
-- defaults, works out the backend class (class names, dotted Python paths,
-- Flask-Caching's short names, or a factory function) and the options its
-- constructor gets, the way Flask-Caching's backend factories derive them
-- (behaviour.md §4.2, §4.3).
local core = require "cache.core"

local C = {}

-- Errors point at the user's code: the first frame that is neither C nor
-- one of the files registered here (this one and cache/decorators.lua).
local internal = { [debug.getinfo(1, "S").source] = true }

function C.internal(source) internal[source] = true end

function C.raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if info == nil then level = 0; break end
    if info.what ~= "C" and not internal[info.source] then break end
    level = level + 1
  end
  error(msg, level)
end
local raise = C.raise

--- Flask-Caching's short names (FC-2.0) and the class each stands for.
C.short_names = {
  null = "NullCache",
  simple = "SimpleCache",
  filesystem = "FileSystemCache",
  redis = "RedisCache",
  redissentinel = "RedisSentinelCache",
  rediscluster = "RedisClusterCache",
  memcached = "MemcachedCache",
  saslmemcached = "SASLMemcachedCache",
  spreadsaslmemcached = "SpreadSASLMemcachedCache",
  uwsgi = "UWSGICache",
}

local classes = {}
for _, class in pairs(C.short_names) do classes[class] = true end

-- The digests hash_method names, from the engine's one table: a set, and
-- the names in order for messages.
C.hash_methods = core.hash_methods
do
  local names = {}
  for name in pairs(C.hash_methods) do names[#names + 1] = name end
  table.sort(names)
  C.hash_method_names = table.concat(names, ", ")
end

-- Every key cache.new accepts, with the type its value must have.
local known = {
  CACHE_TYPE = "string|function",
  CACHE_DEFAULT_TIMEOUT = "number",
  CACHE_THRESHOLD = "number",
  CACHE_KEY_PREFIX = "string|boolean",
  CACHE_DIR = "string",
  CACHE_OPTIONS = "table",
  CACHE_IGNORE_ERRORS = "boolean",
  CACHE_SOURCE_CHECK = "boolean",
  CACHE_HASH_METHOD = "string|function",
  CACHE_FILE_HASH_METHOD = "string",
  CACHE_NO_NULL_WARNING = "boolean",
  CACHE_UWSGI_NAME = "string",
  CACHE_MEMCACHED_SERVERS = "table|string",
  CACHE_MEMCACHED_USERNAME = "string",
  CACHE_MEMCACHED_PASSWORD = "string",
  CACHE_REDIS_HOST = "string",
  CACHE_REDIS_PORT = "number|string",
  CACHE_REDIS_PASSWORD = "string",
  CACHE_REDIS_USERNAME = "string",
  CACHE_REDIS_DB = "number",
  CACHE_REDIS_URL = "string",
  CACHE_REDIS_SENTINELS = "table|string",
  CACHE_REDIS_SENTINEL_MASTER = "string",
  CACHE_REDIS_SENTINEL_PASSWORD = "string",
  CACHE_REDIS_SENTINEL_USERNAME = "string",
  CACHE_REDIS_CLUSTER = "table|string",
  CACHE_TRANSPORT = "string",
}

-- Flask-Caching keys this port deliberately does not offer, and why.
local unsupported = {
  CACHE_ARGS = "positional constructor arguments do not exist in Lua: use CACHE_OPTIONS",
  CACHE_SERIALIZER = "values are always MessagePack",
  CACHE_ENABLE_SIGNALS = "signals are not implemented",
}

local function check_config(config)
  for k, v in pairs(config) do
    if type(k) ~= "string" then
      raise(("cache.new: config keys must be strings, got a %s"):format(type(k)))
    end
    local want = known[k]
    if not want then
      if unsupported[k] then
        raise(("cache.new: %s is not supported (%s)"):format(k, unsupported[k]))
      end
      raise(("cache.new: unknown config key '%s'"):format(k))
    end
    local ok = false
    for t in want:gmatch("[^|]+") do
      if type(v) == t then ok = true end
    end
    if not ok then
      raise(("cache.new: %s: %s expected, got %s"):format(k, want:gsub("|", " or "), type(v)))
    end
  end
end

--- The class name CACHE_TYPE stands for, or nil and why.
function C.class_of(ctype)
  if classes[ctype] then return ctype end
  if C.short_names[ctype] then return C.short_names[ctype] end
  -- "flask_caching.backends.RedisCache", "cachelib.RedisCache", ...
  local last = ctype:match("%.([%w_]+)$")
  if last and classes[last] then return last end
  return nil
end

local function truthy_string(v)
  return type(v) == "string" and v ~= ""
end

-- What each backend's Flask-Caching factory derives from the config; these
-- override CACHE_OPTIONS, as in Flask-Caching (behaviour.md §4.2).
local derive = {}

function derive.SimpleCache(cfg, o)
  o.threshold = cfg.CACHE_THRESHOLD
end

function derive.FileSystemCache(cfg, o)
  if cfg.CACHE_DIR ~= nil then o.cache_dir = cfg.CACHE_DIR end
  if o.cache_dir == nil then
    raise("cache.new: FileSystemCache needs CACHE_DIR")
  end
  o.threshold = cfg.CACHE_THRESHOLD
  if cfg.CACHE_FILE_HASH_METHOD ~= nil then o.hash_method = cfg.CACHE_FILE_HASH_METHOD end
end

local function key_prefix(cfg, o)
  if truthy_string(cfg.CACHE_KEY_PREFIX) then o.key_prefix = cfg.CACHE_KEY_PREFIX end
end

function derive.RedisCache(cfg, o)
  if cfg.CACHE_REDIS_URL ~= nil then
    -- the URL carries host, port, password and db
    o.url = cfg.CACHE_REDIS_URL
    o.host, o.port, o.password = nil, nil, nil
    if cfg.CACHE_REDIS_DB ~= nil then o.db = cfg.CACHE_REDIS_DB end
  else
    o.host = cfg.CACHE_REDIS_HOST or "localhost"
    o.port = tonumber(cfg.CACHE_REDIS_PORT) or 6379
    o.db = cfg.CACHE_REDIS_DB or 0
    if truthy_string(cfg.CACHE_REDIS_PASSWORD) then o.password = cfg.CACHE_REDIS_PASSWORD end
    -- ACL user: read like the password (a URL carries its own)
    if truthy_string(cfg.CACHE_REDIS_USERNAME) then o.username = cfg.CACHE_REDIS_USERNAME end
  end
  key_prefix(cfg, o)
end

function derive.RedisSentinelCache(cfg, o)
  o.sentinels = cfg.CACHE_REDIS_SENTINELS or { "127.0.0.1:26379" }
  o.master = cfg.CACHE_REDIS_SENTINEL_MASTER or "mymaster"
  o.db = cfg.CACHE_REDIS_DB or 0
  if truthy_string(cfg.CACHE_REDIS_PASSWORD) then o.password = cfg.CACHE_REDIS_PASSWORD end
  if truthy_string(cfg.CACHE_REDIS_USERNAME) then o.username = cfg.CACHE_REDIS_USERNAME end
  if truthy_string(cfg.CACHE_REDIS_SENTINEL_PASSWORD) then
    o.sentinel_password = cfg.CACHE_REDIS_SENTINEL_PASSWORD
  end
  if truthy_string(cfg.CACHE_REDIS_SENTINEL_USERNAME) then
    o.sentinel_username = cfg.CACHE_REDIS_SENTINEL_USERNAME
  end
  key_prefix(cfg, o)
end

function derive.RedisClusterCache(cfg, o)
  if cfg.CACHE_REDIS_CLUSTER ~= nil then o.cluster = cfg.CACHE_REDIS_CLUSTER end
  if truthy_string(cfg.CACHE_REDIS_PASSWORD) then o.password = cfg.CACHE_REDIS_PASSWORD end
  if truthy_string(cfg.CACHE_REDIS_USERNAME) then o.username = cfg.CACHE_REDIS_USERNAME end
  key_prefix(cfg, o)
end

function derive.MemcachedCache(cfg, o)
  if cfg.CACHE_MEMCACHED_SERVERS ~= nil then o.servers = cfg.CACHE_MEMCACHED_SERVERS end
  key_prefix(cfg, o)
end

function derive.SASLMemcachedCache(cfg, o)
  derive.MemcachedCache(cfg, o)
  if cfg.CACHE_MEMCACHED_USERNAME ~= nil then o.username = cfg.CACHE_MEMCACHED_USERNAME end
  if cfg.CACHE_MEMCACHED_PASSWORD ~= nil then o.password = cfg.CACHE_MEMCACHED_PASSWORD end
end

derive.SpreadSASLMemcachedCache = derive.SASLMemcachedCache

function derive.UWSGICache(cfg, o)
  if cfg.CACHE_UWSGI_NAME ~= nil then o.cache = cfg.CACHE_UWSGI_NAME end
end

function derive.NullCache() end

--- The effective config (a copy with Flask-Caching's defaults filled in),
-- the backend class name (or the factory function) and its options.
function C.resolve(config)
  if config == nil then config = {} end
  if type(config) ~= "table" then
    raise(("cache.new: config table expected, got %s"):format(type(config)))
  end
  check_config(config)
  local cfg = {}
  for k, v in pairs(config) do cfg[k] = v end
  local defaults = {
    CACHE_TYPE = "SimpleCache",
    CACHE_DEFAULT_TIMEOUT = 300,
    CACHE_THRESHOLD = 500,
    CACHE_KEY_PREFIX = "flask_cache_",
    CACHE_IGNORE_ERRORS = false,
    CACHE_SOURCE_CHECK = false,
    CACHE_HASH_METHOD = "md5",
  }
  for k, v in pairs(defaults) do
    if cfg[k] == nil then cfg[k] = v end
  end
  local hm = cfg.CACHE_HASH_METHOD
  if type(hm) == "string" and not C.hash_methods[hm] then
    raise(("cache.new: CACHE_HASH_METHOD: unknown digest '%s' (%s, or a function)"):format(hm, C.hash_method_names))
  end

  -- Flask-Caching: {default_timeout, ignore errors} updated with CACHE_OPTIONS,
  -- then the factory's derived options on top.
  local options = { default_timeout = cfg.CACHE_DEFAULT_TIMEOUT,
                    ignore_errors = cfg.CACHE_IGNORE_ERRORS }
  for k, v in pairs(cfg.CACHE_OPTIONS or {}) do options[k] = v end

  local ctype = cfg.CACHE_TYPE
  if type(ctype) == "function" then
    return cfg, ctype, options
  end
  local class = C.class_of(ctype)
  if not class then
    raise(("cache.new: unknown CACHE_TYPE '%s'"):format(ctype))
  end
  derive[class](cfg, options)
  -- the network backends' option transport ("auto", "cosocket", "blocking");
  -- a backend without one rejects it by name
  if cfg.CACHE_TRANSPORT ~= nil then options.transport = cfg.CACHE_TRANSPORT end
  return cfg, class, options
end

return C
