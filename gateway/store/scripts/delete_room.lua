-- Delete a room with its invites and revoke its admissions, all at once.
-- KEYS[1] rooms hash, KEYS[2] the room's invite set, KEYS[3] the room's admission sorted set,
-- KEYS[4] the room's host-name index (add_invite.lua).
-- ARGV[1] room name, ARGV[2] now (seconds), ARGV[3] invite key prefix, ARGV[4] token index
-- prefix, ARGV[5] admission key prefix. Returns 1, or 0 when the room did not exist.
-- The invite and admission keys are derived here, so this script needs a single Redis node
-- (or Sentinel), not Cluster.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
for _, invite_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local invite_key = ARGV[3] .. invite_id
  local record = redis.call('HGET', invite_key, 'record')
  if record then
    -- An invite that does not parse goes too; its token's index entry then leads nowhere.
    local parsed, invite = pcall(cjson.decode, record)
    if parsed and type(invite) == 'table' and type(invite.token_hash) == 'string' then
      redis.call('DEL', ARGV[4] .. invite.token_hash)
    end
    redis.call('DEL', invite_key)
  end
end
redis.call('DEL', KEYS[2], KEYS[4])
-- Revoked admissions keep their TTL, so a browser holding one is told it was removed until the
-- admission would have expired anyway.
for _, admission_id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[2], '+inf')) do
  local admission_key = ARGV[5] .. admission_id
  if redis.call('EXISTS', admission_key) == 1 then
    redis.call('HSET', admission_key, 'revoked', '1')
  end
end
redis.call('DEL', KEYS[3])
return 1
