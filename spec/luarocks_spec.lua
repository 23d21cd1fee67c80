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

  it("ships the lua-language-server definitions (types/cache.lua)", function()
    local l = rocks.get("lua5.4")
    local why = rocks.missing(l)
    if why then return pending(why) end
    local tree = assert(rocks.tree(l))
    local shipped = tree .. "/lib/luarocks/rocks-5.4/cache/scm-1/types/cache.lua"
    assert(loadfile(shipped))
    assert.equal(helpers.sh("cat " .. q(root .. "/types/cache.lua")), helpers.sh("cat " .. q(shipped)))
  end)
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

-- The release: cache._VERSION is the version's one place; the release
-- rockspec, `make version` and CHANGELOG.md must agree with it.
describe("the release rock", function()
  local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
  end

  local version = helpers.sh(("make -s -C %s version"):format(q(root)))

  it("has one version: cache._VERSION, make version, the release rockspec, CHANGELOG.md", function()
    assert.equal("cache " .. version, require("cache")._VERSION)
    assert.matches("^%d+%.%d+%.%d+$", version)
    local spec = read(("%s/rockspec/cache-%s-1.rockspec"):format(root, version))
    assert.matches('\nversion = "' .. version:gsub("%.", "%%.") .. '%-1"\n', spec)
    assert.matches('url = "cache%-' .. version:gsub("%.", "%%.") .. '%.tar%.gz"', spec)
    local changelog = read(root .. "/CHANGELOG.md")
    assert.equal(version, changelog:match("\n## %[?(%d+%.%d+%.%d+)"))
  end)

  it("is the scm rockspec at that version (make rock refuses a stale one)", function()
    local got = helpers.sh(("sh %s/rockspec/release.sh %s"):format(q(root), version))
    assert.equal(read(("%s/rockspec/cache-%s-1.rockspec"):format(root, version)):gsub("\n$", ""), got)
  end)

  it("packs a source rock that installs offline into a fresh tree and works", function()
    local l = rocks.get("lua5.4")
    local why = rocks.missing(l)
    if why then return pending(why) end
    local work = helpers.tmpdir("release")
    local out = helpers.sh(("cd %s && make -s rock ROCKDIR=%s 2>&1; echo rc=$?"):format(q(root), q(work)))
    assert.matches("rc=0$", out)
    local rock = ("%s/cache-%s-1.src.rock"):format(work, version)
    assert(io.open(rock, "rb"), out):close()
    -- no network at all while installing: a new network namespace when the
    -- machine allows one
    local offline = helpers.sh("unshare -n true 2>/dev/null && echo yes") == "yes" and "unshare -n " or ""
    local tree = work .. "/tree"
    out = helpers.sh(("cd %s && %sluarocks --lua-version=5.4 install --tree %s %s 2>&1; echo rc=$?")
      :format(q(work), offline, q(tree), q(rock)))
    assert.matches("rc=0$", out)
    assert.matches("cache " .. version:gsub("%.", "%%.") .. "%-1 is now installed", out)
    local got = {}
    for k, v in rocks.run(l, tree, rocks.PROBE):gmatch("(%w+)=([^\n]*)") do got[k] = v end
    assert.equal("@" .. tree .. "/share/lua/5.4/cache.lua", got.lua)
    assert.equal(tree .. "/lib/lua/5.4/cache/core.so", got.core)
    assert.equal("cache " .. version, got.version)
    assert.equal("true two", got.roundtrip)
    assert(loadfile(("%s/lib/luarocks/rocks-5.4/cache/%s-1/types/cache.lua"):format(tree, version)))
  end)
end)
