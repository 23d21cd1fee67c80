--- cache.decorators: Flask-Caching's Cache object for Lua.
--
--   local c = cache.new{ CACHE_TYPE = "RedisCache", CACHE_DEFAULT_TIMEOUT = 60 }
--   local add = c:memoize{ timeout = 50 }(function(a, b) return a + b end)
--   local view = c:cached{ key_prefix = "view/%s" }(function() ... end)
--
-- install(M) adds cache.new, cache.Cache, cache.request_provider and
-- cache.log to the module table M. Keys are computed in C (cache.core's
-- memo_key, query_digest, ...); this file holds the call flow of the
-- decorators (behaviour.md §5.2, §6.5, §6.6) and the version scheme.
local core = require "cache.core"
local config = require "cache.config"
local raise = config.raise
config.internal(debug.getinfo(1, "S").source)

local M -- the cache module, set by install (cache.log and
        -- cache.request_provider are read from it at each use)

local unpack = table.unpack or unpack
local select, type, tostring, rawget, pcall, error = select, type, tostring, rawget, pcall, error
local getinfo, getlocal, getmetatable = debug.getinfo, debug.getlocal, debug.getmetatable

local D = {}

---------------------------------------------------------------------------
-- Small helpers
---------------------------------------------------------------------------

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return mt ~= nil and type(mt) == "table" and mt.__call ~= nil
end

-- The plain Lua function under a decorated one (for names and parameters).
local function underlying(f)
  while type(f) == "table" and rawget(f, "uncached") ~= nil do
    f = rawget(f, "uncached")
  end
  return f
end

-- Whether a callback takes arguments beyond the first `skip` ones
-- (Flask-Caching inspects the signature the same way, §5.1).
local function takes_args(fn, skip)
  if type(fn) ~= "function" then return true end
  local info = getinfo(fn, "u")
  if info.nparams == nil then return true end -- plain Lua 5.1: no way to tell
  return info.isvararg or info.nparams > (skip or 0)
end

-- Parameter names of a Lua function, and whether it is vararg.
local function param_names(f)
  local names = {}
  if type(f) ~= "function" then return names, true end
  local info = getinfo(f, "u")
  local n = info.nparams or 0
  for i = 1, n do names[i] = getlocal(f, i) end
  return names, info.isvararg
end

-- A file under a package.path root, named relative to that root (the
-- longest matching one), so that the same module installed under
-- /usr/share/lua/5.4 and /usr/share/lua/5.1 (OpenResty) has one name.
local function module_relative(path)
  local best
  for template in package.path:gmatch("[^;]+") do
    local prefix = template:match("^(.-)%?")
    if prefix and prefix ~= "" and prefix ~= "./" and path:sub(1, #prefix) == prefix
       and (not best or #prefix > #best) then
      best = prefix
    end
  end
  return best and path:sub(#best + 1) or path
end

-- "app/views.lua:12": stable across processes for the same code.
local function default_name(f)
  if type(f) ~= "function" then return nil end
  local info = getinfo(f, "S")
  if info.what == "C" then return nil end
  local src, first = info.source, info.source:sub(1, 1)
  if first == "@" then
    src = src:sub(2):gsub("\\", "/")
    while src:sub(1, 2) == "./" do src = src:sub(3) end
    src = module_relative(src)
  elseif first == "=" then
    src = src:sub(2)
  else
    -- a chunk loaded from a string: named by a digest of its text
    src = "string:" .. core.hex_digest("md5", src):sub(1, 12)
  end
  return src .. ":" .. info.linedefined
end

-- The text of a function for source_check: its source lines when they can
-- be read, else its stripped bytecode.
local function function_source(f)
  if type(f) ~= "function" then return nil end
  local info = getinfo(f, "S")
  if info.what == "C" then return nil end
  local src = info.source
  local first, last = info.linedefined, info.lastlinedefined
  local lines
  if src:sub(1, 1) == "@" then
    local fh = io.open(src:sub(2), "rb")
    if fh then
      lines = {}
      local i = 0
      for line in fh:lines() do
        i = i + 1
        if i >= first and (last <= 0 or i <= last) then lines[#lines + 1] = line end
        if last > 0 and i >= last then break end
      end
      fh:close()
    end
  elseif src:sub(1, 1) ~= "=" then
    lines = {}
    local i = 0
    for line in (src .. "\n"):gmatch("([^\n]*)\n") do
      i = i + 1
      if i >= first and (last <= 0 or i <= last) then lines[#lines + 1] = line end
    end
  end
  if lines and #lines > 0 then return table.concat(lines, "\n") end
  local ok, dump = pcall(string.dump, f, true)
  if ok then return dump end
  return nil
end

---------------------------------------------------------------------------
-- Results: one value stored as itself, several (or none) as a packed list
---------------------------------------------------------------------------

local MULTI = "__cache_results"

local function pack_results(n, ...)
  if n == 1 then return (...) end
  local t = { ... }
  t[MULTI] = n
  return t
end

local function unpack_results(v)
  if type(v) == "table" then
    local n = rawget(v, MULTI)
    if type(n) == "number" then return unpack(v, 1, n) end
  end
  return v
end

---------------------------------------------------------------------------
-- Failures: fail open, logged once per burst
---------------------------------------------------------------------------

local function default_log(msg)
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.log and ngx.ERR then
    ngx.log(ngx.ERR, msg)
  else
    io.stderr:write(msg, "\n")
  end
end

local function backend_failed(c, what, fname, err)
  if not c._failing then
    c._failing = true
    local log = M and M.log or default_log
    log(("cache: %s failed, %s runs uncached until the backend recovers: %s")
        :format(what, fname, tostring(err)))
  end
end

local function backend_ok(c)
  if c._failing then c._failing = false end
end

-- A result the set raised on (a value the codec refuses: a function, a
-- cycle). The backend is fine, so this is no failure burst: each one is
-- logged, and the caller still gets the result.
local function store_refused(st, err)
  local log = M and M.log or default_log
  log(("cache: %s: the result of %s was not cached: %s"):format(st.who, st.name, tostring(err)))
end

---------------------------------------------------------------------------
-- Requests (for `cached`)
---------------------------------------------------------------------------

-- Inside OpenResty: the current request's path and query arguments.
local function default_request_provider()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.var) ~= "table" and type(ngx.var) ~= "userdata"
     or type(ngx.req) ~= "table" then
    return nil
  end
  local ok, path = pcall(function() return ngx.var.uri end)
  if not ok or path == nil then return nil end
  local ok2, args = pcall(ngx.req.get_uri_args, 0)
  return path, ok2 and args or {}
end

local NO_REQUEST = "cached: no request: set cache.request_provider or use a key_prefix without %s"

---------------------------------------------------------------------------
-- Options
---------------------------------------------------------------------------

local common_options = {
  timeout = "timeout", unless = "callable", forced_update = "callable",
  is_stale = "callable", response_filter = "callable", hash_method = "hash",
  cache_none = "boolean", source_check = "boolean",
}
local cached_options = {
  key_prefix = "prefix", query_string = "boolean", make_cache_key = "callable",
  response_hit_indication = "boolean",
}
local memoize_options = {
  make_name = "callable", args_to_ignore = "list", name = "string",
}

-- A decorator timeout: any number but NaN, as a per-call timeout of the
-- backends (infinities mean never / already expired).
local function valid_timeout(v)
  return type(v) == "number" and v == v
end

-- What a bad value was, for error messages.
local function got(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  if v ~= v then return "NaN" end
  return type(v)
end

local function check_option(who, k, v, want)
  local ok
  if want == "timeout" then ok = valid_timeout(v)
  elseif want == "callable" then ok = callable(v)
  elseif want == "hash" then ok = callable(v) or (type(v) == "string" and config.hash_methods[v])
  elseif want == "prefix" then ok = type(v) == "string" or callable(v)
  elseif want == "list" then ok = type(v) == "table"
  else ok = type(v) == want end
  if not ok then
    local what = ({ callable = "function", hash = config.hash_method_names .. " or a function",
                    prefix = "string or function", list = "list of parameter names",
                    timeout = "number" })[want] or want
    raise(("%s: option '%s': %s expected, got %s"):format(who, k, what, got(v)))
  end
end

local function check_options(who, opts, specific)
  if type(opts) == "number" then
    check_option(who, "timeout", opts, "timeout")
    return { timeout = opts }
  end
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    raise(("%s: options table expected, got %s"):format(who, type(opts)))
  end
  for k, v in pairs(opts) do
    local want = common_options[k] or specific[k]
    if not want then
      raise(("%s: unknown option '%s'"):format(who, tostring(k)))
    end
    check_option(who, k, v, want)
  end
  return opts
end

-- The state shared by both decorators.
local function base_state(c, f, opts, who)
  local st = {
    c = c, f = f, who = who,
    unless = opts.unless, forced_update = opts.forced_update,
    is_stale = opts.is_stale, response_filter = opts.response_filter,
    cache_none = opts.cache_none == true,
    hash = opts.hash_method or c.hash_method,
    timeout = opts.timeout, -- d.cache_timeout (nil: the backend's default)
  }
  if st.unless then st.unless_args = takes_args(st.unless, 0) end
  if st.forced_update then st.forced_args = takes_args(st.forced_update, 0) end
  if st.is_stale then st.stale_args = takes_args(st.is_stale, 1) end
  local sc = opts.source_check
  if sc == nil then sc = c.source_check end
  if sc then
    st.source = function_source(underlying(f))
    if st.source == nil then
      raise(who .. ": source_check: the function has no source or bytecode to check")
    end
  end
  return st
end

-- The hex digest of bytes with the state's hash method.
local function hex_digest(st, bytes)
  if type(st.hash) == "string" then return core.hex_digest(st.hash, bytes) end
  local d = st.hash(bytes)
  if type(d) ~= "string" then
    raise(st.who .. ": hash_method must return a string (the digest bytes)")
  end
  return core.hex(d)
end

-- unless / forced_update / is_stale answer with exactly `true` (§9).
local function bypass(st, ...)
  if st.unless_args then return st.unless(st.f, ...) == true end
  return st.unless() == true
end

local function forced(st, ...)
  if st.forced_args then return st.forced_update(...) == true end
  return st.forced_update() == true
end

local function stale(st, value, ...)
  if st.stale_args then return st.is_stale(value, ...) == true end
  return st.is_stale(value) == true
end

---------------------------------------------------------------------------
-- The lookup and store steps shared by both decorators
---------------------------------------------------------------------------

-- What lookup decides once the get returned rv (nil on a miss): found,
-- value; or nil, nil, err on a backend failure.
local function judge(st, b, key, rv, ...)
  local found = rv ~= nil
  if not found and st.cache_none then
    local has, herr = b:has(key)
    if herr ~= nil then return nil, nil, herr end
    found = has == true
  end
  if found and st.is_stale and stale(st, (unpack_results(rv)), ...) then found = false end
  return found, rv
end

-- Returns found, value; or nil, nil, err on a backend failure.
local function lookup(st, key, ...)
  local b = st.c.cache
  local rv, err = b:get(key)
  if rv == nil and err ~= nil then return nil, nil, err end
  if rv ~= nil and not st.is_stale then return true, rv end
  return judge(st, b, key, rv, ...)
end

-- Stores what the function returned (unless filtered), then returns it.
-- A first result of nil is stored only with cache_none. `refresh` is the
-- version refresher of memoize (nil for cached), `obj` a method's instance.
local function store(st, key, refresh, obj, n, ...)
  if (n == 0 or (...) == nil) and not st.cache_none then return ... end
  if st.response_filter and not st.response_filter(...) then return ... end
  local c = st.c
  local timeout = st.timeout
  local b = c.cache
  -- the function has run: an error of the set must not lose its result
  local done, ok, err = pcall(b.set, b, key, pack_results(n, ...), timeout)
  if not done then
    store_refused(st, ok)
  elseif not ok then
    backend_failed(c, "set", st.name, err or "set returned false")
  else
    backend_ok(c)
    if refresh then refresh(st, timeout, obj) end
  end
  return ...
end

local function after_miss(st, key, refresh, obj, ...)
  return store(st, key, refresh, obj, select("#", ...), ...)
end

---------------------------------------------------------------------------
-- The Cache object
---------------------------------------------------------------------------

local Cache = {}
Cache.__index = Cache
D.Cache = Cache

-- Proxies to the backend object (c.cache), read at each call.
function Cache:get(...) return self.cache:get(...) end
function Cache:set(...) return self.cache:set(...) end
function Cache:add(...) return self.cache:add(...) end
function Cache:delete(...) return self.cache:delete(...) end
function Cache:delete_many(...) return self.cache:delete_many(...) end
function Cache:clear(...) return self.cache:clear(...) end
function Cache:get_many(...) return self.cache:get_many(...) end
function Cache:set_many(...) return self.cache:set_many(...) end
function Cache:get_dict(...) return self.cache:get_dict(...) end
function Cache:has(...) return self.cache:has(...) end
function Cache:inc(...) return self.cache:inc(...) end
function Cache:dec(...) return self.cache:dec(...) end

function Cache:__tostring()
  return ("Cache(%s)"):format(tostring(self.cache))
end

--- cache.new(config): a Cache object on the backend the config names.
function D.new(config_table)
  local cfg, class, options = config.resolve(config_table)
  local backend
  if type(class) == "function" then
    backend = class(cfg, options)
    if backend == nil then raise("cache.new: the CACHE_TYPE factory returned nothing") end
  else
    local ctor = M and M[class]
    if ctor == nil then
      raise(("cache.new: no constructor for cache type '%s'"):format(class))
    end
    local ok, b = pcall(ctor, options)
    if not ok then raise(b) end
    backend = b
  end
  local self = setmetatable({
    cache = backend,
    _failing = false, -- true after a failure, until the backend answers again
    config = cfg,
    hash_method = cfg.CACHE_HASH_METHOD,
    source_check = cfg.CACHE_SOURCE_CHECK,
  }, Cache)
  return self
end

-- Accepts c:deco(opts), c:deco(fn [, opts]), c:deco(timeout), c:deco().
local function decorator(self, a, b, who, specific, make)
  if getmetatable(self) ~= Cache then
    raise(("%s: call it as c:%s{...}"):format(who, who))
  end
  if callable(a) then
    return make(self, a, check_options(who, b, specific))
  end
  local opts = check_options(who, a, specific)
  return function(fn)
    if not callable(fn) then
      raise(("%s: a function to decorate expected, got %s"):format(who, type(fn)))
    end
    return make(self, fn, opts)
  end
end

-- Decorated functions are tables: uncached, cache_timeout, make_cache_key,
-- and a __call that runs the decorator. Their state is kept here.
local states = setmetatable({}, { __mode = "k" })

-- cache_timeout is not a raw field of d: it lives in st.timeout, where the
-- store step and the version keys read it, and reaches d through __index
-- and __newindex, so that every assignment is checked.
local function decorated(st, f, call)
  local d = { uncached = f }
  states[d] = st
  return setmetatable(d, {
    __call = call,
    __index = function(_, k)
      if k == "cache_timeout" then return st.timeout end
    end,
    __newindex = function(t, k, v)
      if k ~= "cache_timeout" then return rawset(t, k, v) end
      if v ~= nil and not valid_timeout(v) then
        raise(("%s: cache_timeout: number or nil expected, got %s"):format(st.who, got(v)))
      end
      st.timeout = v
    end,
    __tostring = function() return ("%s function: %s"):format(st.who, st.name) end,
  })
end

---------------------------------------------------------------------------
-- cached
---------------------------------------------------------------------------

-- The key of a `cached` function for a request path and query arguments
-- (Flask-Caching 2.5 `_make_cache_key`, §5.3).
local function cached_key(st, path, args)
  local prefix = st.key_prefix
  if type(prefix) ~= "string" then
    prefix = prefix()
    if type(prefix) ~= "string" and type(prefix) ~= "number" then
      raise("cached: key_prefix function must return a string, got " .. type(prefix))
    end
    prefix = tostring(prefix)
  elseif st.prefix_has_path then
    if path == nil then raise(NO_REQUEST) end
    path = tostring(path)
    -- Python's `prefix % path`: %s is the path, %% a percent sign
    prefix = prefix:gsub("%%([%%s])", function(ch) return ch == "s" and path or "%" end)
  end
  if st.query_string then
    if path == nil and args == nil then raise(NO_REQUEST) end
    local digest
    if type(st.hash) == "string" then
      digest = core.query_digest(st.hash, args or {}, st.source)
    else
      digest = hex_digest(st, core.query_text(args or {}) .. (st.source or ""))
    end
    return prefix .. digest
  end
  if st.source_hex then return prefix .. st.source_hex end
  return prefix
end

local function request_key(st)
  local path, args
  if st.needs_request then
    path, args = (M and M.request_provider or default_request_provider)()
    if path == nil then raise(NO_REQUEST) end
  end
  return cached_key(st, path, args or {})
end

local function hit_indication()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.header then
    pcall(function() ngx.header["hit_cache"] = "True" end)
  end
end

local function make_cached(c, f, opts)
  local st = base_state(c, f, opts, "cached")
  st.name = default_name(underlying(f)) or tostring(f)
  st.key_prefix = opts.key_prefix or "view/%s"
  st.query_string = opts.query_string == true
  st.prefix_has_path = type(st.key_prefix) == "string" and st.key_prefix:find("%s", 1, true) ~= nil
  st.needs_request = st.query_string or st.prefix_has_path
  st.hit_indication = opts.response_hit_indication == true
  if st.source and not st.query_string then st.source_hex = hex_digest(st, st.source) end
  local custom_key = opts.make_cache_key

  local function call(d, ...)
    if st.unless and bypass(st, ...) then return f(...) end
    local key
    if custom_key then key = custom_key(...) else key = d.make_cache_key(...) end
    if type(key) ~= "string" and type(key) ~= "number" then
      raise("cached: make_cache_key must return a string, got " .. type(key))
    end
    if not (st.forced_update and forced(st, ...)) then
      local found, rv, err = lookup(st, key, ...)
      if err ~= nil then
        backend_failed(c, "get", st.name, err)
        return f(...)
      end
      if found then
        backend_ok(c)
        if st.hit_indication then hit_indication() end
        return unpack_results(rv)
      end
    end
    return after_miss(st, key, nil, 0, f(...))
  end

  local d = decorated(st, f, call)
  -- the default key builder: the current request (arguments do not matter)
  d.make_cache_key = function() return request_key(st) end
  return d
end

function Cache:cached(a, b)
  return decorator(self, a, b, "cached", cached_options, make_cached)
end

--- Deletes what a `cached` function stored for a path (and query
-- arguments); without a path, for the current request.
function Cache:delete_cached(f, path, args)
  local st = states[f]
  if not st or st.who ~= "cached" then
    raise("delete_cached: a function decorated with c:cached expected")
  end
  local key
  if path == nil then
    key = request_key(st)
  else
    key = cached_key(st, path, args or {})
  end
  return self.cache:delete(key)
end

---------------------------------------------------------------------------
-- memoize: the version scheme (behaviour.md §6.5)
---------------------------------------------------------------------------

-- Per-process identities for objects without __cache_key / __tostring,
-- made unique across processes by a random per-process part.
local identities = setmetatable({}, { __mode = "k" })
local identity_count = 0
local process_tag

-- The instance part of a method's version key: its __cache_key or
-- __tostring, else an identity valid in this process only.
local function instance_token(obj)
  local mt = getmetatable(obj)
  if type(mt) == "table" then
    local ck = mt.__cache_key
    if ck ~= nil then
      if type(ck) == "function" then ck = ck(obj) end
      if type(ck) ~= "string" then raise("memoize: __cache_key must give a string") end
      return ck
    end
    if mt.__tostring ~= nil then return tostring(obj) end
  end
  local t = type(obj)
  if t == "table" or t == "userdata" or t == "function" or t == "thread" then
    local id = identities[obj]
    if not id then
      process_tag = process_tag or core.memo_version()
      identity_count = identity_count + 1
      id = ("%s#%s%d"):format(t, process_tag, identity_count)
      identities[obj] = id
    end
    return id
  end
  return tostring(obj)
end

-- The version keys of a call: the function's, then the instance's.
local function version_keys(st, ...)
  local fkey = st.version_key
  if not st.is_method then return fkey end
  if select("#", ...) == 0 then
    raise(("memoize: %s is a method: pass its instance (self) first"):format(st.name))
  end
  local token = instance_token((...))
  return fkey, st.fname .. "." .. token .. "_memver", token
end

local function valid_version(v)
  return type(v) == "string" and v ~= ""
end

-- Fetches (creating what is missing) the versions of a call. Returns the
-- version string and the instance token, or nil, err. A version key is
-- created with the decorator's timeout, not 0: a call that stores nothing
-- (a nil result, an error) must not leave a key that never expires (unless
-- the timeout is 0); each stored result extends it (refresh_versions).
local function current_version(st, ...)
  local b = st.c.cache
  local fkey, ikey, token = version_keys(st, ...)
  if not ikey then
    local v, err = b:get_many(fkey)
    if err ~= nil then return nil, err end
    if valid_version(v) then return v end
    v = core.memo_version()
    local ok, _, serr = b:set_many({ [fkey] = v }, st.timeout)
    if not ok then return nil, serr or "set_many of a version key failed" end
    return v
  end
  local v1, v2, err = b:get_many(fkey, ikey)
  if err ~= nil then return nil, err end
  local dirty
  if not valid_version(v1) then v1, dirty = core.memo_version(), true end
  if not valid_version(v2) then v2, dirty = core.memo_version(), true end
  if dirty then
    local ok, _, serr = b:set_many({ [fkey] = v1, [ikey] = v2 }, st.timeout)
    if not ok then return nil, serr or "set_many of version keys failed" end
  end
  return v1 .. v2, token
end

-- After a successful write: rewrite the version keys with the entry's
-- timeout, so they live as long as the newest entry (FC-2.5, PR #670).
local function refresh_versions(st, timeout, obj)
  local b = st.c.cache
  local fkey, ikey = version_keys(st, obj)
  local v1, v2, err
  if ikey then v1, v2, err = b:get_many(fkey, ikey) else v1, err = b:get_many(fkey) end
  if err ~= nil then return end
  local mapping = { [fkey] = valid_version(v1) and v1 or core.memo_version() }
  if ikey then mapping[ikey] = valid_version(v2) and v2 or core.memo_version() end
  b:set_many(mapping, timeout)
end

-- The key of a call, or nil, err when the backend failed.
local function memo_key(st, ...)
  local version, token_or_err = current_version(st, ...)
  if version == nil then return nil, token_or_err end
  local name = st.fname
  if st.make_name then
    name = st.make_name(name)
    if type(name) ~= "string" then
      raise("memoize: make_name must return a string, got " .. type(name))
    end
  end
  local hash = st.hash
  if st.plain_args then
    if type(hash) == "string" then return core.memo_key(hash, name, st.source, version, ...) end
    local digest = hash(core.memo_text(name, st.source, ...))
    if type(digest) ~= "string" then raise("memoize: hash_method must return a string") end
    return core.memo_head(digest, version)
  end
  -- methods and ignored arguments: self enters as its token, ignored
  -- parameters as nil (behaviour.md §6.3)
  local n = select("#", ...)
  local args = { ... }
  if st.is_method and n >= 1 then args[1] = token_or_err end
  for i in pairs(st.ignore) do args[i] = nil end
  if type(hash) == "string" then
    return core.memo_key(hash, name, st.source, version, unpack(args, 1, n))
  end
  local digest = hash(core.memo_text(name, st.source, unpack(args, 1, n)))
  if type(digest) ~= "string" then raise("memoize: hash_method must return a string") end
  return core.memo_head(digest, version)
end

local function make_memoized(c, f, opts)
  local st = base_state(c, f, opts, "memoize")
  local lf = underlying(f)
  local fname = opts.name or default_name(lf)
  if fname == nil then
    raise("memoize: cannot derive a stable name for this function: give it a name (option 'name')")
  end
  st.fname, st.name = fname, fname
  st.version_key = fname .. "_memver"
  st.make_name = opts.make_name
  local params = param_names(lf)
  st.ignore = {}
  local ignore_self = false
  for _, pname in ipairs(opts.args_to_ignore or {}) do
    local found
    for i, p in ipairs(params) do
      if p == pname then st.ignore[i], found = true, true end
    end
    if not found then
      raise(("memoize: args_to_ignore: '%s' is not a parameter of %s"):format(tostring(pname), fname))
    end
    if pname == "self" then ignore_self = true end
  end
  st.is_method = params[1] == "self" and not ignore_self
  st.plain_args = not st.is_method and next(st.ignore) == nil

  local is_method = st.is_method
  local unless, forced_update, is_stale = st.unless, st.forced_update, st.is_stale
  local default_key = function(...) return memo_key(st, ...) end

  -- The fused path (bindings/memo.c memo_fetch): version, key and value
  -- read in one call into C, for a plain function whose key needs nothing
  -- from Lua (a named digest, no make_name). It declines (returns nothing)
  -- whenever it cannot do exactly what memo_key + lookup do, and the call
  -- then takes the plain path below.
  local ctx
  if st.plain_args and type(st.hash) == "string" and not st.make_name then
    ctx = core.memo_ctx(st.hash, fname, st.source, st.version_key, is_stale ~= nil)
  end
  local memo_fetch = core.memo_fetch

  local function call(d, ...)
    if unless and bypass(st, ...) then return f(...) end
    local force = forced_update and forced(st, ...)
    if ctx and not force and d.make_cache_key == default_key then
      local key, rv, err, n = memo_fetch(ctx, c.cache, ...)
      if key == true then -- a hit (without is_stale: nothing more to check)
        if c._failing then c._failing = false end
        if n then return unpack(rv, 1, n) end -- several results (MULTI)
        return rv
      elseif key then
        if err ~= nil then
          backend_failed(c, "get", st.name, err)
          return f(...)
        end
        local found, gerr
        found, rv, gerr = judge(st, c.cache, key, rv, ...)
        if gerr ~= nil then
          backend_failed(c, "get", st.name, gerr)
          return f(...)
        end
        if found then
          backend_ok(c)
          return unpack_results(rv)
        end
        return after_miss(st, key, refresh_versions, nil, f(...))
      elseif key == false then
        backend_failed(c, "reading the version", st.name, rv)
        return f(...)
      end
    end
    local key, err = d.make_cache_key(...)
    if key == nil then
      backend_failed(c, "reading the version", st.name, err)
      return f(...)
    end
    if not force then
      local found, rv, gerr = lookup(st, key, ...)
      if gerr ~= nil then
        backend_failed(c, "get", st.name, gerr)
        return f(...)
      end
      if found then
        backend_ok(c)
        return unpack_results(rv)
      end
    end
    if is_method then
      return after_miss(st, key, refresh_versions, (...), f(...))
    end
    return after_miss(st, key, refresh_versions, nil, f(...))
  end

  local d = decorated(st, f, call)
  d.make_cache_key = default_key
  return d
end

function Cache:memoize(a, b)
  return decorator(self, a, b, "memoize", memoize_options, make_memoized)
end

local function memoized_state(f, who)
  local st = states[f]
  if not st or st.who ~= "memoize" then
    raise(("%s: a function decorated with c:memoize expected, got %s"):format(who,
          type(f) == "table" and "another table" or type(f)))
  end
  return st
end

-- The state for operations through this Cache (which may differ from the
-- one that decorated f, as in Flask-Caching where self's backend is used).
local function on_cache(self, st)
  if st.c == self then return st end
  return setmetatable({ c = self }, { __index = st })
end

--- delete_memoized(f): new version for f (every call forgotten);
-- delete_memoized(f, obj) for a method: new version for that instance;
-- delete_memoized(f, ...): forget that call's result.
function Cache:delete_memoized(f, ...)
  local st = on_cache(self, memoized_state(f, "delete_memoized"))
  local n = select("#", ...)
  local vkey
  if n == 0 then
    vkey = st.version_key
  elseif st.is_method and n == 1 then
    local _
    _, vkey = version_keys(st, ...)
  end
  if vkey then
    local ok, _, err = self.cache:set_many({ [vkey] = core.memo_version() }, st.timeout)
    return ok, err
  end
  local key, err = f.make_cache_key(...)
  if key == nil then return false, err end
  return self.cache:delete(key)
end

--- delete_memoized_verhash(f [, obj]): deletes the version key itself (the
-- instance's when obj is given for a method).
function Cache:delete_memoized_verhash(f, ...)
  local st = on_cache(self, memoized_state(f, "delete_memoized_verhash"))
  local vkey = st.version_key
  if select("#", ...) > 0 then
    local fkey, ikey = version_keys(st, ...)
    vkey = ikey or fkey
  end
  local ok, _, err = self.cache:delete_many(vkey)
  return ok, err
end

---------------------------------------------------------------------------
-- Installation into the cache module
---------------------------------------------------------------------------

function D.install(module)
  M = module
  M.new = D.new
  M.Cache = Cache
  if M.request_provider == nil then M.request_provider = default_request_provider end
  if M.log == nil then M.log = default_log end
  return M
end

return D
