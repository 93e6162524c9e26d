-- KEYS[1] catalog hash, KEYS[2] stock hash (on hand), KEYS[3] reserved stock hash;
-- ARGV[1] item id
-- Returns the item as JSON (its stock: the units available, on hand minus reserved), or
-- false if it is not in the catalog.
local info = redis.call('HGET', KEYS[1], ARGV[1])
if not info then
  return false
end
return item_json(ARGV[1], info, available(KEYS[2], KEYS[3], ARGV[1]))
