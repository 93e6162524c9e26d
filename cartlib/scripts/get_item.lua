-- KEYS[1] catalog hash, KEYS[2] stock hash; ARGV[1] item id
-- Returns the item as JSON, or false if it is not in the catalog.
local info = redis.call('HGET', KEYS[1], ARGV[1])
if not info then
  return false
end
return item_json(ARGV[1], info, redis.call('HGET', KEYS[2], ARGV[1]))
