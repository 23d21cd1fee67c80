-- The libFuzzer harnesses of fuzz/ (issue 8), briefly: each is built with
-- clang's ASan + UBSan (make fuzz-build) and run for a few seconds on its
-- committed seed corpus (which replays every earlier finding first). The
-- long runs are `make fuzz FUZZ_SECONDS=600`.
local helpers = require "support.helpers"

local ROOT = os.getenv("CACHE_ROOT") or "."
local SECONDS = tonumber(os.getenv("CACHE_FUZZ_SECONDS") or "3")
-- The harnesses carry clang's ASan runtime: a preloaded gcc libasan (make
-- test SANITIZE=1) and its options must not reach make, clang or them.
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function names()
  local list = {}
  for file in helpers.sh("ls " .. q(ROOT .. "/fuzz") .. " 2>/dev/null"):gmatch("[^\n]+") do
    local name = file:match("^fuzz_(.+)%.c$")
    if name then list[#list + 1] = name end
  end
  table.sort(list)
  return list
end

describe("fuzz harnesses (" .. SECONDS .. " s each)", function()
  local have_clang = os.execute("command -v clang >/dev/null 2>&1")
  local built, build_log = false, ""
  if have_clang then
    build_log = helpers.sh(("cd %s && %s make -k -s -j2 fuzz-build 2>&1"):format(q(ROOT), CLEAN_ENV))
    built = true
  end

  for _, name in ipairs(names()) do
    it("fuzz_" .. name .. ": no finding", function()
      if not have_clang then
        pending("clang not installed (tools/install-deps.sh installs it)")
        return
      end
      local bin = ROOT .. "/build/fuzz/fuzz_" .. name
      -- every harness named by fuzz.mk has its sources: not building is a failure
      assert(built and os.execute("test -x " .. q(bin)), "fuzz_" .. name .. " does not build: " .. build_log)
      local out = helpers.sh(("cd %s && %s fuzz/run.sh %d %s 2>&1; echo \"rc=$?\""):format(
        q(ROOT), CLEAN_ENV, SECONDS, name))
      assert.matches("rc=0", out, 1, true)
      assert.matches("fuzz_" .. name .. ": %d+ execs in", out)
      assert.matches("0 findings", out, 1, true)
    end)
  end
end)
