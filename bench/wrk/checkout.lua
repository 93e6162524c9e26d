-- POST /checkout: each request checks out a different, prefilled cart (one per token),
-- so every request orders a full cart. A run that needs more carts than the file holds
-- goes round again: those checkouts find an empty cart (400, counted as errors) and the
-- count is reported as "data_wrapped", so the harness can say it prefilled too few.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local bench = dofile(here .. "common.lua")

local headers = { ["Content-Type"] = "application/json" }
local body = '{"payment":{"token":"tok_visa"}}'

function init(args)
  bench.load()
end

function request()
  local index = bench.next_index()
  if index >= #tokens then
    wrapped = wrapped + 1
  end
  headers["Authorization"] = bench.bearer(index)
  return wrk.format("POST", "/checkout", headers, body)
end
