-- Revokes a family only if it exists (a bare hash would have no TTL).
-- KEYS: family hash. ARGV: now.
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'revoked') == '0' then
  redis.call('HSET', KEYS[1], 'revoked', ARGV[1])
end
return 1
