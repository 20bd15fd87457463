-- Marks a code used at most once (see `CodeStore::redeem_code`).
-- KEYS: code hash. ARGV: now.
local c = redis.call('HMGET', KEYS[1], 'client', 'user', 'redirect', 'scope', 'pkce', 'exp', 'family', 'used', 'epoch', 'nonce', 'sid', 'auth_time', 'jkt')
if not c[1] then return {'unknown'} end
if c[8] ~= '0' then return {'replayed', c[7], c[1]} end
if tonumber(c[6]) <= tonumber(ARGV[1]) then return {'unknown'} end
redis.call('HSET', KEYS[1], 'used', ARGV[1])
return {'fresh', c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[9] or '0', c[10] or '', c[11] or '', c[12] or '0', c[13] or ''}
