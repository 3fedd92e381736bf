-- Add one to a counter that lasts a fixed time from its first bump: later bumps leave its TTL.
-- KEYS[1] the counter; ARGV[1] its TTL in milliseconds, set only by the bump that creates it.
-- Returns the count, this bump included.
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
