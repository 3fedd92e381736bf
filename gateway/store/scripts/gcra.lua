-- A part, not a script of its own: charge_limits(keys, args), for the scripts that charge limits.
-- Charge one request against several GCRA limits (generic cell rate algorithm), all or nothing.
-- keys[i] limit i's state: its theoretical arrival time (TAT) in microseconds.
-- args[2i-1] limit i's emission interval in microseconds (1e6 / rate); args[2i] its burst.
-- Returns {1, 0, 0} when every limit had room and each was charged, else {0, retry_after_us,
-- corrupt, wait_1_us, ..., wait_n_us}: the longest wait among the limits that refused, how many
-- states did not parse, then each limit's own wait (0 where it had room), and nothing charged.
-- A state that does not parse (not a whole number, or not a string) refuses, as a full bucket
-- would, and is left as it is: garbage never lets a request through.
-- The server's clock decides, so replicas with skewed clocks share one consistent limit.
local function charge_limits(keys, args)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  -- A key named twice sees its first charge when the second is checked.
  local charged = {}
  local order = {}
  local wait = 0
  local waits = {}
  local corrupt = 0
  for i, key in ipairs(keys) do
    local interval = tonumber(args[2 * i - 1])
    local burst = tonumber(args[2 * i])
    local tat = charged[key]
    if tat == nil then
      local stored = redis.pcall('GET', key)
      if stored == false then
        tat = now
      elseif type(stored) == 'string' and string.match(stored, '^%d+$') then
        tat = tonumber(stored)
      else
        corrupt = corrupt + 1
        tat = now + burst * interval
      end
      order[#order + 1] = key
    end
    if tat < now then
      tat = now
    end
    local new_tat = tat + interval
    local allow_at = new_tat - burst * interval
    waits[i] = 0
    if now < allow_at then
      waits[i] = math.ceil(allow_at - now)
      if allow_at - now > wait then
        wait = allow_at - now
      end
    end
    charged[key] = new_tat
  end
  if wait > 0 then
    local refused = {0, math.ceil(wait), corrupt}
    for i = 1, #waits do
      refused[#refused + 1] = waits[i]
    end
    return refused
  end
  for _, key in ipairs(order) do
    -- Rounded up so that storing it never makes the limit more lenient. The key lives until its
    -- bucket is full again, when a missing key means the same as the stored one.
    local new_tat = math.ceil(charged[key])
    redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
  end
  return {1, 0, 0}
end
