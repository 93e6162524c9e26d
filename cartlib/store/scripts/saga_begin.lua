-- Cluster checkout, step A (session slot): turn the cart into a pending order, the saga's
-- log, and list it in the bucket's index of pending checkouts, all or nothing. Nothing is
-- reserved here (the stock is in another slot: step B). The cart is emptied, so a second
-- concurrent checkout of the same cart finds it empty: one cart gives at most one order.
-- KEYS[1] cart hash, KEYS[2] new order hash, KEYS[3] the bucket's pending checkouts zset,
-- KEYS[4] the session's declined-checkouts counter, KEYS[5] idempotency record (optional)
-- ARGV[1] order id, ARGV[2] session id, ARGV[3] now (ms), ARGV[4] TTL of the idempotency
-- record (ms), ARGV[5] the request's fingerprint, ARGV[6] how many declined checkouts the
-- counter allows (0: no limit)
-- Returns one of
--   {'replay', record}   the Idempotency-Key was seen: its record as stored
--   {'declined_too_often', ms until the counter expires}   (nothing written)
--   {'empty', ''}                                          (nothing written)
--   {'begun', JSON [{"id", "quantity"}] sorted by id}
local idempotency = KEYS[5]
if idempotency then
  local previous = redis.call('GET', idempotency)
  if previous then
    return {'replay', previous}
  end
end
local declines = tonumber(ARGV[6])
if declines > 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= declines then
  return {'declined_too_often', redis.call('PTTL', KEYS[4])}
end
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then
  return {'empty', ''}
end
local lines = {}
for i = 1, #flat, 2 do
  lines[#lines + 1] = {id = flat[i], quantity = tonumber(flat[i + 1])}
end
table.sort(lines, function(a, b) return a.id < b.id end)
local items = cjson.encode(lines)
redis.call('HSET', KEYS[2], 'session_id', ARGV[2], 'status', 'pending', 'items', items,
  'total_cents', '0', 'created_at', ARGV[3])
if idempotency then
  redis.call('HSET', KEYS[2], 'idempotency_key', idempotency, 'fingerprint', ARGV[5])
  redis.call('SET', idempotency, ARGV[5] .. '|pending:' .. ARGV[1], 'PX', ARGV[4])
end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return {'begun', items}
