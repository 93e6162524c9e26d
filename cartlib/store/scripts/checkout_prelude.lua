-- Prelude of the checkout scripts on a session's keys (the loader prepends it): the cart,
-- the pending order, the session's decline counter and the Idempotency-Key record. Shared by
-- the standalone steps (begin_checkout, complete_checkout, cancel_checkout) and the cluster
-- saga's session-slot steps (saga_begin, saga_finish, saga_cancel).

-- The first step of every checkout, all or nothing: refuse a key seen before (its record
-- as stored), a session over its decline limit, an empty cart; else turn the cart into a
-- pending order listed in the pending index, the key's record saying
-- '<fingerprint>|pending:<order id>' for as long as keys are remembered (the order names its
-- record and keeps the fingerprint, so the steps that finish it keep it too).
-- k: {cart, order, pending, declines, idempotency (nil without a key)}
-- a: {order_id, session_id, now, idempotency_ttl_ms, fingerprint, max_declines (0: none)}
-- `price(lines)` ({id, quantity} sorted by id) returns the items and total to store, or nil
-- and the reply refusing the checkout (nothing written).
-- Returns the reply ending the script, or nil, items and total.
local function begin(k, a, price)
  if k.idempotency then
    local previous = redis.call('GET', k.idempotency)
    if previous then
      return {'replay', previous}
    end
  end
  local limit = tonumber(a.max_declines)
  if limit > 0 and tonumber(redis.call('GET', k.declines) or '0') >= limit then
    return {'declined_too_often', redis.call('PTTL', k.declines)}
  end
  local flat = redis.call('HGETALL', k.cart)
  if #flat == 0 then
    return {'empty', ''}
  end
  local lines = {}
  for i = 1, #flat, 2 do
    lines[#lines + 1] = {id = flat[i], quantity = tonumber(flat[i + 1])}
  end
  table.sort(lines, function(x, y) return x.id < y.id end)
  local items, total = price(lines)
  if not items then
    return total
  end
  redis.call('HSET', k.order, 'session_id', a.session_id, 'status', 'pending', 'items', items,
    'total_cents', total, 'created_at', a.now)
  if k.idempotency then
    redis.call('HSET', k.order, 'idempotency_key', k.idempotency, 'fingerprint', a.fingerprint)
    redis.call('SET', k.idempotency, a.fingerprint .. '|pending:' .. a.order_id,
      'PX', a.idempotency_ttl_ms)
  end
  redis.call('DEL', k.cart)
  redis.call('ZADD', k.pending, a.now, a.order_id)
  return nil, items, total
end

-- A pending order's lines, or nil if it is not pending (a paid order is never cancelled nor
-- paid twice, a cancelled one never paid: of two attempts racing to finish one order, the
-- first to finish decides).
local function pending_lines(order_key)
  if redis.call('HGET', order_key, 'status') ~= 'pending' then
    return nil
  end
  return cjson.decode(redis.call('HGET', order_key, 'items'))
end

-- Put an order's lines back into its cart, which may have changed meanwhile: each line is
-- clamped to the line cap, and a line that would exceed the line-count cap is left out.
-- Returns the units not restored, JSON [{"id", "quantity"}] ('[]' when everything fit).
local function restore(cart_key, lines, max_quantity, max_lines, ttl_ms)
  local left_out = {}
  local count = redis.call('HLEN', cart_key)
  for _, line in ipairs(lines) do
    local current = tonumber(redis.call('HGET', cart_key, line.id) or '0')
    local room = max_quantity - current
    if current == 0 and count >= max_lines then
      room = 0
    end
    local put = math.min(line.quantity, math.max(room, 0))
    if put > 0 then
      if current == 0 then
        count = count + 1
      end
      redis.call('HSET', cart_key, line.id, current + put)
    end
    if put < line.quantity then
      left_out[#left_out + 1] = {id = line.id, quantity = line.quantity - put}
    end
  end
  if count > 0 then
    redis.call('PEXPIRE', cart_key, ttl_ms)
  end
  if #left_out == 0 then
    return '[]'
  end
  return cjson.encode(left_out)
end

-- The Idempotency-Key record: the request's fingerprint (kept in the order by begin), '|',
-- then the response.
local function remember(order_key, idempotency, response, ttl_seconds)
  local fingerprint = redis.call('HGET', order_key, 'fingerprint')
  redis.call('SET', idempotency, fingerprint .. '|' .. response, 'EX', ttl_seconds)
end

-- Cancel a pending order whose reservation is given back (or never was): its lines back into
-- the cart within its caps, a decline counted against the session, the response remembered
-- for its key with the units left out of the cart listed in its body as not_restored ('' as
-- the response forgets the key, so a retry runs anew), the order kept for reconciling or
-- deleted, out of the pending index.
-- k: {order, pending, cart, declines, idempotency (nil without a key)}
-- a: {order_id, status, response, response_ttl, keep_seconds (0 deletes the order),
--     cart_ttl_ms, max_quantity, max_lines, decline_window_ms}
-- Returns {'cancelled', JSON [{"id", "quantity"}] of units not restored, the response as
-- remembered}.
local function cancel(k, a, lines)
  local left_out = restore(k.cart, lines, tonumber(a.max_quantity), tonumber(a.max_lines),
    a.cart_ttl_ms)
  local response = a.response
  if response ~= '' and left_out ~= '[]' then
    local decoded = cjson.decode(response)
    decoded.body.not_restored = cjson.decode(left_out)
    response = cjson.encode(decoded)
  end
  if a.status == 'declined' and redis.call('INCR', k.declines) == 1 then
    redis.call('PEXPIRE', k.declines, a.decline_window_ms)
  end
  if k.idempotency then
    if response == '' then
      redis.call('DEL', k.idempotency)
    else
      remember(k.order, k.idempotency, response, a.response_ttl)
    end
  end
  if tonumber(a.keep_seconds) > 0 then
    redis.call('HSET', k.order, 'status', a.status)
    redis.call('EXPIRE', k.order, a.keep_seconds)
  else
    redis.call('DEL', k.order)
  end
  redis.call('ZREM', k.pending, a.order_id)
  return {'cancelled', left_out, response}
end

-- Mark a pending order paid (`fields`: more fields to set), take it out of the pending index
-- and remember its response for its key.
local function mark_paid(k, order_id, now, response, response_ttl, fields)
  redis.call('HSET', k.order, 'status', 'paid', 'paid_at', now, unpack(fields))
  redis.call('ZREM', k.pending, order_id)
  if k.idempotency then
    remember(k.order, k.idempotency, response, response_ttl)
  end
end

-- The cancel arguments that cancel_checkout and saga_cancel share: ARGV[1] order id,
-- ARGV[2] final status, ARGV[3] cart TTL (ms), ARGV[4] response to remember ('' forgets the
-- key), ARGV[5] its TTL (s), ARGV[6] how long to keep the cancelled order (s; 0 deletes it),
-- ARGV[7] cap on a line's quantity, ARGV[8] cap on the cart's lines, ARGV[9] how long a
-- declined checkout counts against the session (ms).
local function cancel_args()
  return {order_id = ARGV[1], status = ARGV[2], cart_ttl_ms = ARGV[3], response = ARGV[4],
    response_ttl = ARGV[5], keep_seconds = ARGV[6], max_quantity = ARGV[7],
    max_lines = ARGV[8], decline_window_ms = ARGV[9]}
end

-- The begin arguments that begin_checkout and saga_begin share: ARGV[1] order id, ARGV[2]
-- session id, ARGV[3] now (ms), ARGV[4] TTL of the idempotency record (ms), ARGV[5] the
-- request's fingerprint, ARGV[6] how many declined checkouts the counter allows (0: no limit).
local function begin_args()
  return {order_id = ARGV[1], session_id = ARGV[2], now = ARGV[3],
    idempotency_ttl_ms = ARGV[4], fingerprint = ARGV[5], max_declines = ARGV[6]}
end

