-- A part, not a script of its own: check_invite(...), for the scripts that use an invite.
-- Whether an invite can be used once more, and why not, without counting the use.
-- invite_key the invite hash; token_hash the token hash the caller looked it up by; now (seconds,
-- as text). Returns {'ok', record, uses} or {code} with code one of unknown, revoked, expired,
-- used_up, or corrupt for a stored invite that does not parse (refused like an unknown one).
local function check_invite(invite_key, token_hash, now)
  local fields = redis.call('HMGET', invite_key, 'record', 'uses', 'revoked')
  if not fields[1] then
    return {'unknown'}
  end
  local parsed, invite = pcall(cjson.decode, fields[1])
  if not parsed or type(invite) ~= 'table' or type(invite.token_hash) ~= 'string'
      or type(invite.expires_at) ~= 'number' or type(invite.max_uses) ~= 'number'
      or not (fields[2] and string.match(fields[2], '^%d+$'))
      or (fields[3] ~= '0' and fields[3] ~= '1') then
    return {'corrupt'}
  end
  -- As records.parse_invite reads them: an expiry that is a finite number (cjson reads NaN and
  -- Infinity), a whole count of uses allowed.
  local expires_at, max_uses = invite.expires_at, invite.max_uses
  if expires_at ~= expires_at or expires_at == math.huge or expires_at == -math.huge
      or max_uses < 0 or max_uses ~= math.floor(max_uses) or max_uses == math.huge then
    return {'corrupt'}
  end
  -- The token index was read before this script ran; the invite may have been replaced since.
  if invite.token_hash ~= token_hash then
    return {'unknown'}
  end
  if fields[3] == '1' then
    return {'revoked'}
  end
  if tonumber(now) >= invite.expires_at then
    return {'expired'}
  end
  if tonumber(fields[2]) >= invite.max_uses then
    return {'used_up'}
  end
  return {'ok', fields[1], tonumber(fields[2])}
end
