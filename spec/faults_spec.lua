-- The fault matrix of issue 8: concurrent processes on one FileSystemCache
-- directory, writes that hit a file size limit or a full disk, hostile
-- tables, 64 MB values and awkward keys on every backend. Each case says
-- what must hold; a backend whose server is not running here is pending.
--
-- Covered elsewhere (not repeated here):
--   redis killed and restarted during sets: spec/redis_spec.lua
--     "survives a kill and restart of the server: fails cleanly, then recovers"
--   memcached pool member killed: spec/memcached_spec.lua
--     "killing one of two servers leaves the other's keys readable"
local cache = require "cache"
local helpers = require "support.helpers"

local LUA = os.getenv("LUA_BIN") or (type(jit) == "table" and "luajit" or "lua5.4")
local ROOT = os.getenv("CACHE_ROOT") or "."

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Names in a directory (ls -A), as a list.
local function list(dir)
  local out = helpers.sh("ls -A " .. q(dir) .. " 2>/dev/null")
  local names = {}
  for name in out:gmatch("[^\n]+") do names[#names + 1] = name end
  return names
end

-- Figures for the report (busted prints nothing on success): appended to
-- $CACHE_TEST_STATE/faults_figures.txt.
local function figure(fmt, ...)
  local f = io.open((os.getenv("CACHE_TEST_STATE") or "/tmp") .. "/faults_figures.txt", "a")
  if f then
    f:write(fmt:format(...), "\n")
    f:close()
  end
end

local function now()
  local ok, core = pcall(require, "cache.core")
  return ok and core.monotonic and core.monotonic() or os.time()
end

local function nest(n)
  local root = {}
  local cur = root
  for _ = 2, n do
    cur[1] = {}
    cur = cur[1]
  end
  return root
end

-- Every backend described in spec/backends/, or pending with its reason.
local function each_backend(body)
  for _, f in ipairs(helpers.backends()) do
    describe(f.name, function()
      local ok, why = f.available()
      if not ok then
        it("is pending", function() pending(f.name .. ": " .. tostring(why)) end)
        return
      end
      body(f)
    end)
  end
end

describe("fault matrix", function()
  describe("FileSystemCache, 4 processes on one directory", function()
    local function run_workers(nproc, nops, threshold)
      local dir = helpers.tmpdir("fs-procs")
      local t0 = now()
      local script = ROOT .. "/spec/support/fs_worker.lua"
      local pipes = {}
      for i = 1, nproc do
        -- io.popen returns at once: the children run side by side.
        pipes[i] = assert(io.popen(("%s %s %s %d %d %d 2>&1"):format(
          LUA, q(script), q(dir), i, nops, threshold)))
      end
      local totals = { ops = 0, reads = 0, hits = 0, torn = 0, errors = 0, incs = 0 }
      local lines = {}
      for i = 1, nproc do
        local out = pipes[i]:read("a")
        pipes[i]:close()
        lines[#lines + 1] = out
        local got = 0
        for k, v in out:gmatch("(%w+)=(%d+)") do
          if totals[k] then totals[k] = totals[k] + tonumber(v); got = got + 1 end
        end
        assert(got == 6, "worker " .. i .. " did not finish: " .. out)
      end
      figure("FileSystemCache %d processes x %d ops (threshold %d): %d reads, %d hits, %d torn, %d errors, %d incs, %.1f s",
        nproc, nops, threshold, totals.reads, totals.hits, totals.torn, totals.errors, totals.incs, now() - t0)
      return totals, table.concat(lines), dir
    end

    it("4 x 10,000 mixed operations: 0 torn or undecodable reads, no lost increment", function()
      local t, out, dir = run_workers(4, 10000, 0)
      assert.equal(40000, t.ops)
      assert.equal(0, t.torn, out)
      assert.equal(0, t.errors, out)
      assert.is_true(t.hits > 1000, out)
      -- the flock'ed increments of all processes add up
      local c = cache.FileSystemCache { cache_dir = dir, threshold = 0 }
      assert.equal(t.incs, c:get("counter"), out)
      -- no temporary file left behind
      for _, name in ipairs(list(dir)) do
        assert.is_nil(name:match("^%.tmp%-"), "left behind: " .. name)
      end
    end)

    it("4 x 2,000 operations while a threshold of 32 prunes: 0 torn reads", function()
      local t, out = run_workers(4, 2000, 32)
      assert.equal(0, t.torn, out)
      assert.equal(0, t.errors, out)
    end)
  end)

  describe("FileSystemCache, writes that cannot complete", function()
    local function no_partial(dir, keep)
      for _, name in ipairs(list(dir)) do
        assert.is_nil(name:match("^%.tmp%-"), "temporary file left: " .. name)
        assert.is_true(keep[name] ~= nil, "unexpected file: " .. name)
      end
    end

    local function entry_names(dir, keys)
      -- the file names of the given keys: md5 hex of the key
      local names = {}
      for _, k in ipairs(keys) do
        names[helpers.sh("printf %s " .. q(k) .. " | md5sum | cut -c1-32")] = true
      end
      return names
    end

    it("a 100 KB value under `ulimit -f 1`: false, err; no partial or temporary file; old value kept", function()
      local dir = helpers.tmpdir("fs-ulimit")
      local script = dir .. "-child.lua"
      write(script, [[
        local cache = require "cache"
        local c = cache.FileSystemCache { cache_dir = arg[1], threshold = 0 }
        assert(c:set("small", "fits in a block"))
        assert(c:set("big", "old"))
        local ok, err = c:set("big", ("x"):rep(100 * 1024))
        print(tostring(ok), tostring(err))
        print(tostring(c:get("big")), tostring(c:get("small")))
      ]])
      local out = helpers.sh(("bash -c %s 2>&1"):format(
        q(("ulimit -f 1; exec %s %s %s"):format(LUA, q(script), q(dir)))))
      local ok, err, big, small = out:match("^(%S+)\t([^\n]*)\n(%S+)\t(%S+[^\n]*)$")
      assert.equal("false", ok, out)
      assert.matches("FileSystemCache", err, 1, true)
      assert.matches("too large", err, 1, true)
      assert.equal("old", big, out)
      assert.equal("fits in a block", small, out)
      no_partial(dir, entry_names(dir, { "small", "big" }))
    end)

    it("a full disk (a 64 KiB tmpfs): false, err; no partial or temporary file; old value kept", function()
      local mnt = helpers.tmpdir("fs-full")
      if not os.execute("mount -t tmpfs -o size=64k tmpfs " .. q(mnt) .. " 2>/dev/null") then
        pending("cannot mount a tmpfs here (needs root): full-disk case not run")
        return
      end
      local c
      local ok, res = pcall(function()
        c = cache.FileSystemCache { cache_dir = mnt, threshold = 0 }
        assert.is_true(c:set("k", "old"))
        local set_ok, err = c:set("k", ("y"):rep(100 * 1024))
        assert.is_false(set_ok)
        assert.matches("No space left on device", err, 1, true)
        assert.equal("old", c:get("k"))
        no_partial(mnt, entry_names(mnt, { "k" }))
        -- and the disk still takes what fits
        assert.is_true(c:set("k2", ("z"):rep(1000)))
        assert.equal(1000, #c:get("k2"))
      end)
      -- the object holds the directory open: close it before unmounting
      if c then c:close() end
      c = nil
      collectgarbage()
      if not os.execute("umount " .. q(mnt) .. " 2>/dev/null") then
        os.execute("umount -l " .. q(mnt))
      end
      assert(ok, res)
    end)
  end)

  describe("hostile tables on every backend: a clear error, no crash, the connection still sound", function()
    each_backend(function(f)
      it("1000-deep and cyclic tables", function()
        local c = f.new()
        assert.is_true(c:set("before", "kept"))
        local ok, err = pcall(c.set, c, "deep", nest(1000))
        assert.is_false(ok)
        assert.matches("nested deeper than 100 levels", err)
        local cyc = { a = {} }
        cyc.a.back = cyc
        ok, err = pcall(c.set, c, "cyc", cyc)
        assert.is_false(ok)
        assert.matches("value%.a%.back: cannot store a cyclic table", err)
        ok, err = pcall(c.set_many, c, { x = 1, y = cyc })
        assert.is_false(ok)
        assert.matches("cyclic", err)
        assert.is_nil(c:get("deep"))
        assert.is_nil(c:get("cyc"))
        assert.is_nil(c:get("x"))
        assert.equal("kept", c:get("before"))
        assert.is_true(c:set("after", nest(100)))
        assert.same(nest(100), c:get("after"))
        c:clear()
      end)
    end)
  end)

  describe("64 MB values on every backend: stored whole or refused cleanly", function()
    local big = ("0123456789abcdef"):rep(4 * 1024 * 1024) -- 64 MiB
    each_backend(function(f)
      it("64 MB", function()
        local c = f.new()
        assert.is_true(c:set("small", 1))
        local t0 = now()
        local ok, err = c:set("big", big)
        if ok then
          figure("%s: 64 MiB value stored in %.2f s", f.name, now() - t0)
          local got = c:get("big")
          assert.is_true(got == big, "64 MB value read back differs")
        else
          assert.is_false(ok)
          assert.is_string(err)
          local max = f.caps.max_value
          assert.is_true(max == nil or max < #big, f.name .. " refused a value within its max_value: " .. err)
          assert.is_true(max ~= nil, f.name .. " refused 64 MB without declaring a max_value: " .. err)
          assert.is_nil(c:get("big"))
          figure("%s: 64 MiB value refused: %s", f.name, err)
        end
        -- the connection is still in step
        assert.equal(1, c:get("small"))
        assert.is_true(c:set("small", 2))
        assert.equal(2, c:get("small"))
        c:clear()
        collectgarbage()
      end)
    end)
  end)

  describe("awkward keys on every backend: no injection, other keys untouched", function()
    local keys = {
      "crlf\r\nkey", "\r\n", "lf\nonly", "with space", "  lead and trail  ",
      "nul\0byte", "\0", ("k"):rep(300), ("\r\n"):rep(150),
      -- would-be protocol injections (redis inline, memcached text, uWSGI vars)
      "x\r\nSET injected 1\r\n", "x\r\nset injected 0 0 1\r\n1\r\n",
      "*1\r\n$8\r\nFLUSHALL\r\n", "get injected", "injected\0tail",
    }
    each_backend(function(f)
      it("round-trip each key, touch no other", function()
        local c = f.new()
        assert.is_true(c:set("other", "untouched"))
        assert.is_true(c:set("injected", "original"))
        for i, k in ipairs(keys) do
          local ok, err = c:set(k, i)
          assert.is_true(ok, ("key #%d: %s"):format(i, tostring(err)))
        end
        for i, k in ipairs(keys) do
          assert.equal(i, c:get(k), ("key #%d read back"):format(i))
          assert.is_true(c:has(k), ("key #%d has"):format(i))
        end
        -- distinct keys stayed distinct, nothing else was written or flushed
        assert.equal("untouched", c:get("other"))
        assert.equal("original", c:get("injected"))
        assert.is_nil(c:get("x"))
        assert.is_nil(c:get("crlf"))
        assert.is_nil(c:get("nul"))
        assert.is_nil(c:get("with"))
        assert.is_nil(c:get(("k"):rep(299)))
        -- batch calls and inc on the same keys
        local vals = helpers.pack(c:get_many(table.unpack(keys)))
        for i = 1, #keys do assert.equal(i, vals[i], ("get_many #%d"):format(i)) end
        assert.equal(#keys[1] > 0 and 2, c:inc(keys[1]))
        assert.equal(8, c:inc(keys[7], 1))
        for i, k in ipairs(keys) do
          assert.is_true(c:delete(k), ("key #%d delete"):format(i))
        end
        assert.equal("untouched", c:get("other"))
        -- the connection is still sound
        assert.is_true(c:set("after", "fine"))
        assert.equal("fine", c:get("after"))
        c:clear()
      end)
    end)
  end)
end)
