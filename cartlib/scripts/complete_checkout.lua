-- Last step of a paid checkout: mark the order paid, publish it, remember the response.
-- KEYS[1] order hash, KEYS[2] pending checkouts zset, KEYS[3] orders stream,
-- KEYS[4] idempotency record (optional)
-- ARGV[1] order id, ARGV[2] now (ms), ARGV[3] response to remember, ARGV[4] its TTL (s),
-- ARGV[5] approximate stream length cap, ARGV[6] request id
-- Returns 'paid' (also when it already was: a retry of this step whose reply was lost with
-- its connection, e.g. across a failover), or 'not_pending' if the order expired.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'paid' then
  return 'paid'
end
if status ~= 'pending' then
  return 'not_pending'
end
redis.call('HSET', KEYS[1], 'status', 'paid', 'paid_at', ARGV[2])
local order = redis.call('HMGET', KEYS[1], 'session_id', 'items', 'total_cents')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'order_id', ARGV[1],
  'session_id', order[1], 'items', order[2], 'total_cents', order[3], 'request_id', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[4] then
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[4])
end
return 'paid'
