-- POST /cart/items: one unit of an item into a cart per request (the floor gets the very
-- same requests). Request g goes to cart g mod C, item (g div C) mod L, where C is the
-- number of tokens and L = BENCH_LINES, the lines every cart already holds: carts never
-- grow, consecutive requests hit different carts, and a line gains one unit only every
-- C * L requests, far from the 99-unit cap of a line during a run.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local bench = dofile(here .. "common.lua")

local headers = { ["Content-Type"] = "application/json" }
local bodies = {}

function init(args)
  bench.load()
  assert(lines_per_cart >= 1 and lines_per_cart <= #items, "BENCH_LINES out of range")
  for i = 1, lines_per_cart do
    bodies[i] = '{"item":{"id":"' .. items[i] .. '"},"quantity":1}'
  end
end

function request()
  local index = bench.next_index()
  headers["Authorization"] = bench.bearer(index)
  local line = math.floor(index / #tokens) % lines_per_cart
  return wrk.format("POST", "/cart/items", headers, bodies[line + 1])
end
