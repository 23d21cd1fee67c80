--- ngx_spec: the part of busted the shared specs use (describe, it,
-- before_each, after_each, setup, teardown, pending; luassert's assert), to
-- run a spec file inside an nginx worker, where busted itself cannot run.
-- spec/shareddict_spec.lua reaches it through /spec/contract (fetch_app).
--
--   local results = require("ngx_spec").run(path, only)
-- runs the spec file at path, keeping only the top-level describe blocks
-- whose name contains one of the strings of the list `only`; returns
-- { passed = n, failed = n, pending = n, failures = { "name: message", ... } }.
local S = {}

local function node(name, parent)
  return { name = name, parent = parent, children = {}, before = {}, after = {},
           setup = {}, teardown = {} }
end

local function full_name(n, leaf)
  local parts = { leaf }
  while n and n.name do
    table.insert(parts, 1, n.name)
    n = n.parent
  end
  return table.concat(parts, " ")
end

local function befores(n, list)
  if n.parent then befores(n.parent, list) end
  for _, f in ipairs(n.before) do list[#list + 1] = f end
  return list
end

local function afters(n, list)
  for _, f in ipairs(n.after) do list[#list + 1] = f end
  if n.parent then afters(n.parent, list) end
  return list
end

function S.run(path, only)
  local root = node(nil, nil)
  local current = root
  local pending_mark = {}
  local env = setmetatable({}, { __index = _G })
  env.describe = function(name, body)
    local n = node(name, current)
    current.children[#current.children + 1] = n
    local saved = current
    current = n
    body()
    current = saved
  end
  env.it = function(name, body)
    current.children[#current.children + 1] = { test = body, name = name, parent = current }
  end
  env.before_each = function(f) current.before[#current.before + 1] = f end
  env.after_each = function(f) current.after[#current.after + 1] = f end
  env.setup = function(f) current.setup[#current.setup + 1] = f end
  env.teardown = function(f) current.teardown[#current.teardown + 1] = f end
  env.pending = function(msg) error({ [pending_mark] = tostring(msg) }, 0) end
  env.assert = require "luassert"

  -- the spec's globals resolve in env (no global of the worker is written)
  local chunk = assert(loadfile(path))
  setfenv(chunk, env)
  local ok, err = pcall(chunk)
  local results = { passed = 0, failed = 0, pending = 0, failures = {} }
  if not ok then
    results.failed = 1
    results.failures[1] = path .. ": " .. tostring(err)
  end

  local function wanted(n)
    if not only then return true end
    for _, s in ipairs(only) do
      if n.name and n.name:find(s, 1, true) then return true end
    end
    return false
  end

  local function run_node(n)
    for _, f in ipairs(n.setup) do f() end
    for _, child in ipairs(n.children) do
      if child.test then
        local okb, e = true, nil
        for _, f in ipairs(befores(n, {})) do
          okb, e = pcall(f)
          if not okb then break end
        end
        if okb then okb, e = xpcall(child.test, debug.traceback) end
        for _, f in ipairs(afters(n, {})) do pcall(f) end
        if okb then
          results.passed = results.passed + 1
        elseif type(e) == "table" and e[pending_mark] then
          results.pending = results.pending + 1
        else
          results.failed = results.failed + 1
          results.failures[#results.failures + 1] = full_name(n, child.name) .. ": " .. tostring(e)
        end
      else
        run_node(child)
      end
    end
    for _, f in ipairs(n.teardown) do pcall(f) end
  end

  if ok then
    for _, child in ipairs(root.children) do
      if child.test or wanted(child) then
        if child.test then run_node({ children = { child }, before = {}, after = {}, setup = {}, teardown = {} })
        else run_node(child) end
      end
    end
  end
  return results
end

return S
