-- Undoes one hit of a window's counter (see `CounterStore::release`).
-- Only an existing, positive count is decremented: DECR keeps the key's
-- TTL, and no key is ever created here (it would have no TTL).
-- KEYS: counter key. Returns the count left.
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 0 then return 0 end
return redis.call('DECR', KEYS[1])
