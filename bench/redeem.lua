-- wrk script: POST /j/<token> once per token, in file order; args: TOKENS_FILE ORIGIN.
-- Past the last token it posts an unknown one, which the gate refuses (counted as an error).
local tokens = {}
local next_token = 1
local headers = {}

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

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
