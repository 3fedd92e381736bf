-- Replace the store's memory marker if it is still what the caller read.
-- KEYS[1] the marker; ARGV[1] '1' if a marker was read, '0' if none; ARGV[2] the marker read;
-- ARGV[3] the new marker. Returns 1 if written, 0 if the marker had changed.
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '0' and current) or (ARGV[1] == '1' and current ~= ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
