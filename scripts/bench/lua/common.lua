-- Shared by the workload scripts (loaded with dofile, once per wrk thread and
-- once in wrk's main state).
--   * setup(): numbers the threads (tid 1..N) so generated data is unique
--     across threads; init(args) reads args[1] = a run nonce, unique per wrk run.
--   * response(): counts every status per thread (non-2xx included).
--   * done(): prints one machine-readable line for report.py:
--       BENCH_RESULT {"requests":...,"latency_us":{...},"non2xx":...,"statuses":{...}}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

tid = tid or 0
nonce = "x"
statuses = {}
non2xx = 0

function bench_init(args)
  nonce = (args and args[1]) or tostring(os.time())
  math.randomseed(os.time() * 1000 + tid * 7919)
  for _ = 1, 10 do math.random() end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local total_non2xx, all = 0, {}
  for _, t in ipairs(threads) do
    total_non2xx = total_non2xx + (t:get("non2xx") or 0)
    for code, n in pairs(t:get("statuses") or {}) do
      all[code] = (all[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(all) do table.insert(parts, string.format('"%d":%d', code, n)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"non2xx":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    total_non2xx, table.concat(parts, ",")))
end
