-- An index whose members expire one by one: a sorted set scored by each member's expiry, in
-- microseconds of the server's clock (fine enough that members added one after the other with
-- the same TTL keep that order). Lapsed members are dropped before every operation.
-- KEYS[1] the index. ARGV[1] the operation:
--   'add', ARGV[2] member, ARGV[3] TTL in microseconds: adds or renews it; returns 1. The key
--     then lasts until its last member lapses, so an index nobody reads again goes away.
--   'remove', ARGV[2] member: returns 1, or 0 when it was not a live member.
--   'members': the live members, soonest to expire first (ties in the order of their names).
--   'size': how many live members there are.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local operation = ARGV[1]
if operation == 'add' then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[2])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.ceil(tonumber(last[2]) / 1000)))
  return 1
elseif operation == 'remove' then
  return redis.call('ZREM', KEYS[1], ARGV[2])
elseif operation == 'members' then
  return redis.call('ZRANGE', KEYS[1], 0, -1)
elseif operation == 'size' then
  return redis.call('ZCARD', KEYS[1])
end
return redis.error_reply('unknown index operation ' .. tostring(operation))
