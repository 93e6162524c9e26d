-- Cluster checkout, step A (session slot): turn the cart into a pending order, the saga's
-- log, and list it in the bucket's index of pending checkouts, all or nothing (`begin` in
-- checkout_prelude, as begin_checkout). Nothing is reserved here (the stock is in another
-- slot: step B). The cart is emptied, so a second concurrent checkout of the same cart finds
-- it empty: one cart gives at most one order.
-- KEYS[1] cart hash, KEYS[2] new order hash, KEYS[3] the bucket's pending checkouts zset,
-- KEYS[4] the session's declined-checkouts counter, KEYS[5] idempotency record (optional)
-- ARGV as `begin_args` says.
-- Returns one of
--   {'replay', record}   the Idempotency-Key was seen: its record as stored
--   {'declined_too_often', ms until the counter expires}   (nothing written)
--   {'empty', ''}                                          (nothing written)
--   {'begun', JSON [{"id", "quantity"}] sorted by id}
local reply, items = begin(
  {cart = KEYS[1], order = KEYS[2], pending = KEYS[3], declines = KEYS[4],
    idempotency = KEYS[5]},
  begin_args(),
  function(lines) return cjson.encode(lines), '0' end)
return reply or {'begun', items}
