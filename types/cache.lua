---@meta cache
-- Type definitions of `require "cache"` for lua-language-server (LuaLS).
-- Never loaded at run time: point LuaLS at this folder ("workspace.library":
-- the checkout's types/, or <tree>/lib/luarocks/rocks-<lua>/cache/<version>/types
-- in a luarocks tree). spec/types_spec.lua checks that it names everything
-- public: constructors and their options, the contract, cache.new's keys,
-- the decorators and their options.

---------------------------------------------------------------------------
-- Backends
---------------------------------------------------------------------------

---A value that round-trips through every backend: nil, booleans, integers,
---floats, strings (binary-safe) and tables of those (metatables dropped).
---@alias cache.Value nil|boolean|number|string|table

---Options every constructor takes.
---@class cache.BackendOptions
---@field default_timeout? number entry lifetime in seconds when a call gives none (default 300; 0 = never expires)
---@field ignore_errors? boolean `delete_many` goes on past a failed key (default false)

---@class cache.NullCacheOptions : cache.BackendOptions

---@class cache.SimpleCacheOptions : cache.BackendOptions
---@field threshold? integer most entries kept before eviction (default 500)

---@class cache.FileSystemCacheOptions : cache.BackendOptions
---@field cache_dir string the folder of the entries (required)
---@field threshold? integer most entries kept; 0 = no limit (default 500)
---@field mode? integer permission bits of the entry files (default tonumber("600", 8))
---@field hash_method? "md5"|"sha1"|"sha256"|"sha512" digest naming the files (default "md5")
---@field timeout? number seconds inc/dec wait for the directory lock (default 1.0; 0 = no limit)

---Options of the backends with an OpenResty cosocket path.
---@class cache.NetworkOptions : cache.BackendOptions
---@field transport? "auto"|"cosocket"|"blocking" cosockets where the nginx phase allows them, or always, or never (default "auto")
---@field pool_size? integer cosocket connections kept per server in each nginx worker (default 30)
---@field backlog? integer connects that wait for a pooled connection when pool_size are busy (default: none, they open more)
---@field keepalive_timeout? number seconds an idle pooled connection is kept (default 60; 0 = until the server closes it)

---Options of the Redis family's connections.
---@class cache.RedisConnectionOptions : cache.NetworkOptions
---@field password? string `AUTH` on every new connection
---@field username? string Redis 6 ACL user (without a password: `AUTH username ""`)
---@field ssl? boolean TLS (Sentinel: to the data nodes; Cluster: to every node; default false)
---@field ssl_ca_certs? string PEM file of the CAs the server's certificate must lead to (default: the system's)
---@field ssl_certfile? string client certificate (PEM)
---@field ssl_keyfile? string the client certificate's key (PEM)
---@field ssl_cert_reqs? "required"|"none" certificate verification (default "required")
---@field ssl_check_hostname? boolean the host must be in the certificate (default true)
---@field key_prefix? string prepended to every key; `clear()` then removes only these
---@field connect_timeout? number seconds to connect (default 1.0; 0 = no limit)
---@field timeout? number seconds a call may wait without progress (default 1.0; 0 = no limit)

---@class cache.RedisCacheOptions : cache.RedisConnectionOptions
---@field host? string the server (default "localhost")
---@field port? integer (default 6379)
---@field url? string `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS) or `unix://[[user]:password@]/path[?db=N]`
---@field unix_socket? string a unix socket path instead of host/port
---@field db? integer `SELECT db` on every new connection (default 0)

---@class cache.RedisSentinelCacheOptions : cache.RedisConnectionOptions
---@field sentinels? string|string[]|table[] `{"host:port", ...}`, `{{host, port}, ...}` or `"h:p,h:p"` (default {"127.0.0.1:26379"})
---@field master? string the name the sentinels monitor (default "mymaster")
---@field sentinel_password? string `AUTH` to the sentinels
---@field sentinel_username? string the sentinels' ACL user
---@field sentinel_ssl? boolean TLS to the sentinels, with the same ssl_* options (default false)
---@field db? integer (default 0)

---@class cache.RedisClusterCacheOptions : cache.RedisConnectionOptions
---@field cluster string|string[] startup nodes, `"h:p,h:p"` or a list (required)

---@class cache.MemcachedCacheOptions : cache.NetworkOptions
---@field servers? string|string[] `"host:port"`, `"[v6]:port"`, `"host"` or a socket path (default {"127.0.0.1:11211"})
---@field key_prefix? string prepended to every key

---@class cache.SASLMemcachedCacheOptions : cache.MemcachedCacheOptions
---@field username? string SASL user (with password; neither: no SASL)
---@field password? string SASL password (with username)

---@class cache.SpreadSASLMemcachedCacheOptions : cache.SASLMemcachedCacheOptions
---@field chunksize? integer bytes per chunk (default 1048576)
---@field maxchunk? integer most chunks of one value (default 32)

---@class cache.UWSGICacheOptions : cache.NetworkOptions
---@field cache? string `"name@host:port"` or `"name@/path.sock"` (default "")
---@field timeout? number seconds per request (default 1.0)

---A backend object: the cache contract. A backend that fails never raises:
---the call returns its failure value and an error string.
---@class cache.Backend
---@field default_timeout number
local Backend = {}

---The value, or nil on a miss, an expired or an unreadable entry.
---@param key string|number
---@return cache.Value value
---@return string? err
function Backend:get(key) end

---@param key string|number
---@param value cache.Value
---@param timeout? number seconds; nil = default_timeout, 0 = never expires
---@return boolean ok
---@return string? err
function Backend:set(key, value, timeout) end

---Like set, but false when a live entry exists.
---@param key string|number
---@param value cache.Value
---@param timeout? number
---@return boolean added
---@return string? err
function Backend:add(key, value, timeout) end

---Whether the key existed and was deleted.
---@param key string|number
---@return boolean deleted
---@return string? err
function Backend:delete(key) end

---@param ... string|number keys
---@return boolean all_deleted
---@return string[] deleted_keys
---@return string? err
function Backend:delete_many(...) end

---One value per key, as multiple results (nil for misses).
---@param ... string|number keys
---@return cache.Value ...
function Backend:get_many(...) end

---A table of the keys found (misses absent).
---@param ... string|number keys
---@return table<string, cache.Value> values
---@return string? err
function Backend:get_dict(...) end

---@param mapping table<string|number, cache.Value>
---@param timeout? number
---@return boolean all_set
---@return string[] set_keys
---@return string? err
function Backend:set_many(mapping, timeout) end

---Whether the key exists and is not expired.
---@param key string|number
---@return boolean exists
---@return string? err
function Backend:has(key) end

---@return boolean cleared
---@return string? err
function Backend:clear() end

---The new integer; a missing key starts at delta.
---@param key string|number
---@param delta? integer (default 1)
---@return integer? value
---@return string? err
function Backend:inc(key, delta) end

---The new integer; a missing key starts at -delta.
---@param key string|number
---@param delta? integer (default 1)
---@return integer? value
---@return string? err
function Backend:dec(key, delta) end

---Releases the backend now instead of at collection.
function Backend:close() end

---------------------------------------------------------------------------
-- cache.new and the Cache object (flask_caching.Cache)
---------------------------------------------------------------------------

---Flask-Caching's configuration keys. Unknown keys raise.
---@class cache.Config
---@field CACHE_TYPE? string|fun(config: cache.Config, options: table): cache.Backend class name, short name ("redis"), dotted path, or a factory (default "SimpleCache")
---@field CACHE_DEFAULT_TIMEOUT? number (default 300)
---@field CACHE_THRESHOLD? number (default 500)
---@field CACHE_KEY_PREFIX? string|boolean Redis and memcached families only (default "flask_cache_")
---@field CACHE_DIR? string FileSystemCache's folder
---@field CACHE_OPTIONS? table merged into the backend's options (the derived keys win)
---@field CACHE_IGNORE_ERRORS? boolean (default false)
---@field CACHE_SOURCE_CHECK? boolean default of the decorators' source_check (default false)
---@field CACHE_HASH_METHOD? "md5"|"sha1"|"sha256"|"sha512"|fun(bytes: string): string the decorators' digest (default "md5")
---@field CACHE_FILE_HASH_METHOD? string FileSystemCache's hash_method
---@field CACHE_NO_NULL_WARNING? boolean accepted, as in Flask-Caching
---@field CACHE_UWSGI_NAME? string UWSGICache's cache
---@field CACHE_MEMCACHED_SERVERS? string|string[]
---@field CACHE_MEMCACHED_USERNAME? string
---@field CACHE_MEMCACHED_PASSWORD? string
---@field CACHE_REDIS_HOST? string (default "localhost")
---@field CACHE_REDIS_PORT? integer|string (default 6379)
---@field CACHE_REDIS_PASSWORD? string
---@field CACHE_REDIS_USERNAME? string
---@field CACHE_REDIS_DB? integer (default 0)
---@field CACHE_REDIS_URL? string
---@field CACHE_REDIS_SENTINELS? string|string[]|table[]
---@field CACHE_REDIS_SENTINEL_MASTER? string
---@field CACHE_REDIS_SENTINEL_PASSWORD? string
---@field CACHE_REDIS_SENTINEL_USERNAME? string
---@field CACHE_REDIS_CLUSTER? string|string[]
---@field CACHE_TRANSPORT? "auto"|"cosocket"|"blocking" the network backends' transport

---Options `cached` and `memoize` share.
---@class cache.DecoratorOptions
---@field timeout? number seconds (default: the backend's default_timeout)
---@field unless? fun(...): boolean exactly true bypasses the cache
---@field forced_update? fun(...): boolean exactly true recomputes and stores
---@field is_stale? fun(value: any, ...): boolean true treats a hit as a miss
---@field response_filter? fun(...): boolean a false result is not stored
---@field hash_method? "md5"|"sha1"|"sha256"|"sha512"|fun(bytes: string): string (default CACHE_HASH_METHOD)
---@field cache_none? boolean store a nil result too (default false)
---@field source_check? boolean the function's source enters the key (default CACHE_SOURCE_CHECK)

---@class cache.CachedOptions : cache.DecoratorOptions
---@field key_prefix? string|fun(): string `%s` is the request path (default "view/%s")
---@field query_string? boolean the sorted query arguments enter the key (default false)
---@field make_cache_key? fun(...): string computes the key instead
---@field response_hit_indication? boolean in OpenResty, sets `hit_cache: True` on a hit (default false)

---@class cache.MemoizeOptions : cache.DecoratorOptions
---@field make_name? fun(fname: string): string
---@field args_to_ignore? string[] parameter names left out of the key
---@field name? string a stable function name (default: source file and line)

---A decorated function: call it as the original.
---@class cache.Decorated
---@field uncached function the original function
---@field cache_timeout? number read/write; takes effect on the next call
---@field make_cache_key fun(...): string the key for given arguments
---@operator call(...): any

---@alias cache.Decorator fun(fn: function): cache.Decorated

---A Cache object (`cache.new`): the contract, forwarded to `c.cache`, plus
---the decorators.
---@class cache.Cache
---@field cache cache.Backend the backend
---@field config cache.Config the effective config, defaults filled in
local Cache = {}

---@param key string|number
---@return cache.Value value
---@return string? err
function Cache:get(key) end

---@param key string|number
---@param value cache.Value
---@param timeout? number
---@return boolean ok
---@return string? err
function Cache:set(key, value, timeout) end

---@param key string|number
---@param value cache.Value
---@param timeout? number
---@return boolean added
---@return string? err
function Cache:add(key, value, timeout) end

---@param key string|number
---@return boolean deleted
---@return string? err
function Cache:delete(key) end

---@param ... string|number
---@return boolean all_deleted
---@return string[] deleted_keys
---@return string? err
function Cache:delete_many(...) end

---@return boolean cleared
---@return string? err
function Cache:clear() end

---@param ... string|number
---@return cache.Value ...
function Cache:get_many(...) end

---@param mapping table<string|number, cache.Value>
---@param timeout? number
---@return boolean all_set
---@return string[] set_keys
---@return string? err
function Cache:set_many(mapping, timeout) end

---@param ... string|number
---@return table<string, cache.Value> values
---@return string? err
function Cache:get_dict(...) end

---@param key string|number
---@return boolean exists
---@return string? err
function Cache:has(key) end

---@param key string|number
---@param delta? integer
---@return integer? value
---@return string? err
function Cache:inc(key, delta) end

---@param key string|number
---@param delta? integer
---@return integer? value
---@return string? err
function Cache:dec(key, delta) end

---A view decorator: `c:cached{ timeout = 50 }(fn)`, or `c:cached(fn, opts)`.
---@param opts? cache.CachedOptions|number options, or the timeout
---@return cache.Decorator
---@overload fun(self: cache.Cache, fn: function, opts?: cache.CachedOptions|number): cache.Decorated
function Cache:cached(opts) end

---Deletes what a `cached` function stored for a path (and query arguments);
---without a path, for the current request.
---@param f cache.Decorated
---@param path? string
---@param args? table<string, string|string[]>
---@return boolean deleted
---@return string? err
function Cache:delete_cached(f, path, args) end

---A function decorator: `c:memoize{ timeout = 50 }(fn)`, `c:memoize(50)(fn)`,
---or `c:memoize(fn, opts)`.
---@param opts? cache.MemoizeOptions|number options, or the timeout
---@return cache.Decorator
---@overload fun(self: cache.Cache, fn: function, opts?: cache.MemoizeOptions|number): cache.Decorated
function Cache:memoize(opts) end

---With no arguments: forgets every call of f (a new version); with an
---instance of a method: that instance's calls; else that call's result.
---@param f cache.Decorated
---@param ... any
---@return boolean ok
---@return string? err
function Cache:delete_memoized(f, ...) end

---Deletes f's version key itself (the instance's when one is given).
---@param f cache.Decorated
---@param ... any
---@return boolean ok
---@return string? err
function Cache:delete_memoized_verhash(f, ...) end

---------------------------------------------------------------------------
-- The module
---------------------------------------------------------------------------

---@class cache
---@field _VERSION string "cache <version>"
---@field core table the C module cache.core
---@field methods table<string, function> the methods every backend has; functions added here become methods of every backend
---@field Cache cache.Cache the Cache class (the metatable of cache.new's objects)
---@field request_provider fun(): string?, table? the current request's path and query arguments (in OpenResty: ngx.var.uri, ngx.req.get_uri_args(0))
---@field log fun(msg: string) where decorators report backend failures (default: ngx.log(ngx.ERR) or stderr)
local cache = {}

---Class names of all backends, mapped to whether this build has them.
---@return table<string, boolean>
function cache.backend_types() end

---Encodes a value the way backends store it (MessagePack bytes).
---@param value cache.Value
---@return string bytes
function cache.encode(value) end

---Decodes such bytes: the value and true, or nil and why.
---@param bytes string
---@return cache.Value value
---@return true|string ok_or_err
function cache.decode(bytes) end

---A Cache object on the backend the config names (Flask-Caching's `Cache`).
---@param config? cache.Config
---@return cache.Cache
function cache.new(config) end

---Stores nothing: get gives nil, has false, set and add true.
---@param opts? cache.NullCacheOptions
---@return cache.Backend
function cache.NullCache(opts) end

---In this process's memory.
---@param opts? cache.SimpleCacheOptions
---@return cache.Backend
function cache.SimpleCache(opts) end

---One file per entry in a folder.
---@param opts? cache.FileSystemCacheOptions
---@return cache.Backend
function cache.FileSystemCache(opts) end

---@param opts? cache.RedisCacheOptions
---@return cache.Backend
function cache.RedisCache(opts) end

---The master that Redis Sentinels name.
---@param opts? cache.RedisSentinelCacheOptions
---@return cache.Backend
function cache.RedisSentinelCache(opts) end

---@param opts? cache.RedisClusterCacheOptions
---@return cache.Backend
function cache.RedisClusterCache(opts) end

---@param opts? cache.MemcachedCacheOptions
---@return cache.Backend
function cache.MemcachedCache(opts) end

---@param opts? cache.SASLMemcachedCacheOptions
---@return cache.Backend
function cache.SASLMemcachedCache(opts) end

---Values larger than chunksize are split over several keys.
---@param opts? cache.SpreadSASLMemcachedCacheOptions
---@return cache.Backend
function cache.SpreadSASLMemcachedCache(opts) end

---A running uWSGI server's cache, over its socket.
---@param opts? cache.UWSGICacheOptions
---@return cache.Backend
function cache.UWSGICache(opts) end

return cache
