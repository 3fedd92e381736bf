-- Store an invite only if its room exists, so a racing room deletion cannot leave it orphaned.
-- KEYS[1] rooms hash, KEYS[2] invite hash, KEYS[3] token index, KEYS[4] the room's invite set,
-- KEYS[5] the room's host-name index.
-- ARGV[1] room name, ARGV[2] invite id, ARGV[3] record JSON, ARGV[4] uses, ARGV[5] revoked (0/1),
-- ARGV[6] its join plan as JSON ('' for none), ARGV[7] its name's host shape if it is a host's
-- invite with a plan ('' else).
-- The host-name index (join_plain.lua reads it) holds '#': how many of the room's invites were
-- stored with a plan, each host invite's id with its name's host shape, and '!' once an invite
-- was stored without a plan (the index can no longer tell every host's name).
-- Returns 1, or 0 when the room does not exist.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'record', ARGV[3], 'uses', ARGV[4], 'revoked', ARGV[5])
redis.call('SET', KEYS[3], ARGV[2])
local added = redis.call('SADD', KEYS[4], ARGV[2])
if ARGV[6] == '' then
  redis.call('HSET', KEYS[5], '!', '1')
  return 1
end
redis.call('HSET', KEYS[2], 'plan', ARGV[6])
if added == 1 then
  redis.call('HINCRBY', KEYS[5], '#', 1)
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[2], ARGV[7])
else
  redis.call('HDEL', KEYS[5], ARGV[2])
end
return 1
