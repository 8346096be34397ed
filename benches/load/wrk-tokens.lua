-- Each request carries the next token of TOKENS_FILE (cache misses: every token is distinct),
-- or the same token when the file holds one line. Optional BODY_FILE and METHOD for POSTs.
dofile(os.getenv("WRK_REPORT"))

local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local body = nil
if os.getenv("BODY_FILE") then
  local f = io.open(os.getenv("BODY_FILE"), "r")
  body = f:read("*a")
  f:close()
end
local method = os.getenv("METHOD") or "GET"
local counter = 0

setup = function(thread)
  thread:set("offset", counter)
  counter = counter + 1
end

init = function(args)
  index = offset
end

request = function()
  index = index % #tokens + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[index]}
  if body then headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json" end
  return wrk.format(method, nil, headers, body)
end
