-- Rotation in one atomic step (see `FamilyStore::rotate`), after the
-- upgrade prelude. No token history is kept: the current token's digest
-- and the rotation count are enough (the caller walks the derived chain to
-- recognise an older ancestor), with a checkpoint every 256 rotations.
-- KEYS: family (tf{fid}), old family hash, old token hash.
-- ARGV: presented digest, successor digest (16 raw bytes each), now, grace,
-- idle_ttl, client_id, jkt ('' without a DPoP proof), rotations between two
-- checkpoints, checkpoints kept (`CHECKPOINT_EVERY`, `CHECKPOINTS_KEPT`), the
-- client of a family without `c` (the built-in one, `BUILT_IN_CLIENT`).
upgrade_family(KEYS[1], KEYS[2], KEYS[3])
local f = redis.call('HMGET', KEYS[1], 'u', 'c', 's', 't', 'i', 'a', 'e', 'h', 'n', 'w', 'r', 'd', 'x', 'k')
local client = f[2] or ARGV[10]
if not f[1] or client ~= ARGV[6] or f[11] then return {'invalid'} end
local now = tonumber(ARGV[3])
local abs_exp = tonumber(f[6])
local exp = math.min(tonumber(f[5]), abs_exp)
if exp <= now then return {'invalid'} end
-- A family bound to a DPoP key moves only with a proof of that key; checked
-- before reuse detection, so a thief without the key cannot burn the family.
local jkt = f[14] or ''
if jkt ~= '' and jkt ~= ARGV[7] then return {'key_mismatch'} end
local sid = f[12] or ''
local auth_time = f[13] or f[4]
local epoch = f[7] or '0'
local generation = tonumber(f[9] or '0')
if f[8] == ARGV[1] then
  local idle = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'h', ARGV[2], 'n', string.format('%d', generation + 1),
    'i', string.format('%d', idle), 'w', ARGV[3])
  -- A checkpoint every 256 rotations (16 bytes each): the caller's walk
  -- of at most 256 steps then reaches one from an ancestor of any age, so
  -- rotating a stolen token many times cannot outrun reuse detection.
  -- Only the newest ARGV[9] are kept (64: 1 KiB): a walk compares against
  -- each, and a family rotated as fast as the server answers must not make
  -- that (or this string) grow without bound. Older ancestors (16,384
  -- rotations back) are then spent tokens without revoking the family.
  if (generation + 1) % tonumber(ARGV[8]) == 0 then
    local kept = tonumber(ARGV[9]) * 16
    local checkpoints = (redis.call('HGET', KEYS[1], 'p') or '') .. ARGV[2]
    if #checkpoints > kept then checkpoints = string.sub(checkpoints, -kept) end
    redis.call('HSET', KEYS[1], 'p', checkpoints)
  end
  return {'rotated', f[1], client, f[3], f[4], string.format('%d', math.min(idle, abs_exp)), epoch, sid, auth_time, jkt}
end
if f[8] == ARGV[2] then
  -- The presented token is the one just rotated (its successor is current).
  local grace = tonumber(ARGV[4])
  if grace > 0 and now - tonumber(f[10] or f[4]) <= grace then
    return {'grace', f[1], client, f[3], f[4], string.format('%d', exp), epoch, sid, auth_time, jkt}
  end
  -- RFC 9700 §4.14.2: replay of a rotated token revokes the family.
  redis.call('HSET', KEYS[1], 'r', ARGV[3])
  return {'reuse'}
end
return {'unknown', f[8], string.format('%d', generation), redis.call('HGET', KEYS[1], 'p') or ''}
