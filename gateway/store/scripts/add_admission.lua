-- Store an admission and index it under its room, at once (room_admissions.lua loaded before
-- this). An expiry already past deletes the record at once, which is what an expired one is.
-- KEYS[1] the admission hash, KEYS[2] the room's admissions (sorted set).
-- ARGV[1] its record, ARGV[2] its revoked flag, ARGV[3] its expiry (ms since the epoch),
-- ARGV[4] its id, ARGV[5] its expiry (seconds: the sorted set's score), ARGV[6] now (seconds).
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'revoked', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
index_admission(KEYS[2], ARGV[4], ARGV[5], ARGV[6])
return 1
