-- Prelude of the scripts that end a pending checkout (the loader prepends it).

-- Give back the units a pending order holds. An order reserved in the reserved hash (field
-- reserved = '1') only lowers it: its units never left what is on hand, so an admin set
-- meanwhile is not counted twice. An order of the version before (no field) took its units
-- from the stock hash, and gets them back there.
local function release(order_key, stock_key, reserved_key, lines)
  local counted = redis.call('HGET', order_key, 'reserved') == '1'
  for _, line in ipairs(lines) do
    if counted then
      if redis.call('HINCRBY', reserved_key, line.id, -line.quantity) <= 0 then
        redis.call('HDEL', reserved_key, line.id)
      end
    else
      redis.call('HINCRBY', stock_key, line.id, line.quantity)
    end
  end
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

-- A response to remember (JSON {"status_code", "body"}), with the units left out of the cart
-- listed in its body as not_restored; '' stays ''.
local function with_left_out(response, left_out)
  if response == '' or left_out == '[]' then
    return response
  end
  local decoded = cjson.decode(response)
  decoded.body.not_restored = cjson.decode(left_out)
  return cjson.encode(decoded)
end

-- The Idempotency-Key record: the request's fingerprint (kept in the order by
-- begin_checkout), '|', then the response.
local function record(order_key, response)
  local fingerprint = redis.call('HGET', order_key, 'fingerprint')
  if fingerprint then
    return fingerprint .. '|' .. response
  end
  return response
end

