-- Carry a live admission over to another room: swap its record, move its id between the rooms'
-- sorted sets (room_admissions.lua loaded before this: each index then lasts as long as its
-- latest entry). HSET leaves the key's TTL, so it still expires when it would have.
-- KEYS[1] the admission hash, KEYS[2] the old room's sorted set, KEYS[3] the new room's.
-- ARGV[1] the record as the caller read it, ARGV[2] the record to store, ARGV[3] admission id,
-- ARGV[4] expires_at (the sorted-set score), ARGV[5] now (seconds).
-- Returns 'moved', 'gone' (expired or never existed), 'revoked', or 'changed' when the record is
-- no longer the one read (another move came first): read again and retry.
-- The records are built by the caller, not re-encoded here, because cjson would round the
-- timestamps in them.
local fields = redis.call('HMGET', KEYS[1], 'record', 'revoked')
if not fields[1] then
  return 'gone'
end
if fields[2] == '1' then
  return 'revoked'
end
if fields[1] ~= ARGV[1] then
  return 'changed'
end
redis.call('HSET', KEYS[1], 'record', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
keep_room_admissions(KEYS[2])
index_admission(KEYS[3], ARGV[3], ARGV[4], ARGV[5])
return 'moved'
