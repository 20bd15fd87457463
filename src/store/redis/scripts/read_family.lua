-- Reads a family, after the upgrade prelude.
-- KEYS: family (tf{fid}), old family hash, old token hash.
-- Returns the fields u c s t i a e h n w r d x k (nil where absent).
upgrade_family(KEYS[1], KEYS[2], KEYS[3])
return redis.call('HMGET', KEYS[1], 'u', 'c', 's', 't', 'i', 'a', 'e', 'h', 'n', 'w', 'r', 'd', 'x', 'k')
