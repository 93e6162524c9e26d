-- Prelude of the cart scripts in standalone and Sentinel mode (after stock_prelude): a line's
-- stock is read from the stock hashes, KEYS[2] (on hand) and KEYS[3] (reserved), exactly.
local function line_stock(id)
  return available(KEYS[2], KEYS[3], id)
end

