-- Model-based random test (spec/support/model.lua): seeded sequences of
-- contract calls, forks, finalizer re-entry and paused servers against every
-- backend, each result compared with a reference model in Lua.
--
--   CACHE_MODEL_SEED=n       replays a run (the seed is printed on failure)
--   CACHE_MODEL_ONLY=Name    runs one backend (e.g. MemcachedCache)
--   CACHE_MODEL_OPS=n        calls per backend in the short run (default 260)
--   CACHE_MODEL_KEEP_GOING=1 goes on after a divergence (up to 20 are shown)
--   CACHE_MODEL_VERBOSE=1    prints each run's summary, failed or not
--   CACHE_MODEL_TRACE=path   appends every call and its results to path
--   CACHE_MODEL_SKIP=a,b     leaves parts out, to look past a known defect:
--                            alias, fork, finalizer, pause, short, dup (no
--                            key twice in one call), or an operation's name
--   CACHE_MODEL_SECONDS=n    the soak (`make soak SECONDS=n`): every family of
--                            backends for n seconds, side by side, each in a
--                            tools/soak.lua process
local model = require "support.model"
local helpers = require "support.helpers"

local ROOT = os.getenv("CACHE_ROOT") or "."
-- the interpreter running this spec, for the soak's processes
local LUA = type(jit) == "table" and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
local only = os.getenv("CACHE_MODEL_ONLY")
local keep_going = (os.getenv("CACHE_MODEL_KEEP_GOING") or "") ~= ""
-- CACHE_MODEL_SKIP: what to leave out (see above)
local skip = {}
for word in (os.getenv("CACHE_MODEL_SKIP") or ""):gmatch("[%w_]+") do skip[word] = true end
local trace = os.getenv("CACHE_MODEL_TRACE")
local verbose = (os.getenv("CACHE_MODEL_VERBOSE") or "") ~= ""
local soak_seconds = tonumber(os.getenv("CACHE_MODEL_SECONDS") or "")

local function seed_now()
  local fh = model.forkhelper()
  return (os.time() * 7919 + fh.getpid()) % 2147483646
end
local seed = tonumber(os.getenv("CACHE_MODEL_SEED") or "") or seed_now()

local function failure_text(report)
  local parts = { model.summary(report) }
  for i, d in ipairs(report.divergences) do
    if i > 20 then break end
    parts[#parts + 1] = model.format_divergence(report, d)
  end
  return table.concat(parts, "\n")
end

if not soak_seconds then
  -- The short run in `make test`: a few hundred calls per backend, one fork,
  -- two finalizer steps, short timeouts waited out once, and a paused server
  -- where pausing is cheap (the pool's own memcached). Each backend runs in
  -- a forked child, so that a crash or a hang fails only its own test.
  local ops = tonumber(os.getenv("CACHE_MODEL_OPS") or "") or 260
  -- Waiting for short timeouts to pass and pausing a server cost seconds:
  -- here only where a family's code differs (the soak does all of it
  -- everywhere). MemcachedCache's pause is its own server, and covers the
  -- wait for its short timeouts.
  local timed = {
    SimpleCache = { short = true }, FileSystemCache = { short = true },
    RedisCache = { short = true }, UWSGICache = { short = true },
    MemcachedCache = { short = true, pause = 1 },
  }
  describe("model", function()
    for _, b in ipairs(model.backends()) do
      if not only or only == b.name then
        it(b.name .. " agrees with the reference model", function()
          local ok, why = b.available()
          if not ok then
            pending(b.name .. ": " .. tostring(why))
            return
          end
          local t = timed[b.name] or {}
          local report = model.run_isolated(b, {
            seed = seed, ops = ops, fork = 1, finalizers = 2, short = t.short,
            short_ttls = { 0.001, 0.5, 1 }, pause = t.pause or 0, keep_going = keep_going,
            skip = skip, trace = trace,
          })
          if verbose then io.write("\n", model.summary(report), "\n") end
          if #report.divergences > 0 then
            error(failure_text(report), 0)
          end
        end)
      end
    end
  end)
  return
end

-- The soak: one tools/soak.lua process per family, all at once.
describe("model soak", function()
  it(("every family for %d s agrees with the reference model"):format(soak_seconds), function()
    local fh = model.forkhelper()
    local families, order = {}, {}
    for _, b in ipairs(model.backends()) do
      if (not only or only == b.name) and b.available() then
        if not families[b.family] then
          families[b.family] = {}
          order[#order + 1] = b.family
        end
      end
    end
    local dir = helpers.tmpdir("soak")
    local running = {}
    for _, family in ipairs(order) do
      local log = dir .. "/" .. family .. ".log"
      local argv = { LUA, ROOT .. "/tools/soak.lua", family, tostring(soak_seconds), tostring(seed) }
      if only then argv[#argv + 1] = only end
      running[#running + 1] = { family = family, log = log, pid = assert(fh.spawn(argv, log)) }
    end
    local failed = {}
    for _, r in ipairs(running) do
      local how, code = fh.wait(r.pid)
      local f = io.open(r.log, "rb")
      local text = f and f:read("*a") or ""
      if f then f:close() end
      io.write("\n== soak ", r.family, "\n", text)
      if how ~= "exited" or code ~= 0 then
        failed[#failed + 1] = ("%s: %s %s"):format(r.family, how, tostring(code))
      end
    end
    io.flush()
    assert(#failed == 0, "soak divergences (seed " .. seed .. "): " .. table.concat(failed, ", "))
  end)
end)
