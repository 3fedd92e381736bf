-- Count events in fixed windows of the server's clock (recent.lua loaded before this).
-- KEYS[1] the counter; ARGV[1] window length in seconds; ARGV[2] how many events to add (0 only
-- reads). Returns what count_recent returns.
return count_recent(KEYS[1], ARGV[1], ARGV[2])
