-- Shared by the bench scripts, each of which loads it with dofile():
-- the data files, each wrk thread's share of the requests, and the results as one JSON
-- line printed by done(). Nothing here depends on the scenario.
--
-- Environment (set by bench/run.py; see bench/README.md):
--   BENCH_TOKENS   file with one session token per line: one cart per token
--   BENCH_ITEMS    file with one item id per line (scripts that send an item)
--   BENCH_LINES    how many of those items each cart cycles over (default: all)
--   BENCH_THREADS  the -t given to wrk (default 1)

local bench = {}

function bench.read_lines(path)
  local lines = {}
  if path == nil or path == "" then
    return lines
  end
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    if line ~= "" then
      lines[#lines + 1] = line
    end
  end
  file:close()
  return lines
end

-- In each thread's Lua state: the data, and the counter of requests this thread made.
function bench.load()
  tokens = bench.read_lines(os.getenv("BENCH_TOKENS"))
  assert(#tokens > 0, "BENCH_TOKENS names no tokens")
  items = bench.read_lines(os.getenv("BENCH_ITEMS"))
  lines_per_cart = tonumber(os.getenv("BENCH_LINES") or "") or #items
  thread_count = tonumber(os.getenv("BENCH_THREADS") or "") or 1
  made = 0
  wrapped = 0
end

-- The index of this request among all threads' requests: thread t of T makes requests
-- t, t + T, t + 2T, ... so that threads never share a cart at the same step.
function bench.next_index()
  local index = made * thread_count + (thread_index or 0)
  made = made + 1
  return index
end

function bench.bearer(index)
  return "Bearer " .. tokens[index % #tokens + 1]
end

-- In the main Lua state: number the threads, and keep them to read their counters in done():
-- "sent" counts the requests made, including those still in flight when wrk stopped
-- (which the server still serves); summary.requests counts only completed ones.
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

local QUANTILES = { 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99 }

function done(summary, latency, requests)
  local total_wrapped, sent = 0, 0
  for _, thread in ipairs(threads) do
    total_wrapped = total_wrapped + (thread:get("wrapped") or 0)
    sent = sent + (thread:get("made") or 0)
  end
  local points = {}
  for i, q in ipairs(QUANTILES) do
    points[i] = string.format("[%s,%d]", tostring(q), latency:percentile(q))
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"sent":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":[%s]},' ..
      '"data_wrapped":%d}\n',
    summary.requests, sent, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(points, ","),
    total_wrapped
  ))
end

return bench
