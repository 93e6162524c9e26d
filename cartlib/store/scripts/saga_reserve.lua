-- Cluster checkout, step B (stock slot): reserve every line of an order, all or nothing
-- (`reserve`, as begin_checkout), and record the reservation under the order id. Idempotent
-- by order id: a retry, a resumed checkout or a late duplicate finds the record and reserves
-- nothing again; a reservation the reaper released (or tombstoned before it existed) is
-- never made again.
-- KEYS[1] the order's reservation hash, KEYS[2] stock hash (on hand), KEYS[3] reserved
-- stock hash, KEYS[4] catalog hash, KEYS[5] index of the reservations held
-- ARGV[1] session id, ARGV[2] the order's lines, JSON [{"id", "quantity"}] sorted by id,
-- ARGV[3] now (ms), ARGV[4] how long a tombstone is kept (s), ARGV[5] the order id
-- Returns one of
--   {'reserved', JSON [{"id", "quantity", "price_cents"}], total cents}  (also when it was)
--   {'committed', same}   step C already ran: the units have left what is on hand
--   {'released'}          released or tombstoned: this order gets nothing
--   {'insufficient_stock', JSON [{"id", "requested", "available"}]}   (nothing reserved; the
--                        order gets a tombstone: it is cancelled, and never reserved later)
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'reserved' or status == 'committed' then
  local held = redis.call('HMGET', KEYS[1], 'items', 'total_cents')
  return {status, held[1], held[2]}
end
if status then
  return {'released'}
end
local items, total_or_short = reserve(KEYS[2], KEYS[3], KEYS[4], cjson.decode(ARGV[2]))
if not items then
  -- A tombstone: the caller cancels the order now, and another attempt at the same order (a
  -- retry of its key racing this one) must not reserve for it afterwards, after a restock.
  redis.call('HSET', KEYS[1], 'status', 'released', 'ended_at', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {'insufficient_stock', total_or_short}
end
redis.call('HSET', KEYS[1], 'status', 'reserved', 'session_id', ARGV[1], 'items', items,
  'total_cents', total_or_short, 'reserved_at', ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[5])
return {'reserved', items, total_or_short}
