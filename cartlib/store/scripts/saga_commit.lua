-- Cluster checkout, step C (stock slot), after an approved payment: the reserved units leave
-- what is on hand and the sale is appended to the orders stream, in one script, so the
-- stream is the ledger of units sold (`sell` and `append_sale`, as complete_checkout).
-- Idempotent by order id. If an admin set what is on hand below this reservation meanwhile,
-- nothing is sold: the reservation is released.
-- KEYS[1] the order's reservation hash, KEYS[2] stock hash (on hand), KEYS[3] reserved
-- stock hash, KEYS[4] orders stream, KEYS[5] index of the reservations held
-- ARGV[1] order id, ARGV[2] now (ms), ARGV[3] approximate stream length cap, ARGV[4] request
-- id, ARGV[5] how long to keep the finished reservation (s)
-- Returns {'committed', items, total} (also when it already was: then it writes the time,
-- so that a WAIT after it confirms the earlier commit), {'out_of_stock'} (the
-- reservation is released) or {'released'} (the reaper released it: nothing sold).
local held = redis.call('HMGET', KEYS[1], 'status', 'items', 'total_cents', 'session_id')
if held[1] == 'committed' then
  -- A write, so that a WAIT after this retry covers the commit it repeats.
  redis.call('HSET', KEYS[1], 'confirmed_at', ARGV[2])
  return {'committed', held[2], held[3]}
end
if held[1] ~= 'reserved' then
  return {'released'}
end
redis.call('ZREM', KEYS[5], ARGV[1])
if not sell(KEYS[2], KEYS[3], cjson.decode(held[2])) then
  redis.call('HSET', KEYS[1], 'status', 'released', 'ended_at', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {'out_of_stock'}
end
append_sale(KEYS[4], ARGV[3], ARGV[1], held[4], held[2], held[3], ARGV[4])
redis.call('HSET', KEYS[1], 'status', 'committed', 'ended_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {'committed', held[2], held[3]}
