-- Prelude of every family script: moves a family written by an older
-- version (hash `tessera:fam:{fid}` with long field names and decimal
-- strings, plus `tessera:fam:{fid}:tok` holding every token digest ever
-- issued) to the compact layout (hash `tf{fid}`), keeping its remaining
-- TTL, then deletes the two old keys. All three keys share the `{fid}` slot.
-- Fields of the compact hash: u user, c client, s scope, t created,
-- i idle expiry, a absolute expiry, e epoch in ms (absent: 0), h current token digest
-- (the first 16 bytes of its SHA-256, raw), n rotations (absent: 0),
-- w last rotation (absent: t), r revoked at (absent: live), d session
-- (absent: the family itself), x auth_time (absent: t), k DPoP key
-- thumbprint (absent: unbound).
local function upgrade_family(key, old, old_tokens)
  if redis.call('EXISTS', key) == 1 or redis.call('EXISTS', old) == 0 then return end
  local o = redis.call('HMGET', old, 'user', 'client', 'scope', 'created', 'idle_exp',
    'abs_exp', 'revoked', 'current', 'epoch', 'sid', 'auth_time', 'jkt', 'used')
  if not o[1] or not o[8] then return end
  local fid = string.match(key, '{(.*)}')
  local fields = {'u', o[1], 'c', o[2], 's', o[3], 't', o[4], 'i', o[5], 'a', o[6],
    'h', (string.gsub(string.sub(o[8], 1, 32), '..',
      function(byte) return string.char(tonumber(byte, 16)) end))}
  local function optional(name, value, default)
    if value and value ~= '' and value ~= default then
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
  end
  -- Families from before epochs are judged by their start (ms), as old tokens by iat.
  optional('e', o[9] or string.format('%d', tonumber(o[4]) * 1000), '0')
  -- The old token hash holds every token issued: its rotations are one
  -- fewer, which keeps ancestors issued before the upgrade recognisable.
  local rotations = redis.call('HLEN', old_tokens) - 1
  if rotations > 0 then optional('n', string.format('%d', rotations), '0') end
  optional('w', o[13], o[4])
  optional('r', o[7], '0')
  optional('d', o[10], fid)
  optional('x', o[11], o[4])
  optional('k', o[12], '')
  local ttl = redis.call('PTTL', old)
  redis.call('HSET', key, unpack(fields))
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  redis.call('DEL', old, old_tokens)
end
