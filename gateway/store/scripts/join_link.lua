-- A join link in one atomic step (link_lookup.lua, invite_join.lua and the parts they call loaded
-- before this): find where the link leads, as locate_invite.lua does; if nowhere, charge the
-- limits a link that leads nowhere is charged against and, when they allowed it, count it as a
-- rejection; if to the invite and room record the caller expects, join through it (join_invite).
-- KEYS[1] the token's index entry, KEYS[2] the rooms hash, KEYS[3] the rejections' counter (as
-- count_recent's), then the states of the u limits for a link that leads nowhere, then
-- join_invite's keys (none: only look).
-- ARGV[1] the invite key prefix, ARGV[2] how many moves to follow at most, ARGV[3] the token hash,
-- ARGV[4] u, ARGV[5] the expected invite id, ARGV[6] the SHA-1 of the expected room's record,
-- ARGV[7] the counter's window in seconds ('0': count nothing), then each of the u limits'
-- emission interval (µs) and burst, then join_invite's arguments.
-- Returns {'unknown', 1 if the counter did not parse, allowed (1 or 0), retry_after_us, corrupt,
-- wait_1_us, ...} (as charge_limits) when the link leads nowhere; {'found', invite id, its
-- record, uses, revoked, then a room name and its record for the invite's room and each room it
-- moved to} (as locate_invite.lua) when the caller expected something else or only looks; else
-- what join_invite returns.
-- The invite and room keys are derived here, so this script needs a single Redis node (or
-- Sentinel), not Cluster.
local unknown = tonumber(ARGV[4])

local function leads_nowhere()
  local keys = {}
  local args = {}
  for i = 1, unknown do
    keys[i] = KEYS[3 + i]
    args[2 * i - 1] = ARGV[6 + 2 * i]
    args[2 * i] = ARGV[7 + 2 * i]
  end
  return link_unknown(KEYS[3], ARGV[7], keys, args)
end

local found, id, _, final = find_link(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if not found then
  return leads_nowhere()
end

local first_join_key = 4 + unknown
if #KEYS < first_join_key or not final or id ~= ARGV[5] or redis.sha1hex(final) ~= ARGV[6] then
  return found
end
local join_keys = {}
for i = first_join_key, #KEYS do
  join_keys[#join_keys + 1] = KEYS[i]
end
local join_args = {}
for i = 8 + 2 * unknown, #ARGV do
  join_args[#join_args + 1] = ARGV[i]
end
return join_invite(join_keys, join_args)
