-- Count one use of an invite, or say why it cannot be used, in one atomic step (invite_check.lua,
-- loaded before this).
-- KEYS[1] the invite hash; ARGV[1] the token hash the caller looked it up by; ARGV[2] now (seconds).
-- Returns {'ok', record, uses} (uses after this one) or {code} as check_invite returns it.
local checked = check_invite(KEYS[1], ARGV[1], ARGV[2])
if checked[1] == 'ok' then
  checked[3] = redis.call('HINCRBY', KEYS[1], 'uses', 1)
end
return checked
