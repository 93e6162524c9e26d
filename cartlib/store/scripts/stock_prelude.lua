-- Prelude of the scripts that read stock (the loader prepends it). The stock hash holds the
-- units on hand (not sold yet, reserved ones included), the reserved hash the units that
-- pending checkouts hold; what can be bought is the difference, never below 0.
local function available(stock_key, reserved_key, id)
  local on_hand = redis.call('HGET', stock_key, id)
  if not on_hand then
    return nil
  end
  local left = tonumber(on_hand) - tonumber(redis.call('HGET', reserved_key, id) or '0')
  if left < 0 then
    return 0
  end
  return left
end

