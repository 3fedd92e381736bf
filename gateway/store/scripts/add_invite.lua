-- Store an invite only if its room exists, so a racing room deletion cannot leave it orphaned.
-- KEYS[1] rooms hash, KEYS[2] invite hash, KEYS[3] token index, KEYS[4] the room's invite set,
-- KEYS[5] the room's host-name index.
-- ARGV[1] room name, ARGV[2] invite id, ARGV[3] record JSON, ARGV[4] uses, ARGV[5] revoked (0/1),
-- ARGV[6] its join plan as JSON ('' for none), ARGV[7] its name's host shape if it is a host's
-- invite with a plan ('' else), ARGV[8] how long its record and token index are kept, in ms
-- (its name goes with them: a while past its expiry, docs/privacy.md).
-- The host-name index (join_plain.lua reads it) holds '#': how many of the room's invites were
-- stored with a plan, each host invite's id with its name's host shape, and '!' once an invite
-- was stored without a plan (the index can no longer tell every host's name). The index and
-- the room's invite set are kept as long as the longest kept of the room's invites, then go
-- together (so '#' and the set's size still agree): no host's name shape outlives its invite
-- by more than the invite's own keeping.
-- Returns 1, or 0 when the room does not exist.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
-- Host invites whose record has expired leave the index (their names' shapes with them) and
-- the room's invite set, so that both still count the same invites.
local indexed = redis.call('HGETALL', KEYS[5])
local prefix = string.sub(KEYS[2], 1, #KEYS[2] - #ARGV[2])
for i = 1, #indexed, 2 do
  local id = indexed[i]
  if id ~= '#' and id ~= '!' and id ~= ARGV[2] and redis.call('EXISTS', prefix .. id) == 0 then
    redis.call('HDEL', KEYS[5], id)
    if redis.call('SREM', KEYS[4], id) == 1 then
      redis.call('HINCRBY', KEYS[5], '#', -1)
    end
  end
end
-- Both kept as long as the longest kept invite of the room, this one included. A set kept with
-- no expiry (by an earlier release) is given the longest of its invites' records'.
local keep = tonumber(ARGV[8])
for _, key in ipairs({KEYS[4], KEYS[5]}) do
  local left = redis.call('PTTL', key)
  if left == -1 then
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
      local kept = redis.call('PTTL', prefix .. id)
      if kept == -1 then
        keep = nil
        break
      end
      keep = math.max(keep, kept)
    end
    break
  end
  keep = math.max(keep, left)
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'record', ARGV[3], 'uses', ARGV[4], 'revoked', ARGV[5])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
local added = redis.call('SADD', KEYS[4], ARGV[2])
local function kept()
  if keep then
    redis.call('PEXPIRE', KEYS[4], keep)
    redis.call('PEXPIRE', KEYS[5], keep)
  end
  return 1
end
if ARGV[6] == '' then
  redis.call('HSET', KEYS[5], '!', '1')
  return kept()
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
return kept()
