-- A part, not a script of its own: find_link(...) and link_unknown(...), for the scripts that
-- join through a link (recent.lua and gcra.lua loaded before this).
-- find_link(index_key, rooms_key, invite_prefix, max_moves, token_hash): where a join link
-- leads, as locate_invite.lua finds it. Returns nil when it leads nowhere (no invite has the
-- token hash, which is not the invite's, or its room is gone); else the list join_link.lua
-- answers 'found' with, the invite id, the invite's record as parsed, and the record of the
-- room its meeting is in now as stored and as parsed (false and nil while a record on the way
-- does not parse; nil, false and nil when the invite's does not).
local function find_link(index_key, rooms_key, invite_prefix, max_moves, token_hash)
  local id = redis.call('GET', index_key)
  if not id then
    return nil
  end
  local fields = redis.call('HMGET', invite_prefix .. id, 'record', 'uses', 'revoked')
  if not fields[1] then
    return nil
  end
  local found = {'found', id, fields[1], fields[2], fields[3]}
  local parsed, invite = pcall(cjson.decode, fields[1])
  if not parsed or type(invite) ~= 'table' or type(invite.room) ~= 'string'
      or type(invite.token_hash) ~= 'string' then
    -- A record that does not parse: the caller reads it too, and counts it.
    return found, id, nil, false, nil
  end
  if invite.token_hash ~= token_hash then
    return nil
  end
  local final = false
  local room = nil
  local name = invite.room
  for _ = 0, tonumber(max_moves) do
    local text = redis.call('HGET', rooms_key, name)
    found[#found + 1] = name
    found[#found + 1] = text
    if not text then
      return nil
    end
    local readable, record = pcall(cjson.decode, text)
    if not readable or type(record) ~= 'table' then
      final = false
      room = nil
      break
    end
    final = text
    room = record
    if type(record.moved_to) ~= 'string' then
      break
    end
    name = record.moved_to
  end
  return found, id, invite, final, room
end

-- link_unknown(counter_key, window, keys, args): a link that leads nowhere: charge the limits
-- keys (as charge_limits, with args) and, when they allowed it and window is not '0', count it
-- in the counter. Returns {'unknown', 1 if the counter did not parse, then what charge_limits
-- returns}.
local function link_unknown(counter_key, window, keys, args)
  local charged = charge_limits(keys, args)
  local counter_corrupt = 0
  if charged[1] == 1 and window ~= '0' then
    counter_corrupt = count_recent(counter_key, window, 1)[2]
  end
  table.insert(charged, 1, counter_corrupt)
  table.insert(charged, 1, 'unknown')
  return charged
end
