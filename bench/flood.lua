-- wrk script: a join flood. POST /j/<token> with the gate's Origin, each request from the next of
-- ADDRESSES client addresses (X-Forwarded-For, believed because the gateway trusts 127.0.0.1),
-- PER_NETWORK of them in each /24 of 198.18.0.0/15 (RFC 2544's benchmarking range). Every
-- LINK_EVERY-th request uses LINK, a real invite that is used up; the others a fresh unknown
-- token of the real shape (32 URL-safe characters).
-- args: ORIGIN LINK ADDRESSES PER_NETWORK LINK_EVERY
-- Reports the run as one BENCH-RESULT line with every answer counted by status.
local threads = {}
local origin, link
local addresses, per_network, link_every
local sent = 0
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
counts = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  origin = args[1]
  link = args[2]
  addresses = tonumber(args[3])
  per_network = tonumber(args[4])
  link_every = tonumber(args[5])
  math.randomseed(os.time())
end

local function unknown_token()
  local chars = {}
  for i = 1, 32 do
    local n = math.random(1, 64)
    chars[i] = alphabet:sub(n, n)
  end
  return table.concat(chars)
end

function request()
  local index = sent % addresses
  sent = sent + 1
  local network = math.floor(index / per_network)
  local address = string.format("198.%d.%d.%d", 18 + math.floor(network / 256), network % 256,
    index % per_network + 1)
  local token = (sent % link_every == 0) and link or unknown_token()
  local headers = { ["Origin"] = origin, ["X-Forwarded-For"] = address }
  return wrk.format("POST", "/j/" .. token, headers, "")
end

function response(status, response_headers, body)
  local key = tostring(status)
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals) do
    parts[#parts + 1] = string.format('"%s":%d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"statuses":{%s}}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), table.concat(parts, ",")))
end
