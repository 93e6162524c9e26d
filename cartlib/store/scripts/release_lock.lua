-- Deletes a lock only if it still holds this owner's token (it may have expired and been
-- taken by another process meanwhile).
-- KEYS[1] lock; ARGV[1] owner token. Returns 1 if deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
