-- Helpers for the Redis specs: redis-cli calls, a MONITOR capture, private
-- redis-server processes a spec may kill, the fake server of malformed
-- replies, and a wall clock with sub-second resolution.
local helpers = require "support.helpers"

local M = {}

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.q = q

--- Seconds (fractions) on the monotonic clock.
function M.now()
  return require("cache").core.monotonic()
end

--- redis-cli against port (or "-s socket"), args quoted one by one; its
-- stdout, trailing newline removed.
function M.cli(port, ...)
  local parts = { "redis-cli -h 127.0.0.1 -p", tostring(port) }
  for _, a in ipairs { ... } do parts[#parts + 1] = q(a) end
  return helpers.sh(table.concat(parts, " ") .. " 2>/dev/null")
end

--- A raw redis-cli command line (already quoted) for ports with AUTH etc.
function M.cli_raw(args)
  return helpers.sh("redis-cli " .. args .. " 2>/dev/null")
end

local unesc = { n = "\n", r = "\r", t = "\t", a = "\a", b = "\b", ['"'] = '"', ["\\"] = "\\" }

--- The arguments of one MONITOR line body: "a" "b\x00c" -> {"a", "b\0c"}.
function M.parse_monitor_args(body)
  local args, i = {}, 1
  while true do
    local s = body:find('"', i, true)
    if not s then break end
    local parts, j = {}, s + 1
    while j <= #body do
      local c = body:sub(j, j)
      if c == "\\" then
        local e = body:sub(j + 1, j + 1)
        if e == "x" then
          parts[#parts + 1] = string.char(tonumber(body:sub(j + 2, j + 3), 16))
          j = j + 4
        else
          parts[#parts + 1] = unesc[e] or e
          j = j + 2
        end
      elseif c == '"' then
        break
      else
        parts[#parts + 1] = c
        j = j + 1
      end
    end
    args[#args + 1] = table.concat(parts)
    i = j + 1
  end
  return args
end

--- Runs fn while `redis-cli MONITOR` records what port receives; returns
-- the list of commands seen, each as a list of arguments ({"SET", "k", ...}).
function M.monitor(port, fn)
  local dir = helpers.tmpdir("monitor")
  local file = dir .. "/mon"
  os.execute(("redis-cli -h 127.0.0.1 -p %d monitor >%s 2>&1 & echo $! >%s.pid")
    :format(port, q(file), q(file)))
  for _ = 1, 100 do -- attached when it printed OK
    local f = io.open(file)
    local s = f and f:read("a") or ""
    if f then f:close() end
    if s:find("OK") then break end
    helpers.sleep(0.02)
  end
  local ok, err = pcall(fn)
  local marker = "monitor-end-" .. tostring(math.random(1e9))
  M.cli(port, "ECHO", marker)
  local text = ""
  for _ = 1, 100 do
    local f = io.open(file)
    text = f and f:read("a") or ""
    if f then f:close() end
    if text:find(marker, 1, true) then break end
    helpers.sleep(0.02)
  end
  os.execute("kill $(cat " .. q(file .. ".pid") .. ") 2>/dev/null")
  assert(ok, err)
  local cmds = {}
  for line in text:gmatch("[^\n]+") do
    local body = line:match("^%d+%.%d+ %[[^%]]*%] (.*)$")
    if body and not body:find(marker, 1, true) then
      cmds[#cmds + 1] = M.parse_monitor_args(body)
    end
  end
  return cmds
end

--- Commands of a monitor capture whose name is cmd (case-insensitive).
function M.only(cmds, name)
  local out = {}
  for _, c in ipairs(cmds) do
    if c[1]:upper() == name:upper() then out[#out + 1] = c end
  end
  return out
end

--- A private redis-server the caller may kill: { port, dir, pid(),
-- kill(signal), restart(), stop() }. Extra arguments are added as they are.
-- Every process it starts is remembered, and stop() ends them all: call it
-- from busted's finally() so that a failing spec leaves nothing running.
function M.private_redis(extra)
  local dir = helpers.tmpdir("redis")
  local srv = { dir = dir, pids = {} }
  local root = os.getenv("CACHE_ROOT") or "."
  function srv.pid()
    local f = io.open(dir .. "/pid")
    local p = f and f:read("l")
    if f then f:close() end
    return p
  end
  local function alive(pid)
    local st = helpers.sh(("awk '{print $3}' /proc/%s/stat 2>/dev/null"):format(pid))
    return st ~= "" and st ~= "Z"
  end
  -- Started, and answering as itself (not some other server on the port).
  local function launch(port)
    os.execute(("env -u LD_PRELOAD redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no" ..
      " --dir %s --logfile %s/log %s </dev/null >/dev/null 2>&1 & echo $! >%s/pid")
      :format(port, q(dir), q(dir), extra or "", q(dir)))
    local pid = srv.pid()
    srv.pids[#srv.pids + 1] = pid
    for _ = 1, 250 do
      local info = M.cli(port, "INFO", "server")
      if info:match("process_id:(%d+)") == pid then return true end
      if not alive(pid) then return false end
      helpers.sleep(0.02)
    end
    os.execute("kill -KILL " .. pid .. " 2>/dev/null")
    return false
  end
  for _ = 1, 5 do
    srv.port = tonumber(helpers.sh(root .. "/spec/support/freeport.sh"))
    if launch(srv.port) then break end
    srv.port = nil
  end
  assert(srv.port, "could not start a private redis-server")
  local function kill_pid(pid, sig)
    os.execute(("kill -%s %s 2>/dev/null"):format(sig, pid))
    for _ = 1, 250 do -- gone (or a zombie) before returning
      if not alive(pid) then return true end
      helpers.sleep(0.02)
    end
    return false
  end
  function srv.kill(sig)
    local pid = srv.pid()
    if not kill_pid(pid, sig or "KILL") then kill_pid(pid, "KILL") end
  end
  function srv.restart()
    assert(launch(srv.port), "private redis-server did not restart")
  end
  function srv.stop()
    for _, pid in ipairs(srv.pids) do
      if alive(pid) and not kill_pid(pid, "TERM") then kill_pid(pid, "KILL") end
    end
  end
  return srv
end

--- Builds spec/support/fake_redis.c once; returns the binary's path.
local fake_bin
function M.fake_redis_bin()
  if fake_bin then return fake_bin end
  local root = os.getenv("CACHE_ROOT") or "."
  local out = (os.getenv("CACHE_TEST_STATE") or "/tmp") .. "/fake_redis." .. tostring(os.time())
  -- env -u: a sanitizer run's LD_PRELOAD must not reach the compiler
  assert(os.execute(("env -u LD_PRELOAD cc -std=c11 -O1 -o %s %s/spec/support/fake_redis.c")
    :format(q(out), q(root))))
  fake_bin = out
  return out
end

--- Starts the fake server with a list of replies; returns { port, stop() }.
function M.fake_redis(replies)
  local bin = M.fake_redis_bin()
  local dir = helpers.tmpdir("fake")
  local args = {}
  for i, r in ipairs(replies) do args[i] = q(r) end
  os.execute(("env -u LD_PRELOAD %s %s/port %s </dev/null >%s/log 2>&1 & echo $! >%s/pid")
    :format(q(bin), q(dir), table.concat(args, " "), q(dir), q(dir)))
  local port
  for _ = 1, 250 do
    local f = io.open(dir .. "/port")
    if f then port = tonumber(f:read("l")); f:close() end
    if port then break end
    helpers.sleep(0.02)
  end
  assert(port, "fake redis did not start")
  return {
    port = port,
    stop = function() os.execute("kill $(cat " .. q(dir .. "/pid") .. ") 2>/dev/null") end,
  }
end

--- The ports of a "host:port,host:port" list (CACHE_TEST_REDIS_CLUSTER,
-- CACHE_TEST_SENTINELS).
function M.ports_of(list)
  local ports = {}
  for p in (list or ""):gmatch(":(%d+)") do ports[#ports + 1] = tonumber(p) end
  return ports
end

--- The port of the cluster master that owns slot (CLUSTER NODES of the
-- nodes on ports).
function M.cluster_owner(ports, slot)
  for _, p in ipairs(ports) do
    local nodes = M.cli(p, "CLUSTER", "NODES")
    for line in nodes:gmatch("[^\n]+") do
      local addr, flags, rest = line:match("^%x+ ([^ ]+) ([^ ]+) %S+ %S+ %S+ %S+ %S+(.*)$")
      if addr and flags:find("master") then
        local port = tonumber(addr:match(":(%d+)"))
        for range in rest:gmatch("%S+") do
          local a, b = range:match("^(%d+)%-(%d+)$")
          a, b = tonumber(a or range:match("^(%d+)$")), tonumber(b or range:match("^(%d+)$"))
          if a and slot >= a and slot <= b then return port end
        end
      end
    end
  end
end

--- The master's port as the sentinels on ports see it now.
function M.sentinel_master_port(ports, master)
  for _, sp in ipairs(ports) do
    local out = M.cli(sp, "SENTINEL", "get-master-addr-by-name", master)
    local port = out:match("\n(%d+)")
    if port then return tonumber(port) end
  end
end

return M
