-- What the network benchmarks share: timing by batches on the wall clock,
-- and rows printed as "name|ops/s|p50 ns|p99 ns|baseline|ratio" for
-- bench/run.sh to tabulate.
local cache = require "cache"

local M = {}
M.now = cache.core.monotonic
M.REPS = tonumber(os.getenv("BENCH_REPS")) or 5
M.SCALE = tonumber(os.getenv("BENCH_SCALE")) or 1
M.BATCH = 100

function M.median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

function M.percentile(t, p)
  table.sort(t)
  return t[math.max(1, math.ceil(#t * p))]
end

-- One repetition: op(i) for i = first + 1 .. first + n, in batches whose
-- ns per operation go to lat; returns operations per second.
local function repetition(n, op, per_op, first, lat)
  local now, batch = M.now, M.BATCH
  local start = now()
  for i0 = first, first + n - 1, batch do
    local b0 = now()
    for j = i0 + 1, i0 + batch do op(j) end
    lat[#lat + 1] = (now() - b0) / (batch * per_op) * 1e9
  end
  return n * per_op / (now() - start)
end

--- op(i) n times per repetition (n a multiple of BATCH); returns ops/s
-- (median of REPS) and the p50 / p99 of the time per operation over batches
-- (ns). per_op counts operations per call (get_many(100): 100). With fresh,
-- i keeps growing across repetitions, so a miss stays a miss.
function M.measure(n, op, per_op, fresh)
  per_op = per_op or 1
  local rates, lat, base = {}, {}, 0
  for _ = 1, M.REPS do
    rates[#rates + 1] = repetition(n, op, per_op, base, lat)
    if fresh then base = base + n end
  end
  return M.median(rates), M.percentile(lat, 0.5), M.percentile(lat, 0.99)
end

--- A table of rows: rows:base(name, ops) adds a baseline measured elsewhere,
-- rows:run(name, baseline, n, op, per_op, fresh) measures one,
-- rows:pair(...) two side by side, rows:add(row) takes a finished one,
-- rows:emit() prints them all.
local Rows = {}
Rows.__index = Rows

function M.rows()
  return setmetatable({ list = {} }, Rows)
end

function Rows:add(r)
  self.list[#self.list + 1] = r
  return r
end

function Rows:base(name, ops)
  ops = tonumber(ops or "")
  if ops then self:add { name = name, ops = ops } end
end

function Rows:run(name, baseline, n, op, per_op, fresh)
  local ops, p50, p99 = M.measure(n, op, per_op, fresh)
  return self:add { name = name, ops = ops, p50 = p50, p99 = p99, baseline = baseline }
end

--- Two rows measured in turn, one repetition of each per pair (at least
-- REPS pairs): base_name's row, then name's with ratio = the median of the
-- per-pair ratios, so a slow phase of the shared machine hits both alike.
function Rows:pair(base_name, base_op, name, op, n, pairs)
  local brates, rates, ratios, blat, lat = {}, {}, {}, {}, {}
  for _ = 1, math.max(pairs or 0, M.REPS) do
    local b = repetition(n, base_op, 1, 0, blat)
    local r = repetition(n, op, 1, 0, lat)
    brates[#brates + 1], rates[#rates + 1], ratios[#ratios + 1] = b, r, r / b
  end
  self:add { name = base_name, ops = M.median(brates), p50 = M.percentile(blat, 0.5),
             p99 = M.percentile(blat, 0.99) }
  return self:add { name = name, ops = M.median(rates), p50 = M.percentile(lat, 0.5),
                    p99 = M.percentile(lat, 0.99), baseline = base_name, ratio = M.median(ratios) }
end

local function num(v, fmt)
  return v and (fmt):format(v) or ""
end

function Rows:emit()
  local by = {}
  for _, r in ipairs(self.list) do by[r.name] = r end
  for _, r in ipairs(self.list) do
    local base = r.baseline and by[r.baseline]
    local ratio = r.ratio or (base and r.ops / base.ops)
    print(("%s|%.0f|%s|%s|%s|%s"):format(r.name, r.ops, num(r.p50, "%.0f"), num(r.p99, "%.0f"),
      r.baseline or "", num(ratio, "%.2f")))
  end
end

return M
