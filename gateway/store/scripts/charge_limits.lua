-- Charge one request against several GCRA limits, all or nothing (gcra.lua, loaded before this).
-- KEYS[i] limit i's state; ARGV[2i-1] limit i's emission interval in microseconds, ARGV[2i] its
-- burst. Returns what charge_limits in gcra.lua returns.
return charge_limits(KEYS, ARGV)
