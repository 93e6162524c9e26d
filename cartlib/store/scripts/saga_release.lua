-- Cluster checkout, compensation of step B (stock slot): give back what an order reserved
-- (`unreserve`, as cancel_checkout). Idempotent by order id. An order with no reservation
-- yet gets a tombstone, so that a step B still on its way (a process cut off between A and B,
-- resumed later) reserves nothing.
-- KEYS[1] the order's reservation hash, KEYS[2] reserved stock hash, KEYS[3] index of the
-- reservations held
-- ARGV[1] now (ms), ARGV[2] how long to keep the finished reservation or tombstone (s),
-- ARGV[3] the order id
-- Returns {'released'} (also when it was, or never existed) or {'committed', items, total}:
-- the order was sold (step C ran) and must be finished, not cancelled.
local held = redis.call('HMGET', KEYS[1], 'status', 'items', 'total_cents')
redis.call('ZREM', KEYS[3], ARGV[3])
if held[1] == 'committed' then
  return {'committed', held[2], held[3]}
end
if held[1] == 'reserved' then
  unreserve(KEYS[2], cjson.decode(held[2]))
end
if held[1] ~= 'released' then
  redis.call('HSET', KEYS[1], 'status', 'released', 'ended_at', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {'released'}
