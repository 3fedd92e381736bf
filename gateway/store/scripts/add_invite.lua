-- Store an invite only if its room exists, so a racing room deletion cannot leave it orphaned.
-- KEYS[1] rooms hash, KEYS[2] invite hash, KEYS[3] token index, KEYS[4] the room's invite set.
-- ARGV[1] room name, ARGV[2] invite id, ARGV[3] record JSON, ARGV[4] uses, ARGV[5] revoked (0/1).
-- Returns 1, or 0 when the room does not exist.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'record', ARGV[3], 'uses', ARGV[4], 'revoked', ARGV[5])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
return 1
