-- Undo a pending checkout (payment declined or unavailable, or never finished): give the
-- stock back, put the lines back into the cart, and remember the response.
-- KEYS[1] order hash, KEYS[2] pending checkouts zset, KEYS[3] stock hash, KEYS[4] cart hash,
-- KEYS[5] idempotency record (optional)
-- ARGV[1] order id, ARGV[2] final status ('declined', 'error' or 'expired'), ARGV[3] cart
-- TTL (ms), ARGV[4] response to remember ('' forgets the key, so a retry runs anew),
-- ARGV[5] its TTL (s), ARGV[6] how long to keep the cancelled order (s)
-- Returns 'cancelled', or 'not_pending' if the order was no longer pending: a paid order is
-- never cancelled, nor one cancelled twice (complete_checkout has the same guard, so of two
-- attempts racing to finish one order, the first to finish decides).
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then
  return 'not_pending'
end
local lines = cjson.decode(redis.call('HGET', KEYS[1], 'items'))
for _, line in ipairs(lines) do
  redis.call('HINCRBY', KEYS[3], line.id, line.quantity)
  redis.call('HINCRBY', KEYS[4], line.id, line.quantity)
end
redis.call('PEXPIRE', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[1], 'status', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[5] then
  if ARGV[4] == '' then
    redis.call('DEL', KEYS[5])
  else
    redis.call('SET', KEYS[5], ARGV[4], 'EX', ARGV[5])
  end
end
return 'cancelled'
