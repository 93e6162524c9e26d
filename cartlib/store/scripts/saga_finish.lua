-- Cluster checkout, step D (session slot): mark the pending order paid with its priced lines
-- and total, take it out of the bucket's index, remember the response (`mark_paid`, as
-- complete_checkout). Idempotent: an order already paid answers 'paid' again; one cancelled
-- meanwhile is left alone.
-- KEYS[1] order hash, KEYS[2] the bucket's pending checkouts zset, KEYS[3] idempotency
-- record (optional)
-- ARGV[1] order id, ARGV[2] now (ms), ARGV[3] response to remember, ARGV[4] its TTL (s),
-- ARGV[5] priced lines JSON, ARGV[6] total cents
-- Returns {'paid'} or {'not_pending'}.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'paid' then
  -- A write, so that a WAIT after this retry covers the step it repeats.
  redis.call('HSET', KEYS[1], 'confirmed_at', ARGV[2])
  return {'paid'}
end
if status ~= 'pending' then
  return {'not_pending'}
end
mark_paid({order = KEYS[1], pending = KEYS[2], idempotency = KEYS[3]}, ARGV[1], ARGV[2],
  ARGV[3], ARGV[4], {'items', ARGV[5], 'total_cents', ARGV[6]})
return {'paid'}
