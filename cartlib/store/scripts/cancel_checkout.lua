-- Undo a pending checkout (payment declined or unavailable, or never finished): give the
-- reserved stock back, put the lines back into the cart within its caps, and remember the
-- response.
-- KEYS[1] order hash, KEYS[2] pending checkouts zset, KEYS[3] stock hash (on hand),
-- KEYS[4] reserved stock hash, KEYS[5] cart hash, KEYS[6] the session's declined-checkouts
-- counter, KEYS[7] idempotency record (optional)
-- ARGV[1] order id, ARGV[2] final status ('declined', 'error' or 'expired'), ARGV[3] cart
-- TTL (ms), ARGV[4] response to remember ('' forgets the key, so a retry runs anew),
-- ARGV[5] its TTL (s), ARGV[6] how long to keep the cancelled order (s; 0 deletes it),
-- ARGV[7] cap on a line's quantity, ARGV[8] cap on the cart's lines, ARGV[9] how long a
-- declined checkout counts against the session (ms)
-- A line restored into a cart that changed meanwhile is clamped to the line cap, and left
-- out when the cart already holds the most lines it may (the units go back to stock); the
-- response then lists what was left out (body field not_restored).
-- Returns {'cancelled', JSON [{"id", "quantity"}] of units not restored, the response as
-- remembered ('' when ARGV[4] is)}, or {'not_pending'} if the order was no longer pending: a paid order is never cancelled, nor
-- one cancelled twice (complete_checkout has the same guard, so of two attempts racing to
-- finish one order, the first to finish decides).
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then
  return {'not_pending'}
end
local lines = cjson.decode(redis.call('HGET', KEYS[1], 'items'))
release(KEYS[1], KEYS[3], KEYS[4], lines)
local left_out = restore(KEYS[5], lines, tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[3])
local response = with_left_out(ARGV[4], left_out)
if ARGV[2] == 'declined' and redis.call('INCR', KEYS[6]) == 1 then
  redis.call('PEXPIRE', KEYS[6], ARGV[9])
end
if KEYS[7] then
  if response == '' then
    redis.call('DEL', KEYS[7])
  else
    redis.call('SET', KEYS[7], record(KEYS[1], response), 'EX', ARGV[5])
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
