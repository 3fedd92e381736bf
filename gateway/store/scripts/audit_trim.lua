-- Add an audit entry (optionally) and drop what is past the audit log's retention, atomically.
-- KEYS[1] a room's audit list, newest first.
-- ARGV[1] the entry's JSON to add ('' for none), ARGV[2] the cut-off: an entry whose `at` is
-- below it goes, and so does one whose time cannot be read (nobody can show or date it),
-- ARGV[3] the most entries kept, ARGV[4] the retention, in ms: with 'tail' the list is kept that
-- long from now (an entry was just added), with 'all' that long past its newest entry's time,
-- ARGV[5] 'tail' to look only at the oldest end (entries come in about the order of their
-- times: cheap, on every append) or 'all' to look at every entry (a purge).
-- Returns how many entries were dropped for their age.
local key = KEYS[1]
if ARGV[1] ~= '' then
  redis.call('LPUSH', key, ARGV[1])
  redis.call('LTRIM', key, 0, tonumber(ARGV[3]) - 1)
end
local cutoff = tonumber(ARGV[2])

local function old(text)
  local parsed, entry = pcall(cjson.decode, text)
  return not parsed or type(entry) ~= 'table' or type(entry.at) ~= 'number' or entry.at < cutoff
end

local dropped = 0
local newest = nil
if ARGV[5] == 'tail' then
  while true do
    local oldest = redis.call('LINDEX', key, -1)
    if not oldest or not old(oldest) then
      break
    end
    redis.call('RPOP', key)
    dropped = dropped + 1
  end
else
  local entries = redis.call('LRANGE', key, 0, -1)
  local kept = {}
  for _, text in ipairs(entries) do
    if old(text) then
      dropped = dropped + 1
    else
      kept[#kept + 1] = text
      local at = cjson.decode(text).at
      if newest == nil or at > newest then
        newest = at
      end
    end
  end
  if dropped > 0 then
    redis.call('DEL', key)
    for first = 1, #kept, 1000 do
      redis.call('RPUSH', key, unpack(kept, first, math.min(first + 999, #kept)))
    end
  end
end
if redis.call('EXISTS', key) == 1 then
  if ARGV[5] == 'tail' then
    redis.call('PEXPIRE', key, ARGV[4])
  else
    -- Rewritten without an expiry: the retention past the newest entry kept, as if it had just
    -- come (one already past it goes now).
    redis.call('PEXPIREAT', key, math.floor(newest * 1000 + tonumber(ARGV[4])))
  end
end
return dropped
