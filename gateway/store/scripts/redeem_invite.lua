-- Count one use of an invite, or say why it cannot be used, in one atomic step.
-- KEYS[1] the invite hash; ARGV[1] the token hash the caller looked it up by; ARGV[2] now (seconds).
-- Returns {'ok', record, uses} or {code} with code one of unknown, revoked, expired, used_up,
-- or corrupt for a stored invite that does not parse (refused like an unknown one).
local fields = redis.call('HMGET', KEYS[1], 'record', 'uses', 'revoked')
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
-- The token index was read before this script ran; the invite may have been replaced since.
if invite.token_hash ~= ARGV[1] then
  return {'unknown'}
end
if fields[3] == '1' then
  return {'revoked'}
end
if tonumber(ARGV[2]) >= invite.expires_at then
  return {'expired'}
end
if tonumber(fields[2]) >= invite.max_uses then
  return {'used_up'}
end
local uses = redis.call('HINCRBY', KEYS[1], 'uses', 1)
return {'ok', fields[1], uses}
