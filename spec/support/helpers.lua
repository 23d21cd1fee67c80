-- Shared helpers for the specs.
local M = {}

--- Sleeps for s seconds (fractions allowed).
function M.sleep(s)
  os.execute(("sleep %.3f"):format(s))
end

--- A fresh empty directory under the suite's temporary folder.
function M.tmpdir(tag)
  local base = os.getenv("CACHE_TEST_STATE") or "/tmp"
  local name = os.tmpname()
  os.remove(name)
  local dir = ("%s/%s-%s"):format(base, tag or "dir", name:match("[^/]+$"))
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

--- Runs a shell command, returns its stdout (trailing newline removed).
function M.sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return (out:gsub("\n$", ""))
end

--- A key prefix no other spec uses.
local counter = 0
function M.unique(tag)
  counter = counter + 1
  return ("%s:%d:%d:"):format(tag or "t", os.time() % 100000, counter)
end

--- The backend factories of spec/backends/*.lua, sorted by name. Each is
-- { name, available(), new(opts), caps }.
function M.backends()
  local root = os.getenv("CACHE_ROOT") or "."
  local list = {}
  local p = assert(io.popen("ls '" .. root .. "/spec/backends/' 2>/dev/null"))
  for file in p:lines() do
    local mod = file:match("^(.+)%.lua$")
    if mod then
      local f = dofile(root .. "/spec/backends/" .. file)
      f.caps = f.caps or {}
      f.file = mod
      list[#list + 1] = f
    end
  end
  p:close()
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

--- Number of values in a call's results.
function M.pack(...)
  return { n = select("#", ...), ... }
end

return M
