-- In-process benchmarks: SimpleCache, FileSystemCache and the decorators,
-- each beside its baseline measured in the same run.
--
-- Prints rows "name|ops/s|p50 ns|p99 ns|baseline|ratio" on stdout for
-- bench/run.sh to tabulate.
--
-- The machine these run on is shared, so time is the process's CPU time
-- (os.clock), not the wall clock, which would mostly measure the other
-- tenants: ops/s is operations per CPU-second, the median of REPS
-- repetitions. A row with a baseline runs one repetition of the baseline
-- right before each of its own, and its ratio is the median of those
-- per-pair ratios, so slow phases of the machine hit both sides alike.
-- Latency percentiles are wall-clock, over batches of BATCH operations
-- (timing each operation alone would measure the clock more than the
-- cache); p99 therefore includes preemption by other processes.
local cache = require "cache"
local now = cache.core.monotonic
local cpu = os.clock

local REPS = math.max(5, tonumber(os.getenv("BENCH_REPS")) or 5)
local BATCH = 100
local SCALE = tonumber(os.getenv("BENCH_SCALE")) or 1

local function median(t)
  local c = {}
  for i = 1, #t do c[i] = t[i] end
  table.sort(c)
  return c[(#c + 1) // 2]
end

local function percentile(t, p)
  table.sort(t)
  return t[math.max(1, math.ceil(#t * p))]
end

--- One repetition: op(i) n times; returns ops per CPU-second, and appends
-- the wall-clock ns per operation of each batch to lat.
local function rep(n, op, setup, lat)
  if setup then setup() end
  local start = cpu()
  local i = 0
  while i < n do
    local b0 = now()
    for j = i + 1, i + BATCH do op(j) end
    lat[#lat + 1] = (now() - b0) / BATCH * 1e9
    i = i + BATCH
  end
  local t = cpu() - start
  return n / (t > 0 and t or 1e-9)
end

local rows, specs = {}, {}

--- Measures a row. per: operations per op() call (get_many(100): 100).
local function row(name, n, op, setup, baseline, per)
  per = per or 1
  n = math.max(BATCH, n // BATCH * BATCH)
  specs[name] = { n = n, op = op, setup = setup, per = per }
  local base = baseline and specs[baseline]
  local rates, ratios, lat, blat = {}, {}, {}, {}
  for _ = 1, REPS do
    local b = base and rep(base.n, base.op, base.setup, blat) * base.per
    local r = rep(n, op, setup, lat) * per
    rates[#rates + 1] = r
    if b then ratios[#ratios + 1] = r / b end
  end
  for i = 1, #lat do lat[i] = lat[i] / per end
  rows[#rows + 1] = { name = name, ops = median(rates), p50 = percentile(lat, 0.5),
    p99 = percentile(lat, 0.99), baseline = baseline,
    ratio = #ratios > 0 and median(ratios) or nil }
  return rows[#rows].ops
end

local function emit()
  for _, r in ipairs(rows) do
    local ratio = r.ratio and ("%.2f"):format(r.ratio) or ""
    print(("%s|%.0f|%.0f|%.0f|%s|%s"):format(r.name, r.ops, r.p50, r.p99, r.baseline or "", ratio))
  end
end

local N = 200000 * SCALE
local KEYS = 10000
local keys = {}
for i = 1, KEYS do keys[i] = "key:" .. i end
local v100 = ("x"):rep(100)
local v10k = ("y"):rep(10240)
local rec = { id = 1, name = "Ada Lovelace", email = "ada@example.org", age = 36, active = true,
  score = 99.5, tags = { "math", "poetry" }, city = "London", born = 1815, lang = "en" }

-- memory per entry ---------------------------------------------------------------------
if cache.backend_types().SimpleCache then
  local function rss()
    local f = io.open("/proc/self/statm")
    local _, res = f:read("n", "n")
    f:close()
    return res * 4096
  end
  local n = 100000
  local mk = {}
  for i = 1, n do mk[i] = ("k%07d"):format(i) end
  collectgarbage()
  collectgarbage()
  local before = rss()
  local m = cache.SimpleCache { threshold = n * 2 }
  for i = 1, n do m:set(mk[i], v100) end
  collectgarbage()
  collectgarbage()
  local per = (rss() - before) / n
  local payload = #mk[1] + #cache.encode(v100)
  print(("memory|%.0f|%d|%.0f|bytes RSS per entry (key %d B + value %d B encoded); target <= %.0f")
    :format(per, payload, 1.5 * payload + 64, #mk[1], #cache.encode(v100), 1.5 * payload + 64))
  m:close()
end

-- baselines ------------------------------------------------------------------
local function noop() end
row("call floor: empty Lua function", N, function() noop() end)

local plain = {}
local function plain_set(k, v, ttl) plain[k] = { v, ttl == 0 and 0 or now() + ttl } end
local function plain_get(k)
  local e = plain[k]
  if e and (e[2] == 0 or e[2] > now()) then return e[1] end
end
for i = 1, KEYS do plain_set(keys[i], v100, 300) end
row("baseline: Lua table get hit (expiry check)", N, function(i) plain_get(keys[i % KEYS + 1]) end)
row("baseline: Lua table set", N, function(i) plain_set(keys[i % KEYS + 1], v100, 300) end)

-- SimpleCache ------------------------------------------------------------------
local types = cache.backend_types()
if types.SimpleCache then
  local c = cache.SimpleCache { threshold = KEYS * 2 }
  for i = 1, KEYS do c:set(keys[i], v100) end
  local base_get = "baseline: Lua table get hit (expiry check)"
  local base_set = "baseline: Lua table set"
  row("Simple get hit 100 B", N, function(i) c:get(keys[i % KEYS + 1]) end, nil, base_get)
  row("Simple get miss", N, function(i) c:get("nope" .. (i % 100)) end, nil, base_get)
  row("Simple set 100 B", N, function(i) c:set(keys[i % KEYS + 1], v100) end, nil, base_set)
  row("Simple add (exists)", N, function(i) c:add(keys[i % KEYS + 1], v100) end, nil, base_set)
  row("Simple inc", N, function(i) c:inc("counter:" .. (i % 100)) end, nil, base_set)
  for i = 1, 1000 do c:set("big" .. i, v10k) end
  row("Simple get hit 10 KB", N // 2, function(i) c:get("big" .. (i % 1000 + 1)) end, nil, base_get)
  row("Simple set 10 KB", N // 4, function(i) c:set("big" .. (i % 1000 + 1), v10k) end, nil, base_set)
  for i = 1, 1000 do c:set("rec" .. i, rec) end
  row("Simple get hit 10-field table", N // 2, function(i) c:get("rec" .. (i % 1000 + 1)) end, nil, base_get)
  row("Simple set 10-field table", N // 2, function(i) c:set("rec" .. (i % 1000 + 1), rec) end, nil, base_set)
  local batch = {}
  for i = 1, 100 do batch[i] = keys[i] end
  local mapping = {}
  for i = 1, 100 do mapping[keys[i]] = v100 end
  local unpack = table.unpack or unpack
  row("Simple get_many(100) [keys/s]", N // 100, function() c:get_many(unpack(batch)) end,
    nil, base_get, 100)
  row("Simple set_many(100) [keys/s]", N // 100, function() c:set_many(mapping) end,
    nil, base_set, 100)

  -- churn: 10,000 keys over a 1,000-entry cache, 10 % hits
  local churn = cache.SimpleCache { threshold = 1000 }
  local seq = {}
  math.randomseed(7)
  for i = 1, 65536 do
    seq[i] = math.random() < 0.1 and keys[math.random(1, 900)] or keys[math.random(1, KEYS)]
  end
  for i = 1, 900 do churn:set(keys[i], v100) end
  row("Simple churn get/set-on-miss (thr 1000)", N, function(i)
    local k = seq[i % 65536 + 1]
    if churn:get(k) == nil then churn:set(k, v100) end
  end)
end

-- FileSystemCache --------------------------------------------------------------
if types.FileSystemCache then
  local dir = os.tmpname()
  os.remove(dir)
  local fs = cache.FileSystemCache { cache_dir = dir, threshold = 0 }
  for i = 1, 1000 do fs:set(keys[i], v100) end
  -- baseline: open/read/close of a file of the same size
  local sample = dir .. "/baseline-file"
  local fh = assert(io.open(sample, "wb"))
  fh:write(("z"):rep(#cache.encode(v100) + 16))
  fh:close()
  row("baseline: raw open/read/close same size", N // 4, function()
    local f = io.open(sample, "rb")
    f:read("a")
    f:close()
  end)
  local base = "baseline: raw open/read/close same size"
  -- the floor of an atomic write: a new file written, closed and renamed
  -- over the old one (FileSystemCache does this, plus its header)
  local tmpf, target = dir .. "/baseline-tmp", dir .. "/baseline-target"
  local payload = ("z"):rep(#cache.encode(v100) + 16)
  row("baseline: raw create+write+rename same size", N // 100, function()
    local f = io.open(tmpf, "wb")
    f:write(payload)
    f:close()
    os.rename(tmpf, target)
  end)
  local wbase = "baseline: raw create+write+rename same size"
  row("FS get hit 100 B (1000 keys)", N // 4, function(i) fs:get(keys[i % 1000 + 1]) end, nil, base)
  row("FS get hit 100 B (50 hot keys)", N // 4, function(i) fs:get(keys[i % 50 + 1]) end, nil, base)
  row("FS get miss", N // 4, function(i) fs:get("nope" .. i) end, nil, base)
  row("FS set 100 B", N // 100, function(i) fs:set(keys[i % 1000 + 1], v100) end, nil, wbase)
  row("FS add (exists)", N // 10, function(i) fs:add(keys[i % 1000 + 1], v100) end, nil, base)
  row("FS inc", N // 200, function(i) fs:inc("counter:" .. (i % 100)) end, nil, wbase)
  local fbatch, fmap = {}, {}
  for i = 1, 100 do fbatch[i] = keys[i]; fmap[keys[i]] = v100 end
  row("FS get_many(100) [keys/s]", N // 400, function() fs:get_many(table.unpack(fbatch)) end,
    nil, base, 100)
  row("FS set_many(100) [keys/s]", N // 10000, function() fs:set_many(fmap) end, nil, wbase, 100)
  fs:clear()
  os.remove(sample)
  os.remove(target)
  os.execute("rm -rf '" .. dir .. "'")
end

-- decorators -----------------------------------------------------------------------
if cache.new and types.SimpleCache then
  local app = cache.new { CACHE_TYPE = "SimpleCache", CACHE_THRESHOLD = 100000 }
  local function work(a, b) return a * b + 1 end
  local memo = app:memoize { timeout = 300 }(work)
  local hand = {}
  local function hand_memo(a, b)
    local k = a .. "\0" .. b
    local e = hand[k]
    if e and e[2] > now() then return e[1] end
    local v = work(a, b)
    hand[k] = { v, now() + 300 }
    return v
  end
  for i = 1, 100 do memo(i, 2) hand_memo(i, 2) end
  row("baseline: hand-written Lua-table memoize hit", N // 2, function(i) hand_memo(i % 100 + 1, 2) end)
  row("memoize hit (SimpleCache)", N // 2, function(i) memo(i % 100 + 1, 2) end, nil,
    "baseline: hand-written Lua-table memoize hit")
  local fresh = 1000000 -- arguments never seen: every call a miss
  row("memoize miss (SimpleCache)", N // 20, function() fresh = fresh + 1 memo(fresh, 3) end)
  cache.request_provider = function() return "/bench", {} end
  local view = app:cached { timeout = 300, key_prefix = "view/%s" }(function() return "page" end)
  view()
  row("cached hit (SimpleCache)", N // 2, function() view() end)
  local path, miss = "/bench", 0
  cache.request_provider = function() return path, {} end
  row("cached miss (SimpleCache)", N // 20, function()
    miss = miss + 1
    path = "/miss/" .. miss
    view()
  end)
end

-- fetch ---------------------------------------------------------------------------
-- A hit from a TieredCache's l1 through fetch, beside the read-through a
-- user would write by hand over a Lua table (lookup, expiry check, the
-- callback on a miss).
if cache.TieredCache and types.SimpleCache and types.FileSystemCache then
  local dir = os.tmpname()
  os.remove(dir)
  local hand = {}
  local function hand_fetch(k, cb)
    local e = hand[k]
    if e and e[2] > now() then return e[1] end
    local v = cb()
    hand[k] = { v, now() + 300 }
    return v
  end
  local function value() return v100 end
  local tiered = cache.TieredCache { l1 = cache.SimpleCache { threshold = KEYS * 2 },
    l2 = cache.FileSystemCache { cache_dir = dir, threshold = 0 }, ipc = false, l1_timeout = 3600 }
  local app = cache.new { CACHE_TYPE = "SimpleCache", CACHE_THRESHOLD = KEYS * 2 }
  for i = 1, 1000 do
    hand_fetch(keys[i], value)
    tiered:fetch(keys[i], nil, value)
    tiered:fetch(keys[i], nil, value) -- now in l1
    app:fetch(keys[i], nil, value)
  end
  local base = "baseline: hand-written Lua read-through (table, expiry check)"
  row(base, N, function(i) hand_fetch(keys[i % 1000 + 1], value) end)
  row("fetch hit from L1 (TieredCache, 100 B)", N, function(i) tiered:fetch(keys[i % 1000 + 1], nil, value) end,
      nil, base)
  row("fetch hit (Cache on SimpleCache, 100 B)", N, function(i) app:fetch(keys[i % 1000 + 1], nil, value) end,
      nil, base)
  tiered:clear()
  os.execute("rm -rf '" .. dir .. "'")
end

emit()
