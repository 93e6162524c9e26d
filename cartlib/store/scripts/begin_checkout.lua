-- First step of a standalone checkout: reserve the stock of every cart line and turn the
-- cart into a pending order, all or nothing (`begin` and `reserve` in the preludes). The
-- cart is emptied here, so a second concurrent checkout of the same cart finds it empty: one
-- cart gives at most one order.
-- Reserving adds to the reserved hash and leaves the units on hand (the stock hash) alone:
-- they leave it only when the order is paid (complete_checkout), and a cancelled order only
-- lowers the reserved count, so an admin's absolute set of what is on hand, made while the
-- order was pending, is never undone or counted twice.
-- KEYS[1] cart hash, KEYS[2] stock hash (on hand), KEYS[3] reserved stock hash,
-- KEYS[4] catalog hash, KEYS[5] new order hash, KEYS[6] pending checkouts zset,
-- KEYS[7] the session's declined-checkouts counter, KEYS[8] idempotency record (optional)
-- ARGV as `begin_args` says.
-- Returns one of
--   {'replay', record}   the Idempotency-Key was seen: its record as stored (the caller
--                        compares the fingerprint)
--   {'declined_too_often', ms until the counter expires}   (nothing written)
--   {'empty', ''}                                          (nothing written)
--   {'insufficient_stock', JSON [{"id", "requested", "available"}]}   (nothing written)
--   {'reserved', JSON [{"id", "quantity", "price_cents"}], total cents}
local reply, items, total = begin(
  {cart = KEYS[1], order = KEYS[5], pending = KEYS[6], declines = KEYS[7],
    idempotency = KEYS[8]},
  begin_args(),
  function(lines)
    local priced, total_or_short = reserve(KEYS[2], KEYS[3], KEYS[4], lines)
    if not priced then
      return nil, {'insufficient_stock', total_or_short}
    end
    return priced, total_or_short
  end)
return reply or {'reserved', items, total}
