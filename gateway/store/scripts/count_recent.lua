-- Count events in fixed windows of the server's clock.
-- KEYS[1] the counter: a hash of the window it counts ('window') and its count ('count').
-- ARGV[1] window length in seconds; ARGV[2] how many events to add (0 only reads).
-- Returns the current window's count, after adding.
local time = redis.call('TIME')
local seconds = tonumber(ARGV[1])
local window = math.floor(tonumber(time[1]) / seconds)
local add = tonumber(ARGV[2])
local stored = redis.call('HMGET', KEYS[1], 'window', 'count')
local count = 0
if tonumber(stored[1]) == window then
  count = tonumber(stored[2])
end
if add == 0 then
  return count
end
count = count + add
redis.call('HSET', KEYS[1], 'window', window, 'count', count)
-- Kept a window longer than it counts, then dropped; a missing counter reads as 0.
redis.call('EXPIRE', KEYS[1], 2 * seconds)
return count
