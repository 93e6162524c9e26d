-- KEYS[1] catalog hash, KEYS[2] stock hash (on hand), KEYS[3] reserved stock hash
-- Returns {"items": [...]} as JSON, sorted by id; stock is on hand minus reserved.
local flat = redis.call('HGETALL', KEYS[1])
local ids, infos = {}, {}
for i = 1, #flat, 2 do
  ids[#ids + 1] = flat[i]
  infos[flat[i]] = flat[i + 1]
end
table.sort(ids)
local stocks, reserved = {}, {}
if #ids > 0 then
  stocks = redis.call('HMGET', KEYS[2], unpack(ids))
  reserved = redis.call('HMGET', KEYS[3], unpack(ids))
end
local parts = {}
for i, id in ipairs(ids) do
  local left = math.max(tonumber(stocks[i] or '0') - tonumber(reserved[i] or '0'), 0)
  parts[i] = item_json(id, infos[id], left)
end
return '{"items":[' .. table.concat(parts, ',') .. ']}'
