-- Every backend in the engine's registry (engine/registry.c) is reachable
-- the ways a user reaches one: a constructor, a Flask-Caching short name for
-- cache.new, and a descriptor in spec/backends/ that the contract spec runs.
local cache = require "cache"
local config = require "cache.config"

local function descriptors()
  local by_class = {}
  local p = assert(io.popen("ls spec/backends/*.lua"))
  for path in p:lines() do
    local d = dofile(path)
    by_class[d.name] = path
  end
  p:close()
  return by_class
end

describe("the backend registry", function()
  local classes = {}
  for name, v in pairs(cache.backend_types()) do
    assert.is_true(v)
    classes[#classes + 1] = name
  end
  table.sort(classes)

  it("has the ten backends of cachelib and Flask-Caching, and SharedDictCache", function()
    assert.equal(11, #classes)
    assert.is_true(cache.backend_types().SharedDictCache)
  end)

  local short = {}
  for s, class in pairs(config.short_names) do short[class] = s end
  local described = descriptors()

  for _, class in ipairs(classes) do
    it(class .. " has a constructor, a short name and a contract run", function()
      assert.is_function(cache[class], "constructor")
      assert.is_string(short[class], "config short name")
      if class ~= "NullCache" then -- NullCache stores nothing: the contract does not apply
        assert.is_string(described[class], "spec/backends descriptor")
      end
    end)
  end

  it("has no short name for a class it does not register", function()
    local registered = cache.backend_types()
    for s, class in pairs(config.short_names) do
      assert.is_true(registered[class], s)
    end
  end)
end)
