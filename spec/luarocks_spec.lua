-- The rock, built as README tells users: `luarocks make` for each Lua on the
-- machine into its own tree (spec/support/rocks.lua), then required in that
-- Lua with the paths `luarocks path` gives. The probe reports the files the
-- process actually mapped, so a module built for another Lua, or one found
-- elsewhere on the path, cannot pass.
local helpers = require "support.helpers"
local rocks = require "support.rocks"

local root = os.getenv("CACHE_ROOT") or "."
local q = rocks.q

describe("luarocks make", function()
  for _, l in ipairs(rocks.luas) do
    it(("installs a module built for %s, which %s loads from the tree"):format(l.name, l.bin), function()
      local why = rocks.missing(l)
      if why then return pending(why) end
      local tree, err = rocks.tree(l)
      assert(tree, err)
      local out = rocks.run(l, tree, rocks.PROBE)
      local want_interp = l.name == "luajit" and "^LuaJIT" or ("^Lua " .. l.version:gsub("%.", "%%."))
      local got = {}
      for k, v in out:gmatch("(%w+)=([^\n]*)") do got[k] = v end
      assert(got.roundtrip, out)
      assert.equal("@" .. tree .. "/share/lua/" .. l.version .. "/cache.lua", got.lua)
      assert.equal(tree .. "/lib/lua/" .. l.version .. "/cache/core.so", got.core)
      assert.matches(want_interp, got.interp)
      assert.equal("true two", got.roundtrip)
    end)
  end
end)

describe("make install", function()
  it("installs the module make built, and builds nothing itself", function()
    -- a module built beforehand (for whichever Lua): install must copy it,
    -- whatever LUA / LUA_INCDIR it is called with
    local work = helpers.tmpdir("install")
    assert(os.execute(("mkdir -p %s/mod/cache && echo built >%s/mod/cache/core.so"):format(q(work), q(work))))
    local out = helpers.sh(("cd %s && make -n install MODDIR=%s/mod OBJDIR=%s/obj INST_LIBDIR=%s/lib INST_LUADIR=%s/share 2>&1")
      :format(q(root), q(work), q(work), q(work), q(work)))
    local builds = {}
    for line in out:gmatch("[^\n]+") do
      if line:find(" %-c ") or line:find(" %-shared ") then builds[#builds + 1] = line end
    end
    assert.equal(0, #builds, "make install builds:\n" .. table.concat(builds, "\n"))
    assert.matches("install %-m 0755 " .. (work .. "/mod/cache/core.so"):gsub("%p", "%%%0"), out)
  end)
end)
