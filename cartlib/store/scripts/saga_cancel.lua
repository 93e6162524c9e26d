-- Cluster checkout, compensation of step A (session slot): cancel a pending order as
-- cancel_checkout does (`cancel` in checkout_prelude), its reservation being in the stock
-- slot: run only after it is released (saga_release), or when it never had one.
-- KEYS[1] order hash, KEYS[2] the bucket's pending checkouts zset, KEYS[3] cart hash,
-- KEYS[4] the session's declined-checkouts counter, KEYS[5] idempotency record (optional)
-- ARGV as `cancel_args` says (final status 'declined', 'error', 'expired', 'out_of_stock',
-- 'insufficient_stock').
-- Returns {'cancelled', JSON [{"id", "quantity"}] of units not restored, the response as
-- remembered} or {'not_pending'} (a paid order is never cancelled, nor one cancelled twice).
local lines = pending_lines(KEYS[1])
if not lines then
  return {'not_pending'}
end
return cancel({order = KEYS[1], pending = KEYS[2], cart = KEYS[3], declines = KEYS[4],
  idempotency = KEYS[5]}, cancel_args(), lines)
