-- wrk script: POST /j/<token> once per token, in file order; args: TOKENS_FILE ORIGIN.
-- Only a 303 (to the meeting, with the cookie) is a redemption: a challenge page, a 429 or a
-- refusal past the last token (an unknown one is posted then) is counted as refused.
local threads = {}
local tokens = {}
local next_token = 1
local headers = {}
refused = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  headers["Origin"] = args[2]
end

function request()
  local token = tokens[next_token] or "exhausted-bench-token-list-xxxxxxxx"
  next_token = next_token + 1
  return wrk.format("POST", "/j/" .. token, headers, "")
end

function response(status, response_headers, body)
  if status ~= 303 then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local not_redeemed = 0
  for _, thread in ipairs(threads) do
    not_redeemed = not_redeemed + thread:get("refused")
  end
  io.write(string.format(
    'BENCH-RESULT {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    not_redeemed, e.timeout, latency:percentile(50), latency:percentile(99)))
end
