-- The long model-based run of one family of backends (spec/support/model.lua),
-- started by spec/model_spec.lua when CACHE_MODEL_SECONDS is set (`make soak
-- SECONDS=N`), one process per family, all families side by side:
--
--   lua5.4 tools/soak.lua FAMILY SECONDS SEED [BACKEND]
--
-- The family's backends run one after the other (they share servers), the
-- SECONDS split between them, with every kind of step: forks, finalizers,
-- paused servers, short timeouts. Prints per backend its calls and
-- divergences, each divergence in full; exits 1 if there was one. Needs the
-- servers and the environment of spec/run.sh. CACHE_MODEL_KEEP_GOING,
-- CACHE_MODEL_SKIP and CACHE_MODEL_TRACE (PATH.<backend> here) work as in
-- spec/model_spec.lua.
local root = (arg[0]:match("^(.*)/tools/[^/]*$") or ".")
package.path = root .. "/lua/?.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = root .. "/?.so;" .. package.cpath

local model = require "support.model"

local family, seconds, seed, only = arg[1], tonumber(arg[2] or ""), tonumber(arg[3] or ""), arg[4]
if not family or not seconds or not seed then
  io.stderr:write("usage: tools/soak.lua FAMILY SECONDS SEED [BACKEND]\n")
  os.exit(2)
end

local skip = {}
for word in (os.getenv("CACHE_MODEL_SKIP") or ""):gmatch("[%w_]+") do skip[word] = true end
local keep_going = (os.getenv("CACHE_MODEL_KEEP_GOING") or "") ~= ""
local trace = os.getenv("CACHE_MODEL_TRACE")

local list = {}
for _, b in ipairs(model.backends()) do
  if b.family == family and (not only or only == b.name) and b.available() then
    list[#list + 1] = b
  end
end
if #list == 0 then
  print(("soak %s: no backend available"):format(family))
  os.exit(0)
end

local failed = false
for _, b in ipairs(list) do
  local report = model.run_isolated(b, {
    seed = seed, seconds = seconds / #list, short = true, pause = 1,
    keep_going = keep_going, skip = skip, trace = trace and trace .. "." .. b.name,
  })
  print(model.summary(report))
  for i, d in ipairs(report.divergences) do
    if i > 20 then break end
    print(model.format_divergence(report, d))
  end
  io.stdout:flush()
  if #report.divergences > 0 then failed = true end
end
os.exit(failed and 1 or 0)
