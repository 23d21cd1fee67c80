-- luacheck configuration (make test runs `luacheck .` over lua/, spec/,
-- examples/, bench/ and types/). The code must run on Lua 5.1-5.4 and
-- LuaJIT, so the standard is their union.
std = "max"
max_line_length = 120
include_files = { "lua/**/*.lua", "spec/**/*.lua", "examples/**/*.lua", "bench/**/*.lua", "types/**/*.lua" }
exclude_files = { "build", "spec/support/luarocks-trees", ".luarocks", "lua_modules" }

-- Specs: busted's globals; callbacks often take arguments they ignore.
files["spec"] = { std = "+busted", unused_args = false, max_line_length = 150 }
-- Code run inside nginx: lua-nginx-module's ngx (and ndk).
files["examples/openresty"] = { std = "+ngx_lua" }
files["spec/support/cosocket_app.lua"] = { std = "+busted+ngx_lua", unused_args = false, max_line_length = 150 }
files["lua/cache/cosocket.lua"] = { std = "+ngx_lua" }
-- ---@meta definitions: stub functions whose arguments only document.
files["types"] = { unused_args = false, unused = false, max_line_length = false }
