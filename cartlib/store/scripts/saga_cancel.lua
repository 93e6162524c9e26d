-- Cluster checkout, compensation of step A (session slot): cancel a pending order, put its
-- lines back into the cart (within the cart's caps), take it out of the bucket's index.
-- Run only after its reservation is released (saga_release), or when it never had one.
-- KEYS[1] order hash, KEYS[2] the bucket's pending checkouts zset, KEYS[3] cart hash,
-- KEYS[4] the session's declined-checkouts counter, KEYS[5] idempotency record (optional)
-- ARGV[1] order id, ARGV[2] final status ('declined', 'error', 'expired', 'out_of_stock',
-- 'insufficient_stock'), ARGV[3] cart TTL (ms), ARGV[4] response to remember ('' forgets
-- the key, so a retry runs anew), ARGV[5] its TTL (s), ARGV[6] how long to keep the
-- cancelled order (s; 0 deletes it), ARGV[7] cap on a line's quantity, ARGV[8] cap on the
-- cart's lines, ARGV[9] how long a declined checkout counts against the session (ms)
-- Returns {'cancelled', JSON [{"id", "quantity"}] of units not restored, the response as
-- remembered} or {'not_pending'} (a paid order is never cancelled, nor one cancelled twice).
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then
  return {'not_pending'}
end
local lines = cjson.decode(redis.call('HGET', KEYS[1], 'items'))
local left_out = restore(KEYS[3], lines, tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[3])
local response = with_left_out(ARGV[4], left_out)
if ARGV[2] == 'declined' and redis.call('INCR', KEYS[4]) == 1 then
  redis.call('PEXPIRE', KEYS[4], ARGV[9])
end
if KEYS[5] then
  if response == '' then
    redis.call('DEL', KEYS[5])
  else
    redis.call('SET', KEYS[5], record(KEYS[1], response), 'EX', ARGV[5])
  end
end
if tonumber(ARGV[6]) > 0 then
  redis.call('HSET', KEYS[1], 'status', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
else
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
return {'cancelled', left_out, response}
