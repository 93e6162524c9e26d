-- Creates or replaces a catalog item and sets the units on hand: every unit not sold yet,
-- those that pending checkouts hold included (they stay in the reserved hash, untouched).
-- KEYS[1] catalog hash, KEYS[2] stock hash (on hand)
-- ARGV[1] item id, ARGV[2] JSON {"name", "price_cents"}, ARGV[3] units on hand,
-- ARGV[4] '1' to leave an existing item untouched (seeding), '0' to replace it
-- Returns 1 if written, 0 if left untouched.
if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
