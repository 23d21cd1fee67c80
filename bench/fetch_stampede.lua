-- The stampede figure in plain Lua: PROCS lua processes released together,
-- each reading one cold key READS times through fetch (FileSystemCache,
-- a 100 ms callback): how many callback runs per 1000 reads, without and
-- with lock. Prints rows "name|runs|||" for bench/run.sh.
--
--   lua bench/fetch_stampede.lua            the figure (spawns the workers)
--   lua bench/fetch_stampede.lua worker DIR LOCK START READS
local cache = require "cache"
local core = cache.core

local PROCS, READS = 20, 50 -- 1000 reads

if arg[1] == "worker" then
  local dir, lock, start, reads = arg[2], arg[3] == "1", tonumber(arg[4]), tonumber(arg[5])
  local c = cache.new { CACHE_TYPE = "FileSystemCache", CACHE_DIR = dir, CACHE_THRESHOLD = 0 }
  local opts = { lock = lock, timeout = 60, lock_timeout = 30 }
  local function compute()
    assert(c:inc("runs"))
    core.sleep(0.1)
    return "value"
  end
  while core.wall() < start do core.sleep(0.001) end
  for _ = 1, reads do assert(c:fetch("cold", opts, compute) == "value") end
  return
end

local lua = arg[-1] or "lua5.4"
local script = arg[0]
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function figure(lock)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir)))
  local start = core.wall() + 1.5
  local cmd = {}
  for _ = 1, PROCS do
    cmd[#cmd + 1] = ("%s %s worker %s %d %.3f %d &"):format(q(lua), q(script), q(dir), lock and 1 or 0,
                                                            start, READS)
  end
  assert(os.execute(table.concat(cmd, " ") .. " wait"))
  local runs = cache.FileSystemCache { cache_dir = dir }:get("runs")
  os.execute("rm -rf " .. q(dir))
  return runs * 1000 / (PROCS * READS)
end

print(("fetch stampede (%d processes x %d reads): callback runs per 1000 cold reads, without lock|%.0f||||")
  :format(PROCS, READS, figure(false)))
print(("fetch stampede (%d processes x %d reads): callback runs per 1000 cold reads, lock = true|%.0f||||")
  :format(PROCS, READS, figure(true)))
