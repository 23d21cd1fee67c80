-- The cache contract of API.md §2, run against every backend that
-- spec/backends/*.lua describes. A backend whose server is not running here
-- shows up as skipped, with the reason.
local helpers = require "support.helpers"
local contract = require "support.contract"
local T = { describe = describe, it = it, before_each = before_each,
            after_each = after_each, assert = assert, helpers = helpers }

for _, f in ipairs(helpers.backends()) do
  describe("contract: " .. f.name, function()
    local ok, why = f.available()
    if not ok then
      it("runs", function() pending(f.name .. ": " .. tostring(why)) end)
      return
    end
    contract(f, T)
  end)
end
