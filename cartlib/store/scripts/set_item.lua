-- Sets a cart line's quantity (0 removes the line); renews the cart's TTL.
-- Removing needs no catalog entry, so a line for a withdrawn item can still be removed.
-- KEYS[1] cart hash; with cart_stock_prelude KEYS[2] stock hash (on hand), KEYS[3] reserved
-- stock hash; with cart_hint_prelude (cluster) the last ARGV is the units available as the
-- process last read them (-1: unknown item)
-- ARGV[1] item id, ARGV[2] quantity (0 .. line cap, checked by the caller),
-- ARGV[3] cap on the number of lines, ARGV[4] cart TTL in milliseconds
-- Returns {'ok', quantity, the cart's number of lines} or {error, detail} as add_item does;
-- O(1) in the cart's size, like add_item.
local quantity = tonumber(ARGV[2])
if quantity == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  local stock = line_stock(ARGV[1])
  if not stock then
    return {'unknown_item', ''}
  end
  if quantity > stock then
    return {'out_of_stock', tostring(stock)}
  end
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
      and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
    return {'too_many_lines', ''}
  end
  redis.call('HSET', KEYS[1], ARGV[1], quantity)
end
-- PEXPIRE on a missing key (the last line was just removed) is a no-op.
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'ok', quantity, redis.call('HLEN', KEYS[1])}
