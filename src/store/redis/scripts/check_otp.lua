-- Checks a one-time code (see `OtpStore::check_otp`).
-- KEYS: otp hash. ARGV: digest, now, max_attempts.
-- Returns 1 for a match, 0 for a mismatch, 2 when no live code exists.
local o = redis.call('HMGET', KEYS[1], 'digest', 'exp', 'attempts')
if not o[1] then return 2 end
if tonumber(o[2]) <= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) return 2 end
if o[1] == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
return 0
