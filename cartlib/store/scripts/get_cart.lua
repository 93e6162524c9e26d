-- KEYS[1] cart hash
-- Returns the cart's lines as a JSON array of {"id", "quantity"}, sorted by id, so that
-- responses are stable and the Python side can pass the bytes straight through.
local flat = redis.call('HGETALL', KEYS[1])
local ids, quantities = {}, {}
for i = 1, #flat, 2 do
  ids[#ids + 1] = flat[i]
  quantities[flat[i]] = flat[i + 1]
end
table.sort(ids)
local parts = {}
for i, id in ipairs(ids) do
  parts[i] = '{"id":' .. cjson.encode(id) .. ',"quantity":' .. quantities[id] .. '}'
end
return '[' .. table.concat(parts, ',') .. ']'
