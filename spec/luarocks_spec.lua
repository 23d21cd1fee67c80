-- The rock: `luarocks make` into a temporary tree, then require from there.
local helpers = require "support.helpers"

describe("luarocks", function()
  it("installs into a tree and requires from it", function()
    local root = os.getenv("CACHE_ROOT") or "."
    local work = helpers.tmpdir("rock")
    local tree = work .. "/tree"
    local src = work .. "/src"
    assert(os.execute(("mkdir -p %s && cd %s && tar --exclude=./build --exclude=./cache -cf - . | tar -xf - -C %s")
      :format(src, root, src)))
    local lua_version = jit and "5.1" or _VERSION:match("%d+%.%d+")
    local out = helpers.sh(("cd %s && luarocks --lua-version=%s make rockspec/cache-scm-1.rockspec --tree %s 2>&1; echo rc=$?")
      :format(src, lua_version, tree))
    assert.matches("rc=0$", out)
    assert.matches("cache scm%-1 is now installed", out)
    local interp = jit and "luajit" or "lua5.4"
    local got = helpers.sh(([[cd / && eval "$(luarocks --lua-version=%s --tree %s path)" && %s -e '
      local cache = require "cache"
      local c = cache.NullCache{}
      io.write(package.searchpath("cache", package.path), " ", tostring(c:set("k", 1)))']])
      :format(lua_version, tree, interp))
    assert.equal(tree .. "/share/lua/" .. lua_version .. "/cache.lua true", got)
  end)
end)
