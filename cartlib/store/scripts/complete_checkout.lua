-- Last step of a paid standalone checkout: sell the reserved units (they leave what is on
-- hand; `sell` as saga_commit), append the sale to the orders stream, mark the order paid and
-- remember the response (`mark_paid` as saga_finish). If an admin set what is on hand below
-- what this order holds while it was being paid, nothing is sold: the order is cancelled as
-- cancel_checkout does (status 'out_of_stock', kept for reconciling the payment), and the
-- out-of-stock response is remembered instead. Units are never sold that are not on hand.
-- KEYS[1] order hash, KEYS[2] pending checkouts zset, KEYS[3] orders stream,
-- KEYS[4] stock hash (on hand), KEYS[5] reserved stock hash, KEYS[6] cart hash,
-- KEYS[7] idempotency record (optional)
-- ARGV[1] order id, ARGV[2] now (ms), ARGV[3] response to remember, ARGV[4] its TTL (s),
-- ARGV[5] approximate stream length cap, ARGV[6] request id, ARGV[7] the response to
-- remember when out of stock, ARGV[8] how long to keep such an order (s), ARGV[9] cart TTL
-- (ms), ARGV[10] cap on a line's quantity, ARGV[11] cap on the cart's lines
-- Returns {'paid'} (also when it already was: a retry of this step whose reply was lost
-- with its connection, e.g. across a failover), {'out_of_stock', JSON [{"id", "quantity"}]
-- of units not restored to the cart, the response as remembered (ARGV[7], with those units
-- as not_restored)}, or {'not_pending'} if the order was cancelled.
if redis.call('HGET', KEYS[1], 'status') == 'paid' then
  return {'paid'}
end
local lines = pending_lines(KEYS[1])
if not lines then
  return {'not_pending'}
end
local order = {order = KEYS[1], pending = KEYS[2], cart = KEYS[6], idempotency = KEYS[7]}
if not sell(KEYS[4], KEYS[5], lines) then
  local reply = cancel(order, {order_id = ARGV[1], status = 'out_of_stock',
    response = ARGV[7], response_ttl = ARGV[4], keep_seconds = ARGV[8],
    cart_ttl_ms = ARGV[9], max_quantity = ARGV[10], max_lines = ARGV[11]}, lines)
  reply[1] = 'out_of_stock'
  return reply
end
local held = redis.call('HMGET', KEYS[1], 'session_id', 'items', 'total_cents')
append_sale(KEYS[3], ARGV[5], ARGV[1], held[1], held[2], held[3], ARGV[6])
mark_paid(order, ARGV[1], ARGV[2], ARGV[3], ARGV[4], {})
return {'paid'}
