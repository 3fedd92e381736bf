-- A part, not a script of its own: a room's admissions index (a sorted set of admission ids
-- scored by their expiry in seconds), for every script that adds to it or moves out of it.
-- The key lasts until its last entry lapses, so a room nobody reads or joins again leaves no
-- index behind (an index kept without an expiry, by an earlier release, gets one here).

-- `key`'s expiry set to its latest entry's, to the millisecond as Python's _milliseconds rounds
-- it (the same double, times 1000, rounded up); an empty index is gone already.
local function keep_room_admissions(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', key, string.format('%.0f', math.ceil(tonumber(last[2]) * 1000)))
  end
end

-- Adds admission `id` expiring at `expires_s` (text, as the caller wrote it) to `key`, drops
-- the entries lapsed by `now_s` (seconds) and keeps the index as long as its latest entry.
local function index_admission(key, id, expires_s, now_s)
  redis.call('ZADD', key, expires_s, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_s)
  keep_room_admissions(key)
end
