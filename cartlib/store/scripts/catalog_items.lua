-- Prelude shared by the catalog scripts (the loader prepends it).
-- One item as JSON {"id", "name", "price_cents", "stock"}.
local function item_json(id, info_json, stock)
  local info = cjson.decode(info_json)
  return '{"id":' .. cjson.encode(id) .. ',"name":' .. cjson.encode(info.name)
    .. ',"price_cents":' .. string.format('%d', info.price_cents)
    .. ',"stock":' .. string.format('%d', stock or 0) .. '}'
end

