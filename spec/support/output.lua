-- A busted output handler: one character per test while running, the
-- failures in full at the end, and the counts appended to the file named by
-- CACHE_TEST_COUNTS as "passed failed skipped" for spec/run.sh to total.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.base")()
  local io_write, io_flush = io.write, io.flush

  local function name_of(element)
    return handler.getFullName(element)
  end

  handler.testEnd = function(element, parent, status)
    local mark = ({ success = ".", failure = "F", error = "E", pending = "s" })[status] or "?"
    io_write(mark)
    io_flush()
    return nil, true
  end

  handler.suiteEnd = function()
    io_write("\n")
    local function report(list, label)
      for _, t in ipairs(list) do
        io_write(("\n%s: %s\n  %s\n"):format(label, name_of(t.element),
          tostring(t.message or ""):gsub("\n", "\n  ")))
        if t.trace and t.trace.traceback and label ~= "SKIPPED" then
          io_write("  " .. t.trace.traceback:gsub("\n", "\n  ") .. "\n")
        end
      end
    end
    report(handler.failures, "FAILED")
    report(handler.errors, "ERROR")
    if os.getenv("CACHE_TEST_SHOW_SKIPPED") then report(handler.pendings, "SKIPPED") end
    local passed, failed = #handler.successes, #handler.failures + #handler.errors
    local skipped = #handler.pendings
    io_write(("busted: %d passed, %d failed (%d errors), %d skipped\n")
      :format(passed, failed, #handler.errors, skipped))
    local path = os.getenv("CACHE_TEST_COUNTS")
    if path then
      local f = assert(io.open(path, "a"))
      f:write(("%d %d %d\n"):format(passed, failed, skipped))
      f:close()
    end
    return nil, true
  end

  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  return handler
end
