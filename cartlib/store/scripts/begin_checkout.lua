-- First step of a checkout: reserve the stock of every cart line and turn the cart into a
-- pending order, all or nothing. The cart is emptied here, so a second concurrent checkout
-- of the same cart finds it empty: one cart gives at most one order.
-- Reserving adds to the reserved hash and leaves the units on hand (the stock hash) alone:
-- they leave it only when the order is paid (complete_checkout), and a cancelled order only
-- lowers the reserved count, so an admin's absolute set of what is on hand, made while the
-- order was pending, is never undone or counted twice.
-- KEYS[1] cart hash, KEYS[2] stock hash (on hand), KEYS[3] reserved stock hash,
-- KEYS[4] catalog hash, KEYS[5] new order hash, KEYS[6] pending checkouts zset,
-- KEYS[7] the session's declined-checkouts counter, KEYS[8] idempotency record (optional)
-- ARGV[1] order id, ARGV[2] session id, ARGV[3] now (ms), ARGV[4] TTL of the idempotency
-- record (ms), ARGV[5] the request's fingerprint, ARGV[6] how many declined checkouts the
-- counter allows (0: no limit)
-- With an idempotency record, a reserved checkout sets it to
-- '<fingerprint>|pending:<order id>' for as long as keys are remembered (complete_checkout
-- or cancel_checkout later replace what follows the '|' with the response), and the order
-- names its record (field idempotency_key) and keeps the fingerprint, so a retry of the key
-- finds this order, and the reaper can answer the key when it cancels the order.
-- Returns one of
--   {'replay', record}   the Idempotency-Key was seen: its record as stored (the caller
--                        compares the fingerprint)
--   {'declined_too_often', ms until the counter expires}   (nothing written)
--   {'empty', ''}
--   {'insufficient_stock', JSON [{"id", "requested", "available"}]}   (nothing written)
--   {'reserved', JSON [{"id", "quantity", "price_cents"}], total cents}
local idempotency = KEYS[8]
if idempotency then
  local previous = redis.call('GET', idempotency)
  if previous then
    return {'replay', previous}
  end
end

local declines = tonumber(ARGV[6])
if declines > 0 and tonumber(redis.call('GET', KEYS[7]) or '0') >= declines then
  return {'declined_too_often', redis.call('PTTL', KEYS[7])}
end

local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then
  return {'empty', ''}
end

local lines, short, total = {}, {}, 0
for i = 1, #flat, 2 do
  local id, quantity = flat[i], tonumber(flat[i + 1])
  local stock = available(KEYS[2], KEYS[3], id) or 0
  local info = redis.call('HGET', KEYS[4], id)
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
  redis.call('HINCRBY', KEYS[3], line.id, line.quantity)
end
local items = cjson.encode(lines)
redis.call('HSET', KEYS[5], 'session_id', ARGV[2], 'status', 'pending', 'items', items,
  'total_cents', string.format('%d', total), 'created_at', ARGV[3], 'reserved', '1')
if idempotency then
  redis.call('HSET', KEYS[5], 'idempotency_key', idempotency, 'fingerprint', ARGV[5])
  redis.call('SET', idempotency, ARGV[5] .. '|pending:' .. ARGV[1], 'PX', ARGV[4])
end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
return {'reserved', items, string.format('%d', total)}
