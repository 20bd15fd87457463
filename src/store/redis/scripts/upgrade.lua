-- Prelude of every family script: moves a family written by an older
-- version (hash `tessera:fam:{fid}` with long field names and decimal
-- strings, plus `tessera:fam:{fid}:tok` holding every token digest ever
-- issued) to the compact layout (hash `tf{fid}`), keeping its remaining
-- TTL, then deletes the two old keys. All three keys share the `{fid}` slot.
-- Fields of the compact hash (u, s, d packed, see packed.rs; text as
-- older versions and this prelude write them is read too): u user,
-- c client (absent: the built-in client), s scope, t created,
-- i idle expiry, a absolute expiry, e epoch in ms (absent: 0), h current token digest
-- (the first 16 bytes of its SHA-256, raw), n rotations (absent: 0),
-- w last rotation (absent: t), r revoked at (absent: live), d session
-- (absent: the family itself), x auth_time (absent: t), k DPoP key
-- thumbprint (absent: unbound), p checkpoints (absent: none): the 16-byte
-- digests of the tokens current after every 256th rotation, concatenated,
-- so that an ancestor of any age is found within 256 derivation steps.

-- How long past its absolute expiry an old family without a TTL is kept
-- (seconds): longer than any access token minted from it lives (at most a
-- day, plus the verifiers' leeway), so its revocation is never forgotten
-- early. A fixed bound rather than the configured window, so that no
-- script has to pass it.
local UNTIMED_KEEP = 2 * 86400

-- A whole number of seconds (or milliseconds) as the old layout wrote it;
-- anything else (`tonumber` also takes "1e9", "0x10", "inf") is refused.
local function whole(value)
  if value and string.match(value, '^%d+$') then return value end
  return nil
end

-- Raw bytes for hex digits.
local function unhex(digits)
  return (string.gsub(digits, '..', function(byte) return string.char(tonumber(byte, 16)) end))
end

-- An id as packed.rs's `pack_id` writes it: 12 raw bytes for 24 lowercase
-- hex digits, else the text (after a 0x00 byte if it is 12 bytes long).
local function pack_id(id)
  if string.match(id, '^' .. string.rep('[0-9a-f]', 24) .. '$') then return unhex(id) end
  if #id == 12 then return '\0' .. id end
  return id
end

local function upgrade_family(key, old, old_tokens)
  if redis.call('EXISTS', key) == 1 or redis.call('EXISTS', old) == 0 then return end
  local o = redis.call('HMGET', old, 'user', 'client', 'scope', 'created', 'idle_exp',
    'abs_exp', 'revoked', 'current', 'epoch', 'sid', 'auth_time', 'jkt', 'used')
  -- Older readers treated a hash missing any of these as no family: so is
  -- it here. Its keys go, so that it is not met (and skipped) again.
  if not (o[1] and o[2] and o[3] and o[8] and whole(o[4]) and whole(o[5])
      and whole(o[6])) or not string.match(o[8], '^' .. string.rep('%x', 32)) then
    redis.call('DEL', old, old_tokens)
    return
  end
  local fid = string.match(key, '{(.*)}')
  local current = unhex(string.sub(o[8], 1, 32))
  local fields = {'u', pack_id(o[1]), 'c', o[2], 's', o[3], 't', o[4], 'i', o[5], 'a', o[6],
    'h', current}
  local function optional(name, value, default)
    if value and value ~= '' and value ~= default then
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
  end
  -- Families from before epochs are judged by their start (ms), as old tokens by iat.
  optional('e', whole(o[9]) or string.format('%d', tonumber(o[4]) * 1000), '0')
  -- The old token hash holds every token issued: its rotations are one
  -- fewer, which keeps ancestors issued before the upgrade recognisable.
  local rotations = redis.call('HLEN', old_tokens) - 1
  if rotations > 0 then optional('n', string.format('%d', rotations), '0') end
  -- Checkpoints: new ones are written at every multiple of 256 rotations,
  -- so without one here the tokens more than 256 rotations before the
  -- next multiple would fall out of reach. The current digest as a
  -- checkpoint keeps the 256 tokens before the upgrade recognisable for
  -- the family's whole life. Older tokens of a long family are not kept:
  -- their order is not recorded (`rotated_at` has one-second resolution
  -- and comes from each node's clock), so no set of every 256th can be
  -- picked, and keeping them all would make every walk compare against
  -- thousands of digests. They stay spent (invalid_grant), but their
  -- replay no longer revokes the family.
  -- (256: `CHECKPOINT_EVERY`; this prelude runs in every family script,
  -- which do not all pass it.)
  if rotations >= 256 then optional('p', current, '') end
  optional('w', whole(o[13]), o[4])
  -- Older readers took anything but '0' (a missing field included) as
  -- revoked; the compact layout marks it with a time.
  if o[7] ~= '0' then
    local revoked_at = tonumber(o[7])
    if not revoked_at or revoked_at <= 0 then revoked_at = tonumber(redis.call('TIME')[1]) end
    optional('r', string.format('%d', revoked_at), '')
  end
  if o[10] and o[10] ~= '' and o[10] ~= fid then optional('d', pack_id(o[10]), '') end
  optional('x', whole(o[11]), o[4])
  optional('k', o[12], '')
  local ttl = redis.call('PTTL', old)
  redis.call('HSET', key, unpack(fields))
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  else
    -- No TTL (written by hand, or by a bug): every key must have one.
    redis.call('EXPIREAT', key, math.floor(tonumber(o[6])) + UNTIMED_KEEP)
  end
  redis.call('DEL', old, old_tokens)
end
