--- cache.fetch: c:fetch(key, opts, callback, ...), read-through with single
-- flight, stale serving and early refresh (API.md §4).
--
-- The backend steps are C (cache.core's fetch_read, fetch_store, fetch_lock,
-- fetch_unlock: engine/fetch.c builds and reads the entry envelope and
-- counts c:stats()); this file is the call flow between them: running the
-- callback, waiting for another caller's lock, serving stale values, and
-- in OpenResty the per-worker semaphores and the refresh timers. A fresh
-- hit is one C call.
local core = require "cache.core"
local config = require "cache.config"
local raise = config.raise
config.internal(debug.getinfo(1, "S").source)

local type, pcall, error, tostring, getmetatable, setmetatable, rawget, pairs, select =
  type, pcall, error, tostring, getmetatable, setmetatable, rawget, pairs, select
local min = math.min

local note = core.fetch_note

-- The steps that reach the backend. Inside nginx they run on the object's
-- transport (cache.cosocket: cosockets where the phase allows them, as its
-- methods do); elsewhere they are the C functions themselves.
local read, store, lock, unlock = core.fetch_read, core.fetch_store, core.fetch_lock, core.fetch_unlock
-- fetch_read, after checking the key and the callback (raising at the line
-- that called c:fetch)
local first_read = core.fetch_call
local ngx_lua = rawget(_G, "ngx")
if type(ngx_lua) == "table" and type(ngx_lua.get_phase) == "function" then
  local ok, cosocket = pcall(require, "cache.cosocket")
  if ok and cosocket.call then
    local call = cosocket.call
    local c_read, c_store, c_lock, c_unlock, c_first =
      core.fetch_read, core.fetch_store, core.fetch_lock, core.fetch_unlock, core.fetch_call
    read = function(b, ...) return call(b, c_read, ...) end
    store = function(b, ...) return call(b, c_store, ...) end
    lock = function(b, ...) return call(b, c_lock, ...) end
    unlock = function(b, ...) return call(b, c_unlock, ...) end
    first_read = function(b, ...) return call(b, c_first, ...) end
  end
end
local monotonic, block_sleep = core.monotonic, core.sleep

-- cache_fetch_note_kind (engine/fetch.h)
local LEVEL1, LEVEL2, COMPUTED, STALE, RUN, RUN_FAILED, WAIT, LOCK_TIMEOUT = 0, 1, 2, 3, 4, 5, 6, 7
local NOTE_LEVEL = { LEVEL1, LEVEL2 }

local F = {}
local M -- the cache module (cache.log), set by install

---------------------------------------------------------------------------
-- Options
---------------------------------------------------------------------------

-- Option name -> what its value must be.
local kinds = {
  timeout = "timeout", neg_timeout = "timeout", stale_timeout = "seconds",
  refresh = "refresh", early_refresh = "seconds", lock = "boolean",
  lock_timeout = "seconds", lock_ttl = "positive",
}
F.option_kinds = kinds

-- The CACHE_FETCH_* keys of cache.new and the option each sets.
F.config_keys = {
  CACHE_FETCH_NEG_TIMEOUT = "neg_timeout", CACHE_FETCH_STALE_TIMEOUT = "stale_timeout",
  CACHE_FETCH_REFRESH = "refresh", CACHE_FETCH_EARLY_REFRESH = "early_refresh",
  CACHE_FETCH_LOCK = "lock", CACHE_FETCH_LOCK_TIMEOUT = "lock_timeout",
  CACHE_FETCH_LOCK_TTL = "lock_ttl",
}

local function got(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  if v ~= v then return "NaN" end
  return type(v)
end

--- Raises unless v suits option k ("<who>: option '<k>': ...", or
-- "<who>: <label>: ..." when a label is given). Numbers: timeouts any
-- number but NaN; seconds >= 0; lock_ttl > 0.
function F.check_option(who, k, v, label)
  local kind = kinds[k]
  if not kind then raise(("%s: unknown option '%s'"):format(who, tostring(k))) end
  local ok, want
  if kind == "timeout" then
    ok, want = type(v) == "number" and v == v, "number"
  elseif kind == "seconds" then
    ok, want = type(v) == "number" and v >= 0, "number >= 0"
  elseif kind == "positive" then
    ok, want = type(v) == "number" and v > 0, "number > 0"
  elseif kind == "refresh" then
    ok, want = v == "inline" or v == "background", "'inline' or 'background'"
  else
    ok, want = type(v) == kind, kind
  end
  if not ok then
    raise(("%s: %s: %s expected, got %s"):format(who, label or ("option '" .. k .. "'"), want, got(v)))
  end
end
local check_option = F.check_option

local DEFAULTS = {
  stale_timeout = 0, refresh = "inline", early_refresh = 0, lock = false,
  lock_timeout = 5, lock_ttl = 30,
}

local weak_keys = { __mode = "k" }
local NO_OPTIONS = {} -- the key of the resolved options of a call without opts

--- The per-object state of fetch: its defaults (overlaid on DEFAULTS), the
-- options tables seen (checked once, then looked up), and in OpenResty the
-- worker's flights and refreshes by key.
function F.state(defaults)
  local base = {}
  for k, v in pairs(DEFAULTS) do base[k] = v end
  for k, v in pairs(defaults or {}) do base[k] = v end
  local resolved = setmetatable({}, weak_keys)
  resolved[NO_OPTIONS] = base
  return { base = base, resolved = resolved, flights = {}, refreshing = {}, failing = false }
end

-- opts checked, merged over the defaults, and remembered (an options table
-- is expected to be built once and reused: a table changed after its first
-- use is not looked at again).
local function resolve(st, opts)
  if type(opts) ~= "table" then
    raise(("fetch: options table or nil expected, got %s"):format(type(opts)))
  end
  local o = {}
  for k, v in pairs(st.base) do o[k] = v end
  for k, v in pairs(opts) do
    check_option("fetch", k, v)
    o[k] = v
  end
  st.resolved[opts] = o
  return o
end

---------------------------------------------------------------------------
-- Logging and the environment
---------------------------------------------------------------------------

local function log(msg)
  local f = M and M.log
  if f then return f(msg) end
  io.stderr:write(msg, "\n")
end

-- Backend failures are logged once per burst, as the decorators do.
local function backend_failed(st, what, err)
  if not st.failing then
    st.failing = true
    log(("cache: fetch: %s failed, answering from the callback until the backend recovers: %s")
        :format(what, tostring(err)))
  end
end

local ngx = rawget(_G, "ngx")
if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then ngx = nil end

-- Phases where a request may yield (ngx.sleep, semaphores).
local yieldable_phases = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

local function yieldable()
  return ngx ~= nil and yieldable_phases[ngx.get_phase()] == true
end

local semaphore
local function new_semaphore()
  if semaphore == nil then
    local ok, mod = pcall(require, "ngx.semaphore")
    semaphore = ok and mod or false
  end
  return semaphore and semaphore.new(0) or nil
end

-- Waits s seconds: yielding to nginx where it can, else blocking the
-- process (plain Lua has nothing else to run meanwhile).
local function sleep(s)
  if yieldable() then ngx.sleep(s) else block_sleep(s) end
end

---------------------------------------------------------------------------
-- Running the callback
---------------------------------------------------------------------------

local OK, FAILED, RAISED = 1, 2, 3

-- Runs the callback and stores what it returned. Returns OK, value;
-- FAILED, err (it returned nil, err); or RAISED, error (it raised). st is
-- the object's fetch state (for logging failures once per burst).
local function compute(b, st, o, key, cb, ...)
  note(b, RUN)
  local t0 = monotonic()
  local ran, v, err, ttl = pcall(cb, ...)
  local delta = monotonic() - t0
  if not ran then
    note(b, RUN_FAILED)
    return RAISED, v
  end
  if v == nil and err ~= nil then
    note(b, RUN_FAILED)
    return FAILED, err
  end
  if ttl ~= nil and (type(ttl) ~= "number" or ttl ~= ttl) then
    return RAISED, ("fetch: the callback's third result (a timeout): number expected, got %s"):format(got(ttl))
  end
  local timeout
  if v == nil then
    if o.neg_timeout ~= nil then timeout = ttl or o.neg_timeout end
  else
    timeout = ttl or o.timeout or b.default_timeout
  end
  if timeout ~= nil then
    local done, stored, serr = pcall(store, b, key, v, timeout, o.stale_timeout, delta)
    if not done then
      log(("cache: fetch: the value of %s was not cached: %s"):format(tostring(key), tostring(stored)))
    elseif not stored then
      backend_failed(st, "storing", serr)
    end
  end
  return OK, v
end

-- The result of a computation when nothing stale is at hand.
local function computed(b, kind, v)
  if kind == OK then
    note(b, COMPUTED)
    return v, nil, 3
  elseif kind == FAILED then
    return nil, v
  end
  error(v, 0)
end

-- The result of a computation that replaces a stale (or early-refreshed)
-- value: a failure serves that value, logged.
local function computed_or(b, key, kind, v, old, old_level)
  if kind == OK then
    note(b, COMPUTED)
    return v, nil, 3
  end
  log(("cache: fetch: the callback for %s failed, serving the %s value: %s")
      :format(tostring(key), old_level == 4 and "stale" or "current", tostring(v)))
  if old_level == 4 then
    note(b, STALE)
  else
    note(b, NOTE_LEVEL[old_level])
  end
  return old, nil, old_level
end

---------------------------------------------------------------------------
-- Refreshing in the background (OpenResty)
---------------------------------------------------------------------------

local function refresh_job(premature, b, st, o, key, stale, cb, ...)
  if not premature then
    local token = lock(b, key, o.lock_ttl)
    if token and stale and select(2, read(b, key, 0, true)) then
      -- fresh again: another worker refreshed it meanwhile
      unlock(b, key, token)
      token = false
    end
    if token ~= false then -- nil: the lock's backend failed; refresh anyway
      local kind, err = compute(b, st, o, key, cb, ...)
      if token then unlock(b, key, token) end
      if kind ~= OK then
        log(("cache: fetch: the background refresh of %s failed: %s"):format(tostring(key), tostring(err)))
      end
    end
  end
  st.refreshing[key] = nil
end

-- Starts a refresh in an ngx.timer, one per key and worker at a time.
-- False when no timer can be had here (the caller refreshes inline).
local function refresh_later(b, st, o, key, stale, cb, ...)
  if ngx == nil or ngx.timer == nil then return false end
  if st.refreshing[key] then return true end
  local ok, started = pcall(ngx.timer.at, 0, refresh_job, b, st, o, key, stale, cb, ...)
  if ok and started then
    st.refreshing[key] = true
    return true
  end
  return false
end

---------------------------------------------------------------------------
-- The paths past a fresh hit
---------------------------------------------------------------------------

-- A value past its freshness (level 4), or a fresh one this reader drew an
-- early refresh for (old_level 1 or 2): one caller recomputes, the others
-- keep the old value.
local function refresh(b, st, o, key, cb, old, old_level, ...)
  if (old_level ~= 4 or o.refresh == "background")
     and refresh_later(b, st, o, key, old_level == 4, cb, ...) then
    note(b, old_level == 4 and STALE or NOTE_LEVEL[old_level])
    return old, nil, old_level
  end
  local token
  if o.lock or o.refresh == "background" or old_level ~= 4 then
    -- early refreshes and background ones are single flight by nature
    token = lock(b, key, o.lock_ttl)
    if token == false then
      note(b, old_level == 4 and STALE or NOTE_LEVEL[old_level])
      return old, nil, old_level
    end
    if token and old_level == 4 then
      -- refreshed by another caller between the read and the lock?
      local v, level = read(b, key, 0)
      if level then
        unlock(b, key, token)
        return v, nil, level
      end
    end
  end
  local kind, v = compute(b, st, o, key, cb, ...)
  if token then unlock(b, key, token) end
  return computed_or(b, key, kind, v, old, old_level)
end

-- Waits for another caller's value: the backend is read again every few
-- milliseconds until the value is there, the lock is free (then this
-- caller takes it), or the deadline passes.
local lead

local function poll(b, st, o, key, deadline, cb, ...)
  note(b, WAIT)
  local interval = 0.005
  while true do
    local now = monotonic()
    if now >= deadline then
      note(b, LOCK_TIMEOUT)
      return nil, "lock timeout"
    end
    sleep(min(interval, deadline - now))
    interval = min(interval * 1.5, 0.05)
    local v, level, state, sv = read(b, key, 0)
    if level then return v, nil, level end
    if state == "stale" then
      note(b, STALE)
      return sv, nil, 4
    end
    if state == "error" then
      backend_failed(st, "reading", sv)
      return computed(b, compute(b, st, o, key, cb, ...))
    end
    local token = lock(b, key, o.lock_ttl)
    if token then return lead(b, st, o, key, token, cb, ...) end
    if token == nil then
      return computed(b, compute(b, st, o, key, cb, ...))
    end
  end
end

-- This caller holds the lock: it computes, unless the value arrived
-- between its read and its lock.
function lead(b, st, o, key, token, cb, ...)
  local v, level = read(b, key, 0)
  if level then
    unlock(b, key, token)
    return v, nil, level
  end
  local kind, r = compute(b, st, o, key, cb, ...)
  unlock(b, key, token)
  return computed(b, kind, r)
end

-- A miss with lock = true: across processes through the backend's lock;
-- within one nginx worker the callers after the first wait on its
-- semaphore instead of each polling the backend.
local function single_flight(b, st, o, key, deadline, cb, ...)
  local token, lerr = lock(b, key, o.lock_ttl)
  if token then return lead(b, st, o, key, token, cb, ...) end
  if token == nil then
    backend_failed(st, "taking the lock", lerr)
    return computed(b, compute(b, st, o, key, cb, ...))
  end
  return poll(b, st, o, key, deadline, cb, ...)
end

local function follow(b, st, o, key, fl, deadline, cb, ...)
  note(b, WAIT)
  while true do
    local now = monotonic()
    if now >= deadline then
      note(b, LOCK_TIMEOUT)
      return nil, "lock timeout"
    end
    fl.waiters = fl.waiters + 1
    fl.sema:wait(deadline - now)
    local v, level, state, sv = read(b, key, 0)
    if level then return v, nil, level end
    if state == "stale" then
      note(b, STALE)
      return sv, nil, 4
    end
    local current = st.flights[key]
    if current == nil then -- the flight ended without a value: lead one
      return F.miss(b, st, o, key, cb, deadline, ...)
    end
    fl = current
  end
end

-- Nothing usable under the key.
function F.miss(b, st, o, key, cb, deadline, ...)
  if not o.lock then return computed(b, compute(b, st, o, key, cb, ...)) end
  deadline = deadline or monotonic() + o.lock_timeout
  if not yieldable() then return single_flight(b, st, o, key, deadline, cb, ...) end
  local fl = st.flights[key]
  if fl then return follow(b, st, o, key, fl, deadline, cb, ...) end
  fl = { sema = new_semaphore(), waiters = 0 }
  if fl.sema == nil then return single_flight(b, st, o, key, deadline, cb, ...) end
  st.flights[key] = fl
  local ok, v, err, level = pcall(single_flight, b, st, o, key, deadline, cb, ...)
  st.flights[key] = nil
  if fl.waiters > 0 then fl.sema:post(fl.waiters) end
  if not ok then error(v, 0) end
  return v, err, level
end
local miss = F.miss

-- Everything but a fresh hit. state, sv, slevel: fetch_read's third to
-- fifth results.
local function slow(b, st, o, key, cb, state, sv, slevel, ...)
  if state == "error" then
    backend_failed(st, "reading", sv)
    return computed(b, compute(b, st, o, key, cb, ...))
  end
  st.failing = false
  if state == "miss" then return miss(b, st, o, key, cb, nil, ...) end
  return refresh(b, st, o, key, cb, sv, state == "stale" and 4 or slevel, ...)
end

---------------------------------------------------------------------------
-- The methods
---------------------------------------------------------------------------

--- The fetch method of a backend object (TieredCache), whose state is its
-- raw field _fetch (lua/cache/tiered.lua sets it). A hit is one Lua call
-- and one C call.
function F.backend_fetch(self, key, opts, cb, ...)
  local st = self._fetch
  if st == nil then raise("fetch: call it as c:fetch(key, opts, callback)") end
  local o = st.resolved[opts or NO_OPTIONS] or resolve(st, opts)
  local v, level, state, sv, slevel = first_read(self, key, o.early_refresh, cb)
  if level then return v, nil, level end
  return slow(self, st, o, key, cb, state, sv, slevel, ...)
end

--- Adds Cache:fetch to the Cache class, and F.recompute; module is the
-- cache module.
function F.install(module, Cache)
  M = module
  local function state_of(self)
    local st = self._fetch
    if st == nil then
      if getmetatable(self) ~= Cache then raise("fetch: call it as c:fetch(key, opts, callback)") end
      if not core.is_backend(self.cache) then
        raise("fetch: needs one of cache's backends (this Cache's backend is a Lua object)")
      end
      st = F.state(self.fetch_defaults)
      self._fetch = st
    end
    return st
  end

  --- c:fetch(key, opts, callback, ...) -> value, err, level (API.md §4).
  -- A hit is one Lua call and one C call.
  function Cache:fetch(key, opts, callback, ...)
    local st = self._fetch or state_of(self)
    local o = st.resolved[opts or NO_OPTIONS] or resolve(st, opts)
    local b = self.cache
    local v, level, state, sv, slevel = first_read(b, key, o.early_refresh, callback)
    if level then return v, nil, level end
    return slow(b, st, o, key, callback, state, sv, slevel, ...)
  end

  --- Runs the callback and stores its result as fetch would, whatever is
  -- stored (the decorators' forced_update and is_stale).
  function F.recompute(c, key, opts, cb, ...)
    local st = state_of(c)
    local o = st.resolved[opts or NO_OPTIONS] or resolve(st, opts)
    return computed(c.cache, compute(c.cache, st, o, key, cb, ...))
  end
end

return F
