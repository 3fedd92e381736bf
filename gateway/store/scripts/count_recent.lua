-- Count events in fixed windows of the server's clock.
-- KEYS[1] the counter: a hash of the window it counts ('window') and its count ('count').
-- ARGV[1] window length in seconds; ARGV[2] how many events to add (0 only reads).
-- Returns {the current window's count after adding, 1 if the stored counter did not parse}.
-- A counter that does not parse (or is not a hash) starts over: it only tells how busy a
-- window is, and the next window replaces it anyway.
local time = redis.call('TIME')
local seconds = tonumber(ARGV[1])
local window = math.floor(tonumber(time[1]) / seconds)
local add = tonumber(ARGV[2])
local corrupt = 0
local stored = redis.pcall('HMGET', KEYS[1], 'window', 'count')
if stored.err then
  corrupt = 1
  stored = {false, false}
  if add > 0 then
    redis.call('DEL', KEYS[1])
  end
elseif stored[1] or stored[2] then
  if not (stored[1] and string.match(stored[1], '^%d+$')
      and stored[2] and string.match(stored[2], '^%d+$')) then
    corrupt = 1
    stored = {false, false}
  end
end
local count = 0
if tonumber(stored[1]) == window then
  count = tonumber(stored[2])
end
if add == 0 then
  return {count, corrupt}
end
count = count + add
redis.call('HSET', KEYS[1], 'window', window, 'count', count)
-- Kept a window longer than it counts, then dropped; a missing counter reads as 0.
redis.call('EXPIRE', KEYS[1], 2 * seconds)
return {count, corrupt}
