--- cache.cosocket: the OpenResty transport of the network backends.
--
-- In the nginx phases that allow cosockets, a method of RedisCache or
-- UWSGICache does its I/O through ngx.socket.tcp, so the request yields
-- while it waits and the worker serves others. Everything but moving bytes
-- is C (bindings/co.c, engine/co.h): the method itself runs under an
-- operation object, and whenever it needs an exchange, C says what to do
-- with the socket ("connect", "send", "recv", "keepalive", "close") and
-- this file does exactly that, then runs the method again with the
-- exchange's outcome. No C function here calls Lua code that yields.
--
-- Option transport = "auto" (default: cosockets where the phase allows
-- them, the blocking path elsewhere), "cosocket" (a phase without
-- cosockets gives nil, err naming it), "blocking" (never cosockets).
local core = require "cache.core"

local C = {}

local select, error, pcall, setmetatable, getmetatable, type =
  select, error, pcall, setmetatable, getmetatable, type
local unpack = table.unpack or unpack ---@diagnostic disable-line: deprecated

local co_new, co_run, co_step, transport_of = core.co_new, core.co_run, core.co_step, core.transport

--- The phases in which lua-nginx-module allows cosockets.
C.phases = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
  preread = true, -- stream
}

local function ngx_here()
  local n = rawget(_G, "ngx")
  if type(n) == "table" and type(n.get_phase) == "function" and n.socket then return n end
  return nil
end

--- Whether this call may use cosockets now, and the phase's name.
local function phase()
  local n = ngx_here()
  if not n then return false, "plain Lua (no ngx)" end
  local p = n.get_phase()
  return C.phases[p] == true, p
end

-- ---- the driver ------------------------------------------------------------------

-- Pool options by pool name: one table per name, not one per connect.
local pool_opts = setmetatable({}, { __mode = "v" })

--- Performs the exchanges an operation waits for, as C says, until C says
-- "run". Each exchange under way has its connection (its slot); a socket is
-- closed on every error (C asks for it) and kept only when C says so,
-- after a clean finish.
local function perform(op)
  local tcp = ngx_here().socket.tcp
  local socks = {}
  local ok, x
  while true do
    local what, slot, a, b, c, d, e, f, g, h = co_step(op, ok, x)
    local sock = socks[slot]
    if what == "send" then
      ok, x = sock:send(a)
    elseif what == "recv" then
      local data, err = sock:receiveany(a)
      if data then ok, x = true, data else ok, x = false, err end
    elseif what == "connect" then
      sock = tcp()
      socks[slot] = sock
      sock:settimeouts(d, e, f)
      local opts = pool_opts[c]
      if not opts then
        opts = { pool = c, pool_size = g, backlog = h }
        pool_opts[c] = opts
      end
      if b then ok, x = sock:connect(a, b, opts) else ok, x = sock:connect(a, opts) end
      if ok then x = sock:getreusedtimes() or 0 end
    elseif what == "keepalive" then
      sock:setkeepalive(a, b)
      socks[slot], ok, x = nil, true, nil
    elseif what == "close" then
      sock:close()
      socks[slot], ok, x = nil, true, nil
    else -- "run"
      for _, s in pairs(socks) do s:close() end
      return
    end
    if not ok then ok = false end
  end
end

-- A C method called through pcall cannot tell its own name: argument
-- errors read "to '?'". The method's name is put back.
local function named(name, msg)
  if type(msg) == "string" then
    return (msg:gsub("^(bad argument #%d+ to )'%?'", "%1'" .. name .. "'", 1))
  end
  return msg
end

-- fn's results once the operation needs no more exchanges; a raise from
-- fn (bad arguments) at the caller's line (this function is tail-called by
-- the method, so level 2 is the caller).
local function finish(name, op, self, fn, n, args, status, ...)
  if status == false then return ... end
  if status == nil then error(named(name, (...)), 2) end
  perform(op)
  return finish(name, op, self, fn, n, args, co_run(op, fn, self, unpack(args, 1, n)))
end

local function rethrow(name, ok, ...)
  if ok then return ... end
  error(named(name, (...)), 2)
end

--- Calls made by each path in this worker (a check of the setup: in the
-- phases that allow cosockets, "blocking" should not grow).
C.stats = { cosocket = 0, blocking = 0 }
local stats = C.stats

-- What each method returns when it cannot run: its failure shape.
local function refuse(name, why, ...)
  if name == "get_many" then
    local n = select("#", ...)
    local out = {}
    out[n + 1] = why
    return unpack(out, 1, n + 1)
  elseif name == "set_many" or name == "delete_many" then
    return false, {}, why
  elseif name == "get" or name == "get_dict" or name == "inc" or name == "dec" then
    return nil, why
  end
  return false, why
end

local NOARGS = {}

local METHODS = { "get", "set", "add", "delete", "has", "clear", "inc", "dec",
                  "get_many", "get_dict", "set_many", "delete_many" }

-- The method table of objects with transport `mode` ("auto" or "cosocket").
local function methods_for(mode)
  local t = {}
  for _, name in ipairs(METHODS) do
    local fn = core.methods[name]
    t[name] = function(self, ...)
      local can, where = phase()
      if not can then
        if mode == "auto" then
          stats.blocking = stats.blocking + 1
          return rethrow(name, pcall(fn, self, ...))
        end
        local class = tostring(self):match("^(%w+)") or "cache"
        local in_phase = where == "plain Lua (no ngx)" and where or ("the " .. where .. " phase")
        return refuse(name, ("%s: transport 'cosocket' is not available in %s (nginx allows cosockets"
          .. " in rewrite, access, content, timer and ssl_* phases)"):format(class, in_phase), ...)
      end
      stats.cosocket = stats.cosocket + 1
      local op = co_new(self)
      local n = select("#", ...)
      local args = n > 0 and { ... } or NOARGS
      return finish(name, op, self, fn, n, args, co_run(op, fn, self, ...))
    end
  end
  return setmetatable(t, { __index = core.methods })
end

local field_mts = {
  auto = { __index = methods_for("auto") },
  cosocket = { __index = methods_for("cosocket") },
}

--- Gives obj the methods of its transport. Objects whose backend has no
-- cosocket path, or that use the blocking path everywhere (transport =
-- "blocking", or "auto" outside OpenResty), keep the C methods as they are.
function C.attach(obj)
  local mode = transport_of(obj)
  if mode == nil or mode == "blocking" then return obj end
  if mode == "auto" and not ngx_here() then return obj end
  local fields = getmetatable(obj).__index
  setmetatable(fields, field_mts[mode])
  return obj
end

--- Wraps every constructor of M so that the objects it makes get their
-- transport's methods; an error still points at the caller's line.
function C.install(M)
  for name in pairs(core.backend_types()) do
    local ctor = core[name]
    M[name] = function(...)
      local ok, obj = pcall(ctor, ...)
      if not ok then error(obj, 2) end
      return C.attach(obj)
    end
  end
end

return C
