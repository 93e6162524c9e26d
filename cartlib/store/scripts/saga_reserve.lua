-- Cluster checkout, step B (stock slot): reserve every line of an order, all or nothing, and
-- record the reservation under the order id. Idempotent by order id: a retry, a resumed
-- checkout or a late duplicate finds the record and reserves nothing again; a reservation
-- the reaper released (or tombstoned before it existed) is never made again.
-- KEYS[1] the order's reservation hash, KEYS[2] stock hash (on hand), KEYS[3] reserved
-- stock hash, KEYS[4] catalog hash
-- ARGV[1] session id, ARGV[2] the order's lines, JSON [{"id", "quantity"}], ARGV[3] now (ms),
-- ARGV[4] how long a tombstone is kept (s)
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
local lines, short, total = {}, {}, 0
for _, wanted in ipairs(cjson.decode(ARGV[2])) do
  local stock = available(KEYS[2], KEYS[3], wanted.id) or 0
  local info = redis.call('HGET', KEYS[4], wanted.id)
  if not info or stock < wanted.quantity then
    short[#short + 1] = {id = wanted.id, requested = wanted.quantity,
      available = info and stock or 0}
  else
    local price = cjson.decode(info).price_cents
    lines[#lines + 1] = {id = wanted.id, quantity = wanted.quantity, price_cents = price}
    total = total + price * wanted.quantity
  end
end
if #short > 0 then
  -- A tombstone: the caller cancels the order now, and another attempt at the same order (a
  -- retry of its key racing this one) must not reserve for it afterwards, after a restock.
  redis.call('HSET', KEYS[1], 'status', 'released', 'ended_at', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {'insufficient_stock', cjson.encode(short)}
end
for _, line in ipairs(lines) do
  redis.call('HINCRBY', KEYS[3], line.id, line.quantity)
end
local items = cjson.encode(lines)
local cents = string.format('%d', total)
redis.call('HSET', KEYS[1], 'status', 'reserved', 'session_id', ARGV[1], 'items', items,
  'total_cents', cents, 'reserved_at', ARGV[3])
return {'reserved', items, cents}
