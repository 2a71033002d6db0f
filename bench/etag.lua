-- The `etag` mode's workloads (run.py --mode etag), chosen by BENCH_ETAG_KIND:
--   read:   GET the URL given to wrk; with BENCH_IF_NONE_MATCH set, sent as If-None-Match, and
--           then 304 is the expected answer (counted as a success, anything else as a failure).
--   create: POST livechat/department, a new name per request ("zz-etag-<run>-<thread>-<n>", at
--           the end of the name order); with BENCH_IDEMPOTENCY=1 each carries its own
--           Idempotency-Key, so every request is a first one (the cost of claiming and storing).
local common = require("common")

local kind = os.getenv("BENCH_ETAG_KIND") or "read"
local if_none_match = os.getenv("BENCH_IF_NONE_MATCH") or ""
local with_key = os.getenv("BENCH_IDEMPOTENCY") == "1"
local run_id = os.getenv("BENCH_RUN") or "0"
local expected = if_none_match ~= "" and 304 or nil
local tid, n

setup = common.setup

init = function(args)
  common.init()
  tid = bench_tid or 1
  n = 0
  if kind == "read" then
    local extra = {}
    if if_none_match ~= "" then extra["If-None-Match"] = if_none_match end
    wrk.headers = common.auth_headers(extra)
  end
end

request = function()
  if kind == "read" then
    return wrk.format("GET")
  end
  n = n + 1
  local name = string.format("zz-etag-%s-%d-%d", run_id, tid, n)
  local headers = common.auth_headers({ ["Content-Type"] = "application/json" })
  if with_key then headers["Idempotency-Key"] = name end
  local body = string.format(
    '{"department":{"name":"%s","email":"etag@bench.example","enabled":true,"showOnRegistration":true}}', name)
  return wrk.format("POST", "/api/v1/livechat/department", headers, body)
end

response = function(status, headers, body)
  if not expected then
    common.count(status)
    return
  end
  bench_statuses[status] = (bench_statuses[status] or 0) + 1
  if status ~= expected then bench_non2xx = bench_non2xx + 1 end -- counted as a failure
end

done = common.make_done()
