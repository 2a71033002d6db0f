-- The concurrent-writes workload. Run with as many wrk threads as connections (-tN -cN): each
-- thread owns one connection, so its requests are strictly sequential (the next one is built
-- only after the previous answer). Each thread repeats: 1 create, then 2 updates.
--   create: POST livechat/department, name "bw-t<thread>-<attempt>" (unique).
--   update: PUT livechat/department/<hot id>, body {"department": {"bw_t<thread>": v}}: a merge
--           of this thread's own custom field into one of a few HOT departments that every thread
--           updates; v = (the last value this thread got a 2xx for, on that department) + 1.
-- A server that loses updates (an unserialised read-modify-write of the custom fields) drops
-- other threads' keys or keeps older values. run.py compares, after the run, what each thread
-- counted as 2xx with what the database holds. A request that never got an answer (the one in
-- flight when wrk stops, or one cut by a socket error) is "uncertain": either outcome is accepted.
-- (wrk also calls request() once on the first thread's state to check the script, and never sends
-- that request: it shows up as one uncertain create of thread 1, "bw-t1-1".)
-- With BENCH_RUN set (several runs on one database), names are "bw-r<run>-t<thread>-<attempt>".
local common = require("common")

local HOT = {}
for id in string.gmatch(os.getenv("BENCH_HOT_IDS") or "", "[^,]+") do HOT[#HOT + 1] = id end
local headers = common.auth_headers({ ["Content-Type"] = "application/json" })
local name_prefix = os.getenv("BENCH_RUN") and ("bw-r" .. os.getenv("BENCH_RUN") .. "-t") or "bw-t"
local tid, attempts

setup = common.setup

init = function(args)
  common.init()
  tid = bench_tid or 1
  attempts = 0
  -- Globals read back by done() through thread:get():
  created = 0              -- creates answered 2xx
  create_failed = {}       -- names of creates answered non-2xx (must not exist)
  uncertain_names = {}     -- names of creates cut off by a socket error (may or may not exist)
  counters = {}            -- counters[j]: the last value answered 2xx for HOT[j]
  uncertain_last = {}      -- uncertain_last[j]: an unanswered update value newer than counters[j] (0: none)
  updates_ok, updates_failed = 0, 0
  for j = 1, #HOT do counters[j] = 0; uncertain_last[j] = 0 end
  in_flight_kind = nil     -- the request sent and not answered yet (cut off when wrk stops)
end

request = function()
  if in_flight_kind == "create" then        -- no answer to the previous request (socket error)
    uncertain_names[#uncertain_names + 1] = in_flight_name
  elseif in_flight_kind == "update" then
    uncertain_last[in_flight_j] = in_flight_value
  end
  attempts = attempts + 1
  if attempts % 3 == 1 then
    in_flight_kind, in_flight_name = "create", string.format("%s%d-%d", name_prefix, tid, attempts)
    local body = string.format(
      '{"department":{"name":"%s","email":"writes@bench.example","enabled":true,"showOnRegistration":true}}',
      in_flight_name)
    return wrk.format("POST", "/api/v1/livechat/department", headers, body)
  end
  local j = attempts % #HOT + 1
  in_flight_kind, in_flight_j, in_flight_value = "update", j, counters[j] + 1
  local body = string.format('{"department":{"bw_t%d":%d}}', tid, in_flight_value)
  return wrk.format("PUT", "/api/v1/livechat/department/" .. HOT[j], headers, body)
end

response = function(status, hdrs, body)
  common.count(status)
  local ok = status >= 200 and status <= 299
  if in_flight_kind == "create" then
    if ok then created = created + 1 else create_failed[#create_failed + 1] = in_flight_name end
  elseif in_flight_kind == "update" then
    if ok then
      counters[in_flight_j] = in_flight_value
      updates_ok = updates_ok + 1
      if uncertain_last[in_flight_j] <= in_flight_value then uncertain_last[in_flight_j] = 0 end
    else
      updates_failed = updates_failed + 1
    end
  end
  in_flight_kind, in_flight_name, in_flight_j, in_flight_value = nil, nil, nil, nil
end

done = common.make_done(function(t)
  return {
    tid = t:get("bench_tid"),
    created = t:get("created"),
    create_failed = t:get("create_failed"),
    uncertain_names = t:get("uncertain_names"),
    counters = t:get("counters"),
    uncertain_last = t:get("uncertain_last"),
    updates_ok = t:get("updates_ok"),
    updates_failed = t:get("updates_failed"),
    in_flight_kind = t:get("in_flight_kind"),
    in_flight_name = t:get("in_flight_name"),
    in_flight_j = t:get("in_flight_j"),
    in_flight_value = t:get("in_flight_value"),
  }
end)
