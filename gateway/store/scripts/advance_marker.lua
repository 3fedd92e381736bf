-- Advance the store's memory marker (gateway/store/continuity.py): `<epoch>:<generation>:<state>`.
-- KEYS[1] the marker; ARGV[1] the marker to write when there is none.
-- Returns {marker as stored now, 1 if it was written from ARGV[1] else 0}. A marker of the exact
-- shape continuity.parse_marker reads has its generation raised by one; any other is left as it
-- is (the replica reading it judges it).
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1])
  return {ARGV[1], 1}
end
local epoch, generation, state = string.match(current, '^([0-9a-f]+):(%d+):(%l+)$')
if epoch and #epoch == 32 and (state == 'ok' or state == 'lost')
    and #generation <= 15 and (generation == '0' or string.sub(generation, 1, 1) ~= '0') then
  current = epoch .. ':' .. string.format('%d', tonumber(generation) + 1) .. ':' .. state
  redis.call('SET', KEYS[1], current)
end
return {current, 0}
