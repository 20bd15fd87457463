-- Forgets every consent of a user to one client, whatever its scope, in
-- one atomic step (see `ConsentStore::revoke_consent`).
-- KEYS: user consents hash (fields "client_id scope"). ARGV: client_id.
-- Returns how many consents were forgotten.
local prefix = ARGV[1] .. ' '
local forgotten = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], field)
    forgotten = forgotten + 1
  end
end
return forgotten
