-- Claim a name in a room for an admission (name_claims.lua, loaded before this).
-- KEYS[1] the room's claims. ARGV[1] holder (admission id), ARGV[2] expiry (ms since the epoch),
-- ARGV[3] admission key prefix, ARGV[4] host shape, ARGV[5] '1' for a host's claim, ARGV[6] '1'
-- when the first shape yields to a host's, ARGV[7..] the shapes, best first.
-- Returns {the (0-based) index of the shape claimed, or -1 when every one is held; how many
-- fields read did not parse}.
local shapes = {}
for i = 7, #ARGV do
  shapes[#shapes + 1] = ARGV[i]
end
local index, corrupt = claim_name(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
                                  shapes)
return {index, corrupt}
