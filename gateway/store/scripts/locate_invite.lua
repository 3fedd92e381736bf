-- Read what a join link leads to, in one step: the invite its token names and the room its
-- meeting is in now, following moves. Reads only; the caller parses and judges each record.
-- KEYS[1] the token's index entry, KEYS[2] the rooms hash. ARGV[1] the invite key prefix,
-- ARGV[2] how many moves to follow at most.
-- Returns {} when the token names no invite, else {invite id, its record, uses, revoked}, then a
-- room name and its record (nil when there is no such room) for the invite's room and each room
-- it moved to, as far as each record tells (one that does not parse ends the list).
-- The invite key is derived here, so this script needs a single Redis node (or Sentinel), not
-- Cluster.
local id = redis.call('GET', KEYS[1])
if not id then
  return {}
end
local fields = redis.call('HMGET', ARGV[1] .. id, 'record', 'uses', 'revoked')
local found = {id, fields[1], fields[2], fields[3]}
if not fields[1] then
  return found
end
local parsed, invite = pcall(cjson.decode, fields[1])
if not parsed or type(invite) ~= 'table' or type(invite.room) ~= 'string' then
  return found
end
local name = invite.room
for _ = 0, tonumber(ARGV[2]) do
  local text = redis.call('HGET', KEYS[2], name)
  found[#found + 1] = name
  found[#found + 1] = text
  if not text then
    break
  end
  local readable, room = pcall(cjson.decode, text)
  if not readable or type(room) ~= 'table' or type(room.moved_to) ~= 'string' then
    break
  end
  name = room.moved_to
end
return found
