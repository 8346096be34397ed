-- Each request carries the next token of TOKENS_FILE (cache misses: every token is distinct),
-- or the same token when the file holds one line. Optional BODY_FILE and METHOD for POSTs, or
-- BODIES_FILE: one body a line, each sent once (the threads, THREADS of them, take turns; the
-- warm-up and the run, told apart by WRK_PHASE, take different lines).
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
local bodies = {}
if os.getenv("BODIES_FILE") then
  -- The warm-up takes the first third of the lines, the measured run the rest.
  local all = {}
  for line in io.lines(os.getenv("BODIES_FILE")) do
    if #line > 0 then all[#all + 1] = line end
  end
  local third = math.floor(#all / 3)
  local first, last = third + 1, #all
  if os.getenv("WRK_PHASE") == "warmup" then first, last = 1, third end
  for i = first, last do bodies[#bodies + 1] = all[i] end
end
local threads = tonumber(os.getenv("THREADS") or "1")
local method = os.getenv("METHOD") or "GET"
local counter = 0

setup = function(thread)
  thread:set("offset", counter)
  counter = counter + 1
end

init = function(args)
  index = offset
  next_body = offset + 1
end

request = function()
  index = index % #tokens + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[index]}
  local this_body = body
  if #bodies > 0 then
    -- Past the last one, bodies are sent again (and the simulator refuses them as replays).
    this_body = bodies[(next_body - 1) % #bodies + 1]
    next_body = next_body + threads
  end
  if this_body then headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json" end
  return wrk.format(method, nil, headers, this_body)
end
