-- Moves a user's credential epoch and ends their sessions' state in one
-- atomic step (see `FamilyStore::revoke_user`); the families themselves
-- live in other slots and are revoked by the caller, one by one.
-- KEYS: user epoch, user consents, user family index (hash), the index an
-- older version kept (set); one slot: {uid}.
-- ARGV: floor (milliseconds), ttl (seconds).
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
-- Older versions kept a "not before" mark in whole seconds under this key.
if stored < 100000000000 then stored = stored * 1000 end
local epoch = math.max(stored + 1, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', epoch), 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
local families = redis.call('HKEYS', KEYS[3])
for _, family in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  families[#families + 1] = family
end
return {string.format('%d', epoch), families}
