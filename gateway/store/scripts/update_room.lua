-- Replace a room's record only if the room exists, so a racing deletion is not undone.
-- KEYS[1] rooms hash; ARGV[1] room name, ARGV[2] record JSON.
-- Returns 1, or 0 when the room does not exist.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
