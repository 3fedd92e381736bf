-- Mark an invite or admission revoked if it still exists; HSET leaves its TTL as it was.
-- KEYS[1] the record's hash. Returns 1, or 0 when there is no such record.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'revoked', '1')
return 1
