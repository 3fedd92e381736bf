-- A join link nothing was known of, in one atomic step (link_lookup.lua, invite_join.lua and the
-- parts they call loaded before this): find where the link leads (find_link); if nowhere, as
-- join_link.lua; if its invite has a join plan and the room needs no decision of the gate's,
-- join through it (join_invite) with the plan's identity and names and the limits the gate
-- names; else answer what was found, charging nothing (Store.join_plainly, PlainJoin).
-- KEYS[1] the token's index entry, KEYS[2] the rooms hash, KEYS[3] the rejections' counter (as
-- join_link's), then the states of the u limits for a link that leads nowhere, then the key of
-- the admission to store.
-- ARGV[1] the invite key prefix, ARGV[2] how many moves to follow at most, ARGV[3] the token hash,
-- ARGV[4] u, ARGV[5] the counter's window in seconds ('0': count nothing), then each of the u
-- limits' emission interval (µs) and burst, then the join as JSON: now (seconds, as text), the
-- admission's id, its expiry in ms and in seconds (as text), its record cut at its room,
-- identity, name, role and via (six texts), the address and network limits ([key, interval,
-- burst]), the gate's, room's, identity's and invite's ([interval, burst]), the rooms whose
-- limits differ, the pressure rule ([window, threshold], or false for none), the fingerprint
-- of the gate's pseudonym key (a plan made under another is left to the gate), the kinds of a room
-- record's, a policy's and an invite record's fields (records.ROOM_FIELD_KINDS,
-- POLICY_FIELD_KINDS, INVITE_FIELD_KINDS), and the key prefixes.
-- Returns join_link's {'unknown', ...} or {'found', ...}; else {'joined', room, its language,
-- invite id, identity, role, then what join_invite returns, then, after 'ok', the name's JSON
-- text}.
-- The invite, room and limit keys are derived here, so this script needs a single Redis node (or
-- Sentinel), not Cluster.
local unknown = tonumber(ARGV[4])
local join = cjson.decode(ARGV[6 + 2 * unknown])
local prefix = join.prefixes

local found, id, invite, final, room = find_link(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if not found then
  local keys = {}
  local args = {}
  for i = 1, unknown do
    keys[i] = KEYS[3 + i]
    args[2 * i - 1] = ARGV[4 + 2 * i]
    args[2 * i] = ARGV[5 + 2 * i]
  end
  return link_unknown(KEYS[3], ARGV[5], keys, args)
end
if not final then
  return found
end

-- Whether `text`, a record's JSON as the gate writes it (no spaces), holds `field` with the
-- value written `value` at its own level (a quote right after a comma or a brace opens a key or
-- a value: one inside a text is escaped), and nowhere with an object for its value.
local function written(text, field, value)
  local key = '"' .. field .. '":'
  if string.find(text, key .. '{', 1, true) then
    return false
  end
  return string.find(text, ',' .. key .. value, 1, true) ~= nil
      or string.find(text, '{' .. key .. value, 1, true) ~= nil
end

-- Whether a decoded record has only the fields `kinds` names, each of its kind, and every one
-- it requires: what records.parse_room and parse_invite ask of one. cjson decodes [] and {}
-- alike, so an empty list must be written as one in `text`, the record's JSON, and an object
-- must not be empty (the gate writes every field of a room's policy); a count is a whole
-- number (cjson reads 1.0 as 1, where the parser refuses it: that record is judged here).
local function fits(record, kinds, text)
  for field, value in pairs(record) do
    local kind = kinds[field]
    if type(field) ~= 'string' or kind == nil then
      return false
    end
    local letter = string.sub(kind, 1, 1)
    local t = type(value)
    if letter == 's' then
      if t ~= 'string' then return false end
    elseif letter == 'n' then
      if t ~= 'number' or value ~= value or value == math.huge or value == -math.huge then
        return false
      end
    elseif letter == 'm' then
      if value ~= cjson.null and (t ~= 'number' or value ~= value or value == math.huge
          or value == -math.huge) then
        return false
      end
    elseif letter == 'b' then
      if t ~= 'boolean' then return false end
    elseif letter == 'z' then
      if t ~= 'string' and value ~= cjson.null then return false end
    elseif letter == 'c' then
      if t ~= 'number' or value < 0 or value ~= math.floor(value) or value == math.huge then
        return false
      end
    elseif letter == 'k' then
      if value ~= cjson.null and (t ~= 'number' or value < 0 or value ~= math.floor(value)
          or value == math.huge) then
        return false
      end
    elseif letter == 'o' then
      if t ~= 'table' or next(value) == nil then return false end
    elseif letter == 'l' then
      if t ~= 'table' then return false end
      if next(value) == nil and not written(text, field, '[]') then return false end
      local count = 0
      for _, item in pairs(value) do
        count = count + 1
        if type(item) ~= 'string' then return false end
      end
      if count ~= #value then return false end
    else
      return false
    end
  end
  for field, kind in pairs(kinds) do
    if string.sub(kind, 2, 2) == '!' and record[field] == nil then
      return false
    end
  end
  return true
end

local plan_text = redis.call('HGET', ARGV[1] .. id, 'plan')
if not plan_text then
  return found
end
local readable, plan = pcall(cjson.decode, plan_text)
if not readable or type(plan) ~= 'table' or type(plan.identity) ~= 'string'
    or type(plan.host_shape) ~= 'string' or type(plan.claims) ~= 'table' or #plan.claims == 0
    or type(plan.key) ~= 'string' or plan.key ~= join.key then
  return found
end
for _, claim in ipairs(plan.claims) do
  if type(claim) ~= 'table' or type(claim[1]) ~= 'string' or type(claim[2]) ~= 'string' then
    return found
  end
end
-- A room whose record is not one the gate reads, or still says it moved (more moves than
-- followed), is left to the gate: it parses, counts and refuses what is corrupt.
if not fits(room, join.room_fields, final) or not fits(room.policy, join.policy_fields, final)
    or not fits(invite, join.invite_fields, found[3])
    or (invite.role ~= 'host' and invite.role ~= 'attendee')
    or (room.moved_to ~= nil and room.moved_to ~= cjson.null) then
  return found
end
local name = room.name
if found[#found - 1] ~= name then
  return found
end
for _, varied in ipairs(join.varied) do
  if varied == name then
    return found
  end
end
if join.pressure then
  if room.pow_required == true then
    return found
  end
  local window = tostring(join.pressure[1])
  local counted = count_recent(prefix.recent .. window .. ':reject:room:' .. name, window, 0)
  if counted[2] ~= 0 or counted[1] >= tonumber(join.pressure[2]) then
    return found
  end
end
local host = invite.role == 'host'
if not host then
  if room.policy.invite == false or room.locked == true or room.approval_required == true then
    return found
  end
  -- The names kept for the room's hosts: the shapes of its host invites' names, indexed when
  -- each was stored (add_invite.lua). An index that may miss one (an invite stored without a
  -- plan, or before the index was kept) leaves the join to the gate.
  local index = redis.call('HGETALL', prefix.room_hosts .. name)
  local indexed = 0
  local candidates = {}
  for i = 1, #index, 2 do
    if index[i] == '!' then
      return found
    elseif index[i] == '#' then
      indexed = tonumber(index[i + 1])
    elseif index[i + 1] == plan.host_shape then
      candidates[#candidates + 1] = index[i]
    end
  end
  if indexed ~= redis.call('SCARD', prefix.room_invites .. name) then
    return found
  end
  for _, host_id in ipairs(candidates) do
    local fields = redis.call('HMGET', ARGV[1] .. host_id, 'record', 'revoked')
    if not fields[1] then
      -- Its invite's record has expired: its name's shape leaves the index (and its id the
      -- room's invite set, so both count the same invites, as add_invite.lua does).
      redis.call('HDEL', prefix.room_hosts .. name, host_id)
      if redis.call('SREM', prefix.room_invites .. name, host_id) == 1 then
        redis.call('HINCRBY', prefix.room_hosts .. name, '#', -1)
      end
    else
      local parsed, held = pcall(cjson.decode, fields[1])
      if not parsed or type(held) ~= 'table' or not fits(held, join.invite_fields, fields[1])
          or (held.role ~= 'host' and held.role ~= 'attendee') then
        return found
      end
      if held.role == 'host' and fields[2] ~= '1' and tonumber(join.now) < held.expires_at then
        return found
      end
    end
  end
end

local identity = plan.identity
local scope = name
if type(room.lineage) == 'string' and room.lineage ~= '' then
  scope = room.lineage
end
local record = join.record
local before = record[1] .. cjson.encode(name) .. record[2] .. cjson.encode(identity) .. record[3]
local after = record[4] .. cjson.encode(invite.role) .. record[5] .. cjson.encode('invite:' .. id)
    .. record[6]
local keys = {
  ARGV[1] .. id,
  prefix.ban .. scope .. ':' .. identity,
  prefix.names .. name,
  KEYS[4 + unknown],
  prefix.room_admissions .. name,
}
local args = {
  ARGV[3], join.now, join.admission, join.expires_ms, join.expires_s, prefix.admission,
  plan.host_shape, host and '1' or '0', host and '0' or '1', before, after,
}
local function limit(key, interval, burst)
  keys[#keys + 1] = key
  args[#args + 1] = interval
  args[#args + 1] = burst
end
for _, charge in ipairs(join.address) do
  limit(charge[1], charge[2], charge[3])
end
local completed = {'gate', 'room:' .. name, 'id:' .. identity, 'invite:' .. id}
for i, key in ipairs(completed) do
  limit(prefix.rate .. key, join.rates[i][1], join.rates[i][2])
end
for _, claim in ipairs(plan.claims) do
  args[#args + 1] = claim[1]
  args[#args + 1] = claim[2]
end
local answer = join_invite(keys, args)
local language = ''
if type(room.language) == 'string' then
  language = room.language
end
local joined = {'joined', name, language, id, identity, invite.role}
for _, value in ipairs(answer) do
  joined[#joined + 1] = value
end
if answer[1] == 'ok' then
  joined[#joined + 1] = plan.claims[answer[2] + 1][2]
end
return joined
