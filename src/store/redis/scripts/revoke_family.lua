-- Revokes a family only if it exists (a bare hash would have no TTL),
-- after the upgrade prelude.
-- KEYS: family (tf{fid}), old family hash, old token hash. ARGV: now.
upgrade_family(KEYS[1], KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 1 and not redis.call('HGET', KEYS[1], 'r') then
  redis.call('HSET', KEYS[1], 'r', ARGV[1])
end
return 1
