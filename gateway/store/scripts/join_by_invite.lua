-- A join through an invite in one atomic step (gcra.lua, invite_check.lua and name_claims.lua
-- loaded before this): charge every limit, check the ban, check the invite, claim the first
-- free name, then count the invite's use and store the admission. A refusal at any step leaves
-- every later one undone; the limits stay charged once they allowed the attempt.
-- KEYS[1] the invite hash, KEYS[2] the ban, KEYS[3] the room's name claims, KEYS[4] the
-- admission, KEYS[5] the room's admissions (sorted set), KEYS[6..] the limits' states.
-- ARGV[1] the token hash the invite was looked up by, ARGV[2] now (seconds), ARGV[3] the
-- admission id (the claim's holder), ARGV[4] its expiry (ms since the epoch), ARGV[5] its expiry
-- (seconds: the sorted set's score), ARGV[6] the admission key prefix, ARGV[7] the host shape,
-- ARGV[8] '1' for a host's claim, ARGV[9] '1' when the first shape yields to a host's,
-- ARGV[10] and ARGV[11] the admission's record before and after its name, then each limit's
-- emission interval (µs) and burst, then each name's shape and the name as JSON text, best first.
-- Returns {'limited', retry_after_us, corrupt, wait_1_us, ...}, {'banned', corrupt},
-- {'invite', code} (check_invite's refusal), {'names', corrupt} when every shape is held, or
-- {'ok', index of the name (0-based), the invite's uses after this one, corrupt}.
local limits = #KEYS - 5
local limit_keys = {}
local limit_args = {}
for i = 1, limits do
  limit_keys[i] = KEYS[5 + i]
  limit_args[2 * i - 1] = ARGV[10 + 2 * i]
  limit_args[2 * i] = ARGV[11 + 2 * i]
end
local charged = charge_limits(limit_keys, limit_args)
if charged[1] == 0 then
  charged[1] = 'limited'
  return charged
end

-- A ban: '' for ever, or until a time written as Python writes a float. Anything else does not
-- parse, and bans: a refusal, never a way in.
local ban = redis.call('GET', KEYS[2])
if ban then
  if ban == '' then
    return {'banned', 0}
  end
  local ends = nil
  if string.match(ban, '^%-?%d+%.?%d*$') or string.match(ban, '^%-?%d+%.?%d*[eE][%-+]?%d+$') then
    ends = tonumber(ban)
  end
  if ends == nil or ends ~= ends or ends == math.huge or ends == -math.huge then
    return {'banned', 1}
  end
  if tonumber(ARGV[2]) < ends then
    return {'banned', 0}
  end
end

local invite = check_invite(KEYS[1], ARGV[1], ARGV[2])
if invite[1] ~= 'ok' then
  return {'invite', invite[1]}
end

local shapes = {}
local names = {}
for i = 12 + 2 * limits, #ARGV, 2 do
  shapes[#shapes + 1] = ARGV[i]
  names[#names + 1] = ARGV[i + 1]
end
local index, corrupt = claim_name(KEYS[3], ARGV[3], ARGV[4], ARGV[6], ARGV[7], ARGV[8], ARGV[9],
                                  shapes)
if index < 0 then
  return {'names', corrupt}
end

local uses = redis.call('HINCRBY', KEYS[1], 'uses', 1)
-- As RedisStore.add_admission stores one.
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], 'record', ARGV[10] .. names[index + 1] .. ARGV[11], 'revoked', '0')
redis.call('PEXPIREAT', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[2])
return {'ok', index, uses, corrupt}
