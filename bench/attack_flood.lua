-- wrk script: the attack replay's join flood (bench/attack_flood.py). Every other request knocks
-- on the room's link (the gate page's lobby form, POST ROOM_KNOCK); the others POST /j/<token>
-- for the leaked invites of TOKENS_FILE in turn, as a browser does (the gate's Origin). Each
-- request comes from the next of ADDRESSES client addresses (X-Forwarded-For, believed from the
-- trusted front), PER_NETWORK of them in each /24 from 198.18.0.0 upward (RFC 2544's
-- benchmarking range, 198.18.0.0/15, then public space past its 512 /24s; headers on loopback
-- only); the THREADS threads take the addresses in turn.
-- args: ORIGIN ROOM_KNOCK TOKENS_FILE ADDRESSES PER_NETWORK THREADS
-- Reports one BENCH-RESULT line: every answer counted by kind (its status, or "303 meeting",
-- "303 lobby", "challenge" for a proof-of-work page), answers per wall-clock second, and the
-- distinct /24s used. Tokens are read from the file only, never written out.
local threads = {}
local origin, knock
local tokens = {}
local form = "name=Visitor&message="
id = 0 -- this thread's number, set by setup()
addresses, per_network, thread_count = 0, 1, 1 -- read by done() through thread:get
sent = 0
counts = {}
seconds = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  origin = args[1]
  knock = args[2]
  for line in io.lines(args[3]) do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
  addresses = tonumber(args[4])
  per_network = tonumber(args[5])
  thread_count = tonumber(args[6])
end

local function address_of(index)
  local network = math.floor(index / per_network)
  return string.format("198.%d.%d.%d", 18 + math.floor(network / 256), network % 256,
    index % per_network + 1)
end

function request()
  local index = (sent * thread_count + id) % addresses
  sent = sent + 1
  local headers = { ["Origin"] = origin, ["X-Forwarded-For"] = address_of(index) }
  if sent % 2 == 1 or #tokens == 0 then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return wrk.format("POST", knock, headers, form)
  end
  local token = tokens[math.floor(sent / 2) % #tokens + 1]
  return wrk.format("POST", "/j/" .. token, headers, "")
end

local function kind_of(status, response_headers, body)
  if status == 303 then
    local location = response_headers["Location"] or response_headers["location"] or ""
    if location:find("#jwt=", 1, true) then
      return "303 meeting"
    elseif location:find("/_meetgate/lobby/", 1, true) then
      return "303 lobby"
    end
  elseif status == 200 and body and body:find("data-pow-token", 1, true) then
    return "challenge"
  end
  return tostring(status)
end

function response(status, response_headers, body)
  local kind = kind_of(status, response_headers, body)
  counts[kind] = (counts[kind] or 0) + 1
  local second = tostring(os.time())
  seconds[second] = (seconds[second] or 0) + 1
end

function done(summary, latency, requests)
  local totals, per_second, used = {}, {}, {}
  for _, thread in ipairs(threads) do
    for kind, n in pairs(thread:get("counts")) do
      totals[kind] = (totals[kind] or 0) + n
    end
    for second, n in pairs(thread:get("seconds")) do
      per_second[second] = (per_second[second] or 0) + n
    end
    local first, pool, size = thread:get("id"), thread:get("addresses"), thread:get("per_network")
    for s = 0, math.min(thread:get("sent"), pool) - 1 do
      used[math.floor(((s * #threads + first) % pool) / size)] = true
    end
  end
  local networks = 0
  for _ in pairs(used) do
    networks = networks + 1
  end
  local function object(t)
    local parts = {}
    for key, n in pairs(t) do
      parts[#parts + 1] = string.format('"%s":%d', key, n)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"networks":%d,' ..
    '"statuses":%s,"seconds":%s}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), networks, object(totals),
    object(per_second)))
end
