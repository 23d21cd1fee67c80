-- A stand-in for busted's describe / it / before_each / after_each where
-- busted cannot run: inside an nginx handler (spec/support/cosocket_app.lua
-- runs spec/support/contract.lua there). Tests run in the order they were
-- declared, each between the before_each functions of its blocks (outer
-- first) and their after_each functions (inner first), as busted runs them.
local M = {}

--- Declares the tests with define(T), runs them, and returns
-- { passed = n, failed = n, failures = { "name: message", ... } }.
function M.run(define, assert)
  local tests = {}
  local stack = { { before = {}, after = {} } }
  local T = { assert = assert }
  function T.describe(name, fn)
    stack[#stack + 1] = { name = name, before = {}, after = {} }
    fn()
    stack[#stack] = nil
  end
  function T.before_each(fn) table.insert(stack[#stack].before, fn) end
  function T.after_each(fn) table.insert(stack[#stack].after, fn) end
  function T.it(name, fn)
    local chain, names = {}, {}
    for i = 1, #stack do
      chain[i] = stack[i]
      names[#names + 1] = stack[i].name
    end
    names[#names + 1] = name
    tests[#tests + 1] = { name = table.concat(names, " / "), fn = fn, chain = chain }
  end
  define(T)

  local res = { passed = 0, failed = 0, failures = {} }
  for _, t in ipairs(tests) do
    local ok, err = true, nil
    for i = 1, #t.chain do
      for _, b in ipairs(t.chain[i].before) do
        if ok then ok, err = pcall(b) end
      end
    end
    if ok then ok, err = pcall(t.fn) end
    for i = #t.chain, 1, -1 do
      for _, a in ipairs(t.chain[i].after) do
        local ok2, err2 = pcall(a)
        if ok and not ok2 then ok, err = ok2, err2 end
      end
    end
    if ok then
      res.passed = res.passed + 1
    else
      res.failed = res.failed + 1
      res.failures[#res.failures + 1] = t.name .. ": " .. tostring(err)
    end
  end
  return res
end

return M
