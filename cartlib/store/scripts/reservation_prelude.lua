-- Prelude of the checkout scripts that change the stock hashes (after stock_prelude; the
-- loader prepends both). Shared by the standalone steps (begin_checkout, complete_checkout,
-- cancel_checkout) and the cluster saga's stock-slot steps (saga_reserve, saga_commit,
-- saga_release): Lua cannot import, so the one copy of each rule is here.

-- Reserve every line of `wanted` ({id, quantity}, sorted by id), all or nothing, priced from
-- the catalog. Returns the priced lines as JSON [{"id", "quantity", "price_cents"}] and the
-- total cents, or nil and the shortage as JSON [{"id", "requested", "available"}] (nothing
-- reserved).
local function reserve(stock_key, reserved_key, catalog_key, wanted)
  local lines, short, total = {}, {}, 0
  for _, line in ipairs(wanted) do
    local stock = available(stock_key, reserved_key, line.id) or 0
    local info = redis.call('HGET', catalog_key, line.id)
    if not info or stock < line.quantity then
      short[#short + 1] = {id = line.id, requested = line.quantity,
        available = info and stock or 0}
    else
      local price = cjson.decode(info).price_cents
      lines[#lines + 1] = {id = line.id, quantity = line.quantity, price_cents = price}
      total = total + price * line.quantity
    end
  end
  if #short > 0 then
    return nil, cjson.encode(short)
  end
  for _, line in ipairs(lines) do
    redis.call('HINCRBY', reserved_key, line.id, line.quantity)
  end
  return cjson.encode(lines), string.format('%d', total)
end

-- Give back the units `lines` hold: only the reserved count falls. Their units never left
-- what is on hand, so an admin's set made meanwhile is not counted twice.
local function unreserve(reserved_key, lines)
  for _, line in ipairs(lines) do
    if redis.call('HINCRBY', reserved_key, line.id, -line.quantity) <= 0 then
      redis.call('HDEL', reserved_key, line.id)
    end
  end
end

-- Sell reserved lines: their units leave the reserved count and what is on hand. If an admin
-- set on hand below them meanwhile, nothing is sold (units are never sold that are not on
-- hand): the reservation is given back and false returned.
local function sell(stock_key, reserved_key, lines)
  for _, line in ipairs(lines) do
    if tonumber(redis.call('HGET', stock_key, line.id) or '0') < line.quantity then
      unreserve(reserved_key, lines)
      return false
    end
  end
  unreserve(reserved_key, lines)
  for _, line in ipairs(lines) do
    redis.call('HINCRBY', stock_key, line.id, -line.quantity)
  end
  return true
end

-- Append a sale to the orders stream (the ledger of units sold), in the script that sold it.
local function append_sale(stream_key, maxlen, order_id, session_id, items, total, request_id)
  redis.call('XADD', stream_key, 'MAXLEN', '~', maxlen, '*', 'order_id', order_id,
    'session_id', session_id, 'items', items, 'total_cents', total, 'request_id', request_id)
end

