-- Undo a pending standalone checkout (payment declined or unavailable, or never finished):
-- give the reserved stock back, then cancel the order as saga_cancel does (`cancel` in
-- checkout_prelude): lines back into the cart within its caps, the response remembered.
-- KEYS[1] order hash, KEYS[2] pending checkouts zset, KEYS[3] stock hash (on hand),
-- KEYS[4] reserved stock hash, KEYS[5] cart hash, KEYS[6] the session's declined-checkouts
-- counter, KEYS[7] idempotency record (optional)
-- ARGV as `cancel_args` says (final status 'declined', 'error' or 'expired').
-- Returns {'cancelled', JSON [{"id", "quantity"}] of units not restored, the response as
-- remembered ('' when ARGV[4] is)}, or {'not_pending'} if the order was no longer pending
-- (complete_checkout has the same guard, so of two attempts racing to finish one order, the
-- first to finish decides).
local lines = pending_lines(KEYS[1])
if not lines then
  return {'not_pending'}
end
unreserve(KEYS[4], lines)
return cancel({order = KEYS[1], pending = KEYS[2], cart = KEYS[5], declines = KEYS[6],
  idempotency = KEYS[7]}, cancel_args(), lines)
