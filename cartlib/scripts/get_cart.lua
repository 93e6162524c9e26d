-- KEYS[1] cart hash
-- Returns the cart lines as JSON.
return cart_lines_json(KEYS[1])
