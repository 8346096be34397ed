-- POST form bodies to a token endpoint: each line of FORMS_FILE is used once (JWT-bearer
-- grants are single use), or the single line again and again (client credentials).
dofile(os.getenv("WRK_REPORT"))

local forms = {}
for line in io.lines(os.getenv("FORMS_FILE")) do
  if #line > 0 then forms[#forms + 1] = line end
end
local auth = os.getenv("BASIC_AUTH")
local threads = tonumber(os.getenv("WRK_THREADS") or "2")
local counter = 0

setup = function(thread)
  thread:set("offset", counter)
  counter = counter + 1
end

init = function(args)
  index = offset + 1
end

request = function()
  local form = forms[(index - 1) % #forms + 1]
  index = index + threads
  local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
  if auth then headers["Authorization"] = "Basic " .. auth end
  return wrk.format("POST", nil, headers, form)
end
