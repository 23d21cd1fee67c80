-- curl for the nginx specs (openresty_spec, cosocket_spec): many requests
-- in one curl process, their statuses, headers and bodies parsed back.
local helpers = require "support.helpers"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local END = "==END %{num_connects} %{http_code}==\n"

-- Runs one curl process over a list of requests ({path, headers = {...}} or a
-- path string); with close = true each request uses its own connection.
-- Returns a list of { status, headers (lower-case names), body, connects }.
local function curl(port, requests, close)
  -- no ASan runtime in curl (make test SANITIZE=1 preloads it everywhere),
  -- and a hard bound in case curl itself hangs
  local parts = { "env -u LD_PRELOAD timeout -k 2 120 curl -s -i --max-time 20" }
  for i, r in ipairs(requests) do
    if type(r) == "string" then r = { r } end
    if i > 1 then parts[#parts + 1] = "--next -s -i --max-time 20" end
    parts[#parts + 1] = "-w " .. q("\n" .. END)
    if close then parts[#parts + 1] = "-H 'Connection: close'" end
    for name, value in pairs(r.headers or {}) do
      parts[#parts + 1] = "-H " .. q(name .. ": " .. value)
    end
    parts[#parts + 1] = q(("http://127.0.0.1:%s%s"):format(port, r[1]))
  end
  local out = helpers.sh(table.concat(parts, " ") .. " 2>&1") .. "\n"
  local responses = {}
  for text, connects, code in out:gmatch("(.-)\n==END (%d+) (%d+)==\n") do
    local head, body = text:match("^(.-)\r\n\r\n(.*)$")
    local headers = {}
    for name, value in (head or ""):gmatch("([%w_%-]+): ([^\r\n]*)") do
      headers[name:lower()] = value
    end
    responses[#responses + 1] = {
      status = tonumber(code), headers = headers,
      body = (body or text):gsub("\n$", ""), connects = tonumber(connects),
    }
  end
  assert(#responses == #requests,
         ("curl: %d responses for %d requests:\n%s"):format(#responses, #requests, out))
  return responses
end

return curl
