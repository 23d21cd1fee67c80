-- types/cache.lua: the ---@meta definitions for lua-language-server (not
-- installable here, so no language server runs). The file must be valid Lua
-- and name everything public, taken from the code itself: the module's
-- fields, every constructor with exactly the options it accepts (asked of the
-- constructor), the contract methods, the Cache object's methods, the
-- decorators' options, and cache.new's CACHE_* keys.
local cache = require "cache"

local root = os.getenv("CACHE_ROOT") or "."

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local TYPES = root .. "/types/cache.lua"

-- The classes of the types file: name -> { parent = name, fields = set,
-- methods = set }. Methods are `function Var:name(` where `local Var = {}`
-- follows the class's annotation block.
local function parse_types(text)
  local classes, var_class = {}, {}
  local current
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local name, rest = line:match("^%-%-%-@class%s+([%w_%.]+)(.*)$")
    if name then
      current = { parent = rest:match("^%s*:%s*([%w_%.]+)"), fields = {}, methods = {} }
      classes[name] = current
      current.name = name
    elseif current and line:match("^%-%-%-@field") then
      local field = line:match("^%-%-%-@field%s+([%w_]+)")
      if field then current.fields[field] = true end
    elseif current and not line:match("^%-%-%-") then -- (other annotations and doc lines: skipped)
      local var = line:match("^local%s+([%w_]+)%s*=")
      if var then var_class[var] = current end
      current = nil
    end
    local var, method = line:match("^function%s+([%w_]+):([%w_]+)%s*%(")
    if var and var_class[var] then var_class[var].methods[method] = true end
  end
  return classes
end

-- A class's fields (or methods) with its parents'.
local function all_of(classes, name, what)
  local set, class = {}, classes[name]
  assert(class, "types/cache.lua has no ---@class " .. name)
  while class do
    for k in pairs(class[what]) do set[k] = true end
    class = class.parent and assert(classes[class.parent], "no ---@class " .. class.parent)
  end
  return set
end

local function keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- The keys of a `local NAME = { k = "...", ... }` table in a source file.
local function table_keys(src, name)
  local body = assert(src:match("local " .. name .. " = (%b{})"), "no table " .. name)
  local set = {}
  for k in body:gmatch("([%w_]+)%s*=%s*[\"%w]") do set[k] = true end
  return set
end

local function union(a, b)
  local set = {}
  for k in pairs(a) do set[k] = true end
  for k in pairs(b) do set[k] = true end
  return set
end

describe("types/cache.lua (lua-language-server ---@meta)", function()
  local text = read(TYPES)
  local classes = parse_types(text)

  it("is valid Lua marked ---@meta", function()
    assert(loadfile(TYPES))
    assert.matches("^%-%-%-@meta cache\n", text)
  end)

  it("names every field of the module", function()
    local module_fields = all_of(classes, "cache", "fields")
    for _, k in ipairs(keys(cache)) do
      if type(k) == "string" then
        local defined = module_fields[k]
          or text:find("\nfunction cache%." .. k .. "%(")
          or text:find("\ncache%." .. k .. " = ")
        assert(defined, "types/cache.lua does not define cache." .. k)
      end
    end
  end)

  it("declares every constructor with its options class and a Backend result", function()
    local lines = {}
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    -- the annotation lines right above `function cache.NAME(opts) end`
    local function block_of(name)
      for i, line in ipairs(lines) do
        if line == "function cache." .. name .. "(opts) end" then
          local j = i
          while j > 1 and lines[j - 1]:match("^%-%-%-") do j = j - 1 end
          return table.concat(lines, "\n", j, i - 1) .. "\n"
        end
      end
    end
    for _, name in ipairs(keys(cache.backend_types())) do
      local block = block_of(name)
      assert(block, "types/cache.lua has no function cache." .. name .. "(opts)")
      assert.matches("%-%-%-@param opts%? cache%." .. name .. "Options\n", block)
      assert.matches("%-%-%-@return cache%.Backend\n", block)
    end
  end)

  it("lists exactly the options each constructor accepts", function()
    -- Options a constructor needs before it looks at the others.
    local needs = {
      FileSystemCache = { cache_dir = os.tmpname() .. "-types" },
      RedisClusterCache = { cluster = "127.0.0.1:1" },
      SASLMemcachedCache = { username = "u", password = "p" },
      SpreadSASLMemcachedCache = { username = "u", password = "p" },
      UWSGICache = { cache = "c@127.0.0.1:1" },
    }
    -- Candidates: every option name the C sources take, and every name the
    -- types list; a constructor accepts a name unless it says "unknown option".
    local candidates = {}
    local p = assert(io.popen(("cat %s/backends/*.c %s/backends/*/*.c %s/engine/*.c"):format(root, root, root)))
    for name in p:read("*a"):gmatch('%([%w_%->%.]+,%s*"([%l_]+)"') do candidates[name] = true end
    p:close()
    for cname, class in pairs(classes) do
      if cname:match("Options$") then
        for f in pairs(class.fields) do candidates[f] = true end
      end
    end
    local function accepts(ctor, base, name)
      local opts = {}
      for k, v in pairs(base) do opts[k] = v end
      if opts[name] == nil then opts[name] = true end
      local ok, err = pcall(ctor, opts)
      if ok and err.close then err:close() end
      return ok or not tostring(err):find("unknown option '" .. name .. "'", 1, true)
    end
    for _, name in ipairs(keys(cache.backend_types())) do
      if cache.backend_types()[name] then
        local ctor, base = cache[name], needs[name] or {}
        assert.is_false(accepts(ctor, base, "no_such_option"), name .. ": the probe cannot tell")
        local accepted = {}
        for c in pairs(candidates) do
          if accepts(ctor, base, c) then accepted[c] = true end
        end
        assert.same(keys(accepted), keys(all_of(classes, "cache." .. name .. "Options", "fields")),
                    "options of " .. name)
      end
    end
  end)

  it("has the contract methods on cache.Backend, and only those", function()
    assert.same(keys(cache.methods), keys(all_of(classes, "cache.Backend", "methods")))
    assert.truthy(all_of(classes, "cache.Backend", "fields").default_timeout)
  end)

  it("has the Cache object's methods on cache.Cache, and only those", function()
    local src = read(root .. "/lua/cache/decorators.lua")
    local want = {}
    for m in src:gmatch("\nfunction Cache:([%w_]+)%(") do
      if not m:match("^__") then want[m] = true end
    end
    assert.same(keys(want), keys(all_of(classes, "cache.Cache", "methods")))
    assert.truthy(all_of(classes, "cache.Cache", "fields").cache)
  end)

  it("lists exactly the options of cached and memoize", function()
    local src = read(root .. "/lua/cache/decorators.lua")
    local common = table_keys(src, "common_options")
    assert.same(keys(union(common, table_keys(src, "cached_options"))),
                keys(all_of(classes, "cache.CachedOptions", "fields")))
    assert.same(keys(union(common, table_keys(src, "memoize_options"))),
                keys(all_of(classes, "cache.MemoizeOptions", "fields")))
  end)

  it("has the fields of a decorated function", function()
    local src = read(root .. "/lua/cache/decorators.lua")
    local body = assert(src:match("\nlocal function decorated%(.-\nend\n"))
    local want = table_keys(body, "d")
    for k in src:gmatch("\n  d%.([%w_]+) = ") do want[k] = true end
    -- fields served by the metatable (checked on assignment)
    for k in body:gmatch('if k == "([%w_]+)" then return st%.') do want[k] = true end
    assert.same(keys(want), keys(all_of(classes, "cache.Decorated", "fields")))
  end)

  it("lists exactly the CACHE_* keys cache.new accepts", function()
    local known = table_keys(read(root .. "/lua/cache/config.lua"), "known")
    assert.truthy(known.CACHE_TYPE)
    assert.same(keys(known), keys(all_of(classes, "cache.Config", "fields")))
  end)
end)
