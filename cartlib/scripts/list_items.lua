-- KEYS[1] catalog hash, KEYS[2] stock hash
-- Returns {"items": [...]} as JSON, sorted by id.
local flat = redis.call('HGETALL', KEYS[1])
local ids, infos = {}, {}
for i = 1, #flat, 2 do
  ids[#ids + 1] = flat[i]
  infos[flat[i]] = flat[i + 1]
end
table.sort(ids)
local stocks = {}
if #ids > 0 then
  stocks = redis.call('HMGET', KEYS[2], unpack(ids))
end
local parts = {}
for i, id in ipairs(ids) do
  parts[i] = item_json(id, infos[id], stocks[i] or nil)
end
return '{"items":[' .. table.concat(parts, ',') .. ']}'
