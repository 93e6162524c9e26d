-- First step of a checkout: reserve the stock of every cart line and turn the cart into a
-- pending order, all or nothing. The cart is emptied here, so a second concurrent checkout
-- of the same cart finds it empty: one cart gives at most one order.
-- KEYS[1] cart hash, KEYS[2] stock hash, KEYS[3] catalog hash, KEYS[4] new order hash,
-- KEYS[5] pending checkouts zset, KEYS[6] idempotency record (optional)
-- ARGV[1] order id, ARGV[2] session id, ARGV[3] now (ms), ARGV[4] TTL of the idempotency
-- record (ms)
-- With an idempotency record, a reserved checkout sets it to 'pending:<order id>' for as
-- long as keys are remembered (complete_checkout or cancel_checkout later replace it with
-- the response), and the order names its record (field idempotency_key), so a retry of the
-- key finds this order, and the reaper can answer the key when it cancels the order.
-- Returns one of
--   {'replay', record}   the Idempotency-Key was seen: its remembered response, or
--                        'pending:<order id>' while that checkout is unfinished
--   {'empty', ''}
--   {'insufficient_stock', JSON [{"id", "requested", "available"}]}   (nothing written)
--   {'reserved', JSON [{"id", "quantity", "price_cents"}], total cents}
local idempotency = KEYS[6]
if idempotency then
  local previous = redis.call('GET', idempotency)
  if previous then
    return {'replay', previous}
  end
end

local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then
  return {'empty', ''}
end

local lines, short, total = {}, {}, 0
for i = 1, #flat, 2 do
  local id, quantity = flat[i], tonumber(flat[i + 1])
  local stock = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  local info = redis.call('HGET', KEYS[3], id)
  if not info or stock < quantity then
    short[#short + 1] = {id = id, requested = quantity, available = info and stock or 0}
  else
    local price = cjson.decode(info).price_cents
    lines[#lines + 1] = {id = id, quantity = quantity, price_cents = price}
    total = total + price * quantity
  end
end

local by_id = function(a, b) return a.id < b.id end
if #short > 0 then
  table.sort(short, by_id)
  return {'insufficient_stock', cjson.encode(short)}
end

table.sort(lines, by_id)
for _, line in ipairs(lines) do
  redis.call('HINCRBY', KEYS[2], line.id, -line.quantity)
end
local items = cjson.encode(lines)
redis.call('HSET', KEYS[4], 'session_id', ARGV[2], 'status', 'pending', 'items', items,
  'total_cents', string.format('%d', total), 'created_at', ARGV[3])
if idempotency then
  redis.call('HSET', KEYS[4], 'idempotency_key', idempotency)
  redis.call('SET', idempotency, 'pending:' .. ARGV[1], 'PX', ARGV[4])
end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return {'reserved', items, string.format('%d', total)}
