-- The rock built from this checkout for each Lua on the machine
-- (spec/support/rock.sh: `luarocks make`, as README tells users), each in its
-- own tree. A tree is built once per test run (spec/run.sh's state folder)
-- and shared by the specs that use it: luarocks_spec, openresty_spec.
local helpers = require "support.helpers"

local M = {}

local root = os.getenv("CACHE_ROOT") or "."

-- name: rock.sh's name for the Lua; version: luarocks' --lua-version;
-- bin: the interpreter; pc: the pkg-config name of its headers.
M.luas = {
  { name = "lua5.4", version = "5.4", bin = "lua5.4", pc = "lua5.4" },
  { name = "lua5.3", version = "5.3", bin = "lua5.3", pc = "lua5.3" },
  { name = "lua5.1", version = "5.1", bin = "lua5.1", pc = "lua5.1" },
  { name = "luajit", version = "5.1", bin = "luajit", pc = "luajit" },
}

function M.get(name)
  for _, l in ipairs(M.luas) do
    if l.name == name then return l end
  end
  error("rocks: unknown Lua " .. tostring(name), 2)
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.q = q

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- nil when l's interpreter, its headers and luarocks are installed, else why not.
function M.missing(l)
  if helpers.sh("command -v luarocks") == "" then return "luarocks is not installed" end
  if helpers.sh("command -v " .. l.bin) == "" then return l.bin .. " is not installed" end
  if helpers.sh("pkg-config --exists " .. l.pc .. " && echo yes") ~= "yes" then
    return "the " .. l.name .. " headers are not installed"
  end
  return nil
end

-- Outside spec/run.sh there is no shared state folder: a fresh one per file.
local base
local function base_dir()
  if not base then
    local state = os.getenv("CACHE_TEST_STATE")
    base = state and (state .. "/rocks") or helpers.tmpdir("rocks")
    assert(os.execute("mkdir -p " .. q(base)))
  end
  return base
end

--- The tree holding the rock built for l: built on first use in this test
-- run, then reused. Returns the tree, or nil and the end of the build log.
function M.tree(l)
  local tree = base_dir() .. "/" .. l.name
  if exists(tree .. "/.built") then return tree end
  local log = tree .. ".log"
  local rc = helpers.sh(("rm -rf %s; bash %s/spec/support/rock.sh %s %s >%s 2>&1; echo $?")
    :format(q(tree), q(root), l.name, q(tree), q(log)))
  if rc ~= "0" then
    return nil, ("luarocks make for %s failed:\n%s"):format(l.name, helpers.sh("tail -n 30 " .. q(log)))
  end
  assert(io.open(tree .. "/.built", "w")):close()
  return tree
end

--- Runs Lua code in l's interpreter with the paths `luarocks path` gives for
-- tree (as README tells users), from the checkout root, whose ./cache/core.so
-- (the plain `make` build) must not be the one loaded. Returns its output.
function M.run(l, tree, code)
  return helpers.sh(([[cd %s && eval "$(luarocks --lua-version=%s --tree %s path)" && %s -e %s 2>&1]])
    :format(q(root), l.version, q(tree), l.bin, q(code)))
end

--- Lua code that requires cache and prints, one per line, where cache.lua
-- and cache/core.so were loaded from (the mapped file, not a search), which
-- Lua runs it, _VERSION, and a set/get round trip.
M.PROBE = [[
local cache = require "cache"
local core
for line in io.lines("/proc/self/maps") do
  core = core or line:match("%s(/%S+/cache/core%.so)$")
end
local c = cache.SimpleCache{}
local ok = c:set("k", { 1, "two" })
print("lua=" .. debug.getinfo(cache.backend_types, "S").source)
print("core=" .. tostring(core))
print("interp=" .. (jit and jit.version or _VERSION))
print("version=" .. cache._VERSION)
print("roundtrip=" .. tostring(ok) .. " " .. c:get("k")[2])
]]

return M
