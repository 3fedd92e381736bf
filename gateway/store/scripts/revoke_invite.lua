-- Mark an invite revoked if it still exists; its name's host shape leaves the room's host-name
-- index at once, and its record (the invitee's name) and link index are kept a grace at most
-- from now, not to the invite's expiry: long enough to tell its holder it was revoked.
-- KEYS[1] the invite's hash. ARGV[1] the invite's id, ARGV[2] the host-name index's prefix (+
-- room), ARGV[3] the link index's prefix (+ token hash), ARGV[4] the grace, in ms.
-- Returns 1, or 0 when there is no such invite.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'revoked', '1')
local grace = tonumber(ARGV[4])
local function shorten(key)
  local left = redis.call('PTTL', key)
  if left == -1 or left > grace then
    redis.call('PEXPIRE', key, grace)
  end
end
shorten(KEYS[1])
local parsed, record = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'record') or '')
if parsed and type(record) == 'table' then
  if type(record.room) == 'string' then
    -- The id alone leaves the index: '#' counts it on, as the room's invite set still holds it.
    redis.call('HDEL', ARGV[2] .. record.room, ARGV[1])
  end
  if type(record.token_hash) == 'string' and redis.call('GET', ARGV[3] .. record.token_hash)
      == ARGV[1] then
    shorten(ARGV[3] .. record.token_hash)
  end
end
return 1
