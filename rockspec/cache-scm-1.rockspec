rockspec_format = "3.0"
package = "cache"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- built from a checkout: luarocks make rockspec/cache-scm-1.rockspec
}
description = {
  summary = "The cachelib / Flask-Caching API for Lua on a C engine",
  detailed = [[
Null, Simple (in memory), FileSystem, Redis (+ Sentinel, Cluster), memcached
(+ SASL, spread) and uWSGI caches behind one API, with the cached / memoize
decorators. Runs on Lua 5.4 and in OpenResty (LuaJIT).]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
  LIBMEMCACHED = { header = "libmemcached/memcached.h", library = "memcached" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
  LIBSSL = { header = "openssl/ssl.h", library = "ssl" },
}
build = {
  -- The Makefile compiles every engine/, backends/ and bindings/ file, so a
  -- new backend needs no change here.
  type = "make",
  -- lua-language-server definitions (---@meta), never required at run time:
  -- installed as <tree>/lib/luarocks/rocks-<lua>/cache/<version>/types/cache.lua
  copy_directories = { "types" },
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    OBJDIR = "build/rock",
    MODDIR = "build/rock/mod",
  },
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    OBJDIR = "build/rock",
    MODDIR = "build/rock/mod",
  },
}
