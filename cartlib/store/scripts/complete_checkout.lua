-- Last step of a paid checkout: take the units from what is on hand, mark the order paid,
-- publish it, remember the response. If an admin set what is on hand below what this
-- order holds while it was being paid, the order is not paid: it is cancelled as
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
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'paid' then
  return {'paid'}
end
if status ~= 'pending' then
  return {'not_pending'}
end
local order = redis.call('HMGET', KEYS[1], 'session_id', 'items', 'total_cents', 'reserved')
local lines = cjson.decode(order[2])
if order[4] == '1' then
  for _, line in ipairs(lines) do
    if tonumber(redis.call('HGET', KEYS[4], line.id) or '0') < line.quantity then
      release(KEYS[1], KEYS[4], KEYS[5], lines)
      local left_out = restore(KEYS[6], lines, tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[9])
      local response = with_left_out(ARGV[7], left_out)
      redis.call('HSET', KEYS[1], 'status', 'out_of_stock')
      redis.call('EXPIRE', KEYS[1], ARGV[8])
      redis.call('ZREM', KEYS[2], ARGV[1])
      if KEYS[7] then
        redis.call('SET', KEYS[7], record(KEYS[1], response), 'EX', ARGV[4])
      end
      return {'out_of_stock', left_out, response}
    end
  end
  release(KEYS[1], KEYS[4], KEYS[5], lines)
  for _, line in ipairs(lines) do
    redis.call('HINCRBY', KEYS[4], line.id, -line.quantity)
  end
end
redis.call('HSET', KEYS[1], 'status', 'paid', 'paid_at', ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'order_id', ARGV[1],
  'session_id', order[1], 'items', order[2], 'total_cents', order[3], 'request_id', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[7] then
  redis.call('SET', KEYS[7], record(KEYS[1], ARGV[3]), 'EX', ARGV[4])
end
return {'paid'}
