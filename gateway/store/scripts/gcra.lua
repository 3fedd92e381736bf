-- Charge one request against a GCRA limit (generic cell rate algorithm).
-- KEYS[1] the limit's state: its theoretical arrival time (TAT) in microseconds.
-- ARGV[1] emission interval in microseconds (1e6 / rate); ARGV[2] burst (requests).
-- Returns {1, 0} when allowed, {0, retry_after_microseconds} when not.
-- The server's clock decides, so replicas with skewed clocks share one consistent limit.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, math.ceil(allow_at - now)}
end
-- Rounded up so that storing it never makes the limit more lenient.
new_tat = math.ceil(new_tat)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
