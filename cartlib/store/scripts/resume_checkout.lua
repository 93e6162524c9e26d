-- A retry of an Idempotency-Key whose record says 'pending:<order id>' (after its request's
-- fingerprint and '|'): look at that order again, record and order together (the steps that
-- finish an order replace the record in the same script, so the two always agree).
-- KEYS[1] idempotency record, KEYS[2] order hash
-- ARGV[1] the record's value as read, '<fingerprint>|pending:<order id>'
-- ARGV[2] '1': write the record again (the same value) if the order is still pending, so
-- that a WAIT pipelined after this confirms everything the master held before it, the
-- order's first step included (cluster: it must be on a replica before its stock is touched)
-- Returns one of
--   {'pending', JSON [{"id", "quantity", "price_cents"}], total cents}   still to be paid
--   {'replay', record}   the checkout has finished since: its record, with the response
--   {'forgotten'}        the record is gone: the checkout ended with nothing to remember
--                        (the payment service was unavailable; the cart is restored)
--   {'gone', status}     the order is no longer pending, yet its record still says so
local record = redis.call('GET', KEYS[1])
if not record then
  return {'forgotten'}
end
if record ~= ARGV[1] then
  return {'replay', record}
end
local order = redis.call('HMGET', KEYS[2], 'status', 'items', 'total_cents')
if order[1] ~= 'pending' then
  return {'gone', order[1] or 'missing'}
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[1], record, 'KEEPTTL')
end
return {'pending', order[2], order[3]}
