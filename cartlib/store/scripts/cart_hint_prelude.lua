-- Prelude of the cart scripts in cluster mode: the stock is in another slot, so a line's
-- stock is the figure the process passed as the last ARGV (units available when it last read
-- them; -1: not in the catalog). The authoritative check is the checkout's reservation.
local function line_stock(id)
  local hint = tonumber(ARGV[#ARGV])
  if hint < 0 then
    return nil
  end
  return hint
end

