-- A part, not a script of its own: count_recent(key, seconds_text, add_text), for the scripts
-- that count events in fixed windows of the server's clock.
-- key the counter: a hash of the window it counts ('window') and its count ('count'); seconds_text
-- the window length; add_text how many events to add (0 only reads).
-- Returns {the current window's count after adding, 1 if the stored counter did not parse}.
-- A counter that does not parse (or is not a hash) starts over: it only tells how busy a
-- window is, and the next window replaces it anyway.
local function count_recent(key, seconds_text, add_text)
  local time = redis.call('TIME')
  local seconds = tonumber(seconds_text)
  local window = math.floor(tonumber(time[1]) / seconds)
  local add = tonumber(add_text)
  local corrupt = 0
  local stored = redis.pcall('HMGET', key, 'window', 'count')
  if stored.err then
    corrupt = 1
    stored = {false, false}
    if add > 0 then
      redis.call('DEL', key)
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
  redis.call('HSET', key, 'window', window, 'count', count)
  -- Kept a window longer than it counts, then dropped; a missing counter reads as 0.
  redis.call('EXPIRE', key, 2 * seconds)
  return {count, corrupt}
end
