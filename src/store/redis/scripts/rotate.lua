-- Rotation in one atomic step (see `FamilyStore::rotate`).
-- KEYS: family hash, family token hash.
-- ARGV: presented, successor, now, grace, idle_ttl, client_id, jkt ('' without a DPoP proof).
local f = redis.call('HMGET', KEYS[1], 'user', 'client', 'scope', 'created', 'idle_exp', 'abs_exp', 'revoked', 'current', 'epoch', 'sid', 'auth_time', 'jkt')
if not f[1] or f[2] ~= ARGV[6] or f[7] ~= '0' then return {'invalid'} end
local now = tonumber(ARGV[3])
local abs_exp = tonumber(f[6])
local exp = math.min(tonumber(f[5]), abs_exp)
if exp <= now then return {'invalid'} end
local rotated = redis.call('HGET', KEYS[2], ARGV[1])
if not rotated then return {'invalid'} end
-- A family bound to a DPoP key moves only with a proof of that key; checked
-- before reuse detection, so a thief without the key cannot burn the family.
local jkt = f[12] or ''
if jkt ~= '' and jkt ~= ARGV[7] then return {'key_mismatch'} end
-- Families from before epochs are judged by their start (ms), as old tokens by iat.
local epoch = f[9] or string.format('%d', tonumber(f[4]) * 1000)
local sid = f[10] or ''
local auth_time = f[11] or f[4]
if f[8] == ARGV[1] then
  local idle = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3], ARGV[2], '0')
  -- 'used': the last rotation, for the user's list of sessions.
  redis.call('HSET', KEYS[1], 'current', ARGV[2], 'idle_exp', tostring(idle), 'used', ARGV[3])
  return {'rotated', f[1], f[2], f[3], f[4], tostring(math.min(idle, abs_exp)), epoch, sid, auth_time, jkt}
end
local grace = tonumber(ARGV[4])
if grace > 0 and rotated ~= '0' and f[8] == ARGV[2] and now - tonumber(rotated) <= grace then
  return {'grace', f[1], f[2], f[3], f[4], tostring(exp), epoch, sid, auth_time, jkt}
end
redis.call('HSET', KEYS[1], 'revoked', ARGV[3])
return {'reuse'}
