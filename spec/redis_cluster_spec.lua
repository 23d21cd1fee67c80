-- RedisClusterCache on a real 3-master cluster: keys spread over every
-- master, multi-key calls across slots in one pipeline per node, clear on
-- every master, and a live slot migration (ASK while it runs, MOVED after).
local helpers = require "support.helpers"
local R = require "support.redis_helpers"

local CLUSTER = os.getenv("CACHE_TEST_REDIS_CLUSTER")

local function ports() return R.ports_of(CLUSTER) end

local function keys_on(port, prefix)
  local out = helpers.sh(("redis-cli -h 127.0.0.1 -p %d --scan --pattern %s 2>/dev/null")
    :format(port, R.q(prefix:gsub("[%*%?%[%]\\]", "\\%0") .. "*")))
  local n = 0
  for _ in out:gmatch("[^\n]+") do n = n + 1 end
  return n
end

-- the port of the master owning slot, from CLUSTER SLOTS
local function owner_of(slot) return R.cluster_owner(ports(), slot) end

describe("RedisClusterCache", function()
  if not CLUSTER then
    it("runs", function() pending("cluster not started (spec/servers/redis_cluster.sh)") end)
    return
  end
  local cache = require "cache"

  local function new(opts)
    local o = { cluster = CLUSTER, key_prefix = helpers.unique("cl") }
    for k, v in pairs(opts or {}) do o[k] = v end
    return cache.RedisClusterCache(o), o.key_prefix
  end

  it("needs startup nodes and checks their form", function()
    local ok, err = pcall(cache.RedisClusterCache, {})
    assert.is_false(ok)
    assert.matches("cluster", err)
    ok, err = pcall(cache.RedisClusterCache, { cluster = "127.0.0.1" })
    assert.is_false(ok)
    assert.matches("host:port", err)
    ok, err = pcall(cache.RedisClusterCache, { cluster = CLUSTER, db = 1 })
    assert.is_false(ok)
    assert.matches("db", err)
  end)

  it("accepts a list of nodes, and a dead node among them", function()
    local list = { "127.0.0.1:1" }
    for _, p in ipairs(ports()) do list[#list + 1] = "127.0.0.1:" .. p end
    local c = new { cluster = list }
    assert.is_true(c:set("k", 1))
    assert.equal(1, c:get("k"))
    c:clear()
  end)

  it("fails cleanly when no node answers", function()
    local c = new { cluster = "127.0.0.1:1" }
    local v, err = c:get("k")
    assert.is_nil(v)
    assert.matches("cannot read the slot map", err, 1, true)
    local ok = c:set_many { a = 1, b = 2 }
    assert.is_false(ok)
  end)

  it("spreads keys over every master, and multi-key calls cross slots in one pipeline per node", function()
    local c, prefix = new()
    local map, keys = {}, {}
    for i = 1, 300 do map["k" .. i] = i; keys[i] = "k" .. i end
    for _, p in ipairs(ports()) do R.cli(p, "CONFIG", "RESETSTAT") end
    assert.is_true(c:set_many(map))
    local got = { c:get_many(table.unpack(keys)) }
    for i = 1, 300 do assert.equal(i, got[i]) end
    local d = c:get_dict("k1", "k2", "nope")
    assert.same({ k1 = 1, k2 = 2 }, d)
    for _, p in ipairs(ports()) do
      -- about 100 SETs and 100 GETs per node, in one read per batch (a few
      -- more if TCP splits a write), never one read per command
      local reads = tonumber(R.cli(p, "INFO", "stats"):match("total_reads_processed:(%d+)"))
      assert.is_true(reads < 20, ("node %d: %d reads for its share of 3 batches"):format(p, reads))
      local sets = tonumber(R.cli(p, "INFO", "commandstats"):match("cmdstat_set:calls=(%d+)"))
      assert.is_true(sets > 50, ("node %d: %d SETs"):format(p, sets))
      local n = keys_on(p, prefix)
      assert.is_true(n > 50, ("node %d holds %d keys"):format(p, n))
    end
    local all, deleted = c:delete_many("k1", "k2", "k3", "missing")
    assert.is_false(all)
    table.sort(deleted)
    assert.same({ "k1", "k2", "k3" }, deleted)
    c:clear()
  end)

  it("keeps hash-tagged keys together", function()
    local c, prefix = new()
    c:set_many { ["{user1}.a"] = 1, ["{user1}.b"] = 2 }
    local sa = tonumber(R.cli(ports()[1], "CLUSTER", "KEYSLOT", prefix .. "{user1}.a"))
    local sb = tonumber(R.cli(ports()[1], "CLUSTER", "KEYSLOT", prefix .. "{user1}.b"))
    assert.equal(sa, sb)
    local owner = owner_of(sa)
    assert.equal("1", R.cli(owner, "GET", prefix .. "{user1}.a"))
    assert.equal("2", R.cli(owner, "GET", prefix .. "{user1}.b"))
    c:clear()
  end)

  it("clear walks every master and leaves other prefixes alone", function()
    local c, prefix = new()
    local other, oprefix = new()
    local map = {}
    for i = 1, 200 do map["k" .. i] = i end
    c:set_many(map)
    other:set_many(map)
    assert.is_true(c:clear())
    for _, p in ipairs(ports()) do
      assert.equal(0, keys_on(p, prefix))
      assert.is_true(keys_on(p, oprefix) > 0)
    end
    other:clear()
  end)

  it("follows a slot migration: ASK while it runs, MOVED after", function()
    local c, prefix = new()
    local tag = "{" .. helpers.unique("mig") .. "}" -- a fresh slot each run
    assert.is_true(c:set(tag .. "a", "first")) -- the map is loaded now
    local key_a = prefix .. tag .. "a"
    local slot = tonumber(R.cli(ports()[1], "CLUSTER", "KEYSLOT", key_a))
    local from = owner_of(slot)
    local to
    for _, p in ipairs(ports()) do if p ~= from then to = p; break end end
    local id_from, id_to = R.cli(from, "CLUSTER", "MYID"), R.cli(to, "CLUSTER", "MYID")
    assert.equal("OK", R.cli(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", id_from))
    assert.equal("OK", R.cli(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", id_to))

    -- migrating: a key still on the old node is served there; a new key is
    -- redirected with ASK to the importing node
    assert.equal("first", c:get(tag .. "a"))
    local seen = R.monitor(to, function()
      assert.is_true(c:set(tag .. "b", "second"))
      assert.equal("second", c:get(tag .. "b"))
    end)
    assert.equal(2, #R.only(seen, "ASKING"))

    -- finish: move the key, hand the slot to the new owner everywhere
    assert.equal("OK", R.cli(from, "MIGRATE", "127.0.0.1", to, "", "0", "5000", "KEYS", key_a))
    for _, p in ipairs(ports()) do
      R.cli(p, "CLUSTER", "SETSLOT", slot, "NODE", id_to)
    end
    -- our map still says `from`: MOVED sends us on
    local function moved()
      return tonumber(R.cli(from, "INFO", "errorstats"):match("errorstat_MOVED:count=(%d+)") or "0")
    end
    local before = moved()
    assert.equal("first", c:get(tag .. "a"))
    assert.equal(before + 1, moved()) -- asked there first, then sent on
    local all, set = c:set_many { [tag .. "c"] = 3, ["x"] = 4 }
    assert.is_true(all)
    assert.equal(2, #set)
    assert.equal(3, c:get(tag .. "c"))
    assert.equal(to, owner_of(slot))
    assert.equal("3", R.cli(to, "GET", prefix .. tag .. "c"))
    assert.equal("!", R.cli(to, "GET", prefix .. tag .. "b"):sub(1, 1)) -- written through ASK
    assert.equal("!", R.cli(to, "GET", key_a):sub(1, 1))
    c:clear()
  end)
end)
