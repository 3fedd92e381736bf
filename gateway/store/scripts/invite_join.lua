-- A part, not a script of its own: join_invite(keys, args), for the scripts that join through an
-- invite (gcra.lua, invite_check.lua, name_claims.lua and room_admissions.lua loaded before this).
-- A join in one atomic step: charge every limit, check the ban, check the invite, claim the first
-- free name, then count the invite's use and store the admission. A refusal at any step leaves
-- every later one undone; the limits stay charged once they allowed the attempt.
-- keys[1] the invite hash, keys[2] the ban, keys[3] the room's name claims, keys[4] the
-- admission, keys[5] the room's admissions (sorted set), keys[6..] the limits' states.
-- args[1] the token hash the invite was looked up by, args[2] now (seconds), args[3] the
-- admission id (the claim's holder), args[4] its expiry (ms since the epoch), args[5] its expiry
-- (seconds: the sorted set's score), args[6] the admission key prefix, args[7] the host shape,
-- args[8] '1' for a host's claim, args[9] '1' when the first shape yields to a host's,
-- args[10] and args[11] the admission's record before and after its name, then each limit's
-- emission interval (µs) and burst, then each name's shape and the name as JSON text, best first.
-- Returns {'limited', retry_after_us, corrupt, wait_1_us, ...}, {'banned', corrupt},
-- {'invite', code} (check_invite's refusal), {'names', corrupt} when every shape is held, or
-- {'ok', index of the name (0-based), the invite's uses after this one, corrupt}.
local function join_invite(keys, args)
  local limits = #keys - 5
  local limit_keys = {}
  local limit_args = {}
  for i = 1, limits do
    limit_keys[i] = keys[5 + i]
    limit_args[2 * i - 1] = args[10 + 2 * i]
    limit_args[2 * i] = args[11 + 2 * i]
  end
  local charged = charge_limits(limit_keys, limit_args)
  if charged[1] == 0 then
    charged[1] = 'limited'
    return charged
  end

  -- A ban: '' for ever, or until a time written as Python writes a float. Anything else does not
  -- parse, and bans: a refusal, never a way in.
  local ban = redis.call('GET', keys[2])
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
    if tonumber(args[2]) < ends then
      return {'banned', 0}
    end
  end

  local invite = check_invite(keys[1], args[1], args[2])
  if invite[1] ~= 'ok' then
    return {'invite', invite[1]}
  end

  local shapes = {}
  local names = {}
  for i = 12 + 2 * limits, #args, 2 do
    shapes[#shapes + 1] = args[i]
    names[#names + 1] = args[i + 1]
  end
  local index, corrupt = claim_name(keys[3], args[3], args[4], args[6], args[7], args[8], args[9],
                                    shapes)
  if index < 0 then
    return {'names', corrupt}
  end

  local uses = redis.call('HINCRBY', keys[1], 'uses', 1)
  -- As RedisStore.add_admission stores one.
  redis.call('DEL', keys[4])
  redis.call('HSET', keys[4], 'record', args[10] .. names[index + 1] .. args[11], 'revoked', '0')
  redis.call('PEXPIREAT', keys[4], args[4])
  index_admission(keys[5], args[3], args[5], args[2])
  return {'ok', index, uses, corrupt}
end
