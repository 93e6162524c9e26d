-- Adds units of an item to a cart line, atomically checking the item, its stock, the line
-- cap and the number of lines; renews the cart's TTL.
-- KEYS[1] cart hash; with cart_stock_prelude KEYS[2] stock hash (on hand), KEYS[3] reserved
-- stock hash; with cart_hint_prelude (cluster) the last ARGV is the units available as the
-- process last read them (-1: unknown item)
-- ARGV[1] item id, ARGV[2] units to add, ARGV[3] cap on a line's quantity,
-- ARGV[4] cap on the number of lines, ARGV[5] cart TTL in milliseconds
-- Returns {'ok', the line's new quantity, the cart's number of lines} or {error, detail}
-- with error one of 'unknown_item', 'quantity_cap' (detail: quantity already in the cart),
-- 'out_of_stock' (detail: units available, on hand minus reserved), 'too_many_lines'.
-- Every command here is O(1): an add costs the same in a 500-line cart as in an empty one.
local stock = line_stock(ARGV[1])
if not stock then
  return {'unknown_item', ''}
end
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local wanted = current + tonumber(ARGV[2])
if wanted > tonumber(ARGV[3]) then
  return {'quantity_cap', tostring(current)}
end
if wanted > stock then
  return {'out_of_stock', tostring(stock)}
end
local lines = redis.call('HLEN', KEYS[1])
if current == 0 then
  if lines >= tonumber(ARGV[4]) then
    return {'too_many_lines', ''}
  end
  lines = lines + 1
end
redis.call('HSET', KEYS[1], ARGV[1], wanted)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {'ok', wanted, lines}
