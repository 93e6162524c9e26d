-- GET /cart: read a cart per request, going round the carts (one per token).
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local bench = dofile(here .. "common.lua")

local headers = {}

function init(args)
  bench.load()
end

function request()
  headers["Authorization"] = bench.bearer(bench.next_index())
  return wrk.format("GET", "/cart", headers, nil)
end
