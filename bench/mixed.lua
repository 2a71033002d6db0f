-- The `mixed` workload: 90% reads over random pages, filters and ids, 10% writes (create,
-- update, agents upsert), all authenticated. run.py writes the request mix (a Lua file that
-- sets MIX) and passes its path in BENCH_MIXED_DATA; each thread walks the mix from its own
-- starting point, so the service and the ceiling see the same sequence of requests.
local common = require("common")

dofile(os.getenv("BENCH_MIXED_DATA"))  -- defines MIX = { {m=, p=, k=, a=}, ... }

local read_headers = common.auth_headers()
local write_headers = common.auth_headers({ ["Content-Type"] = "application/json" })
local idx, sent, tid

setup = common.setup

init = function(args)
  common.init()
  tid = bench_tid or 1
  idx = ((tid - 1) * 7919) % #MIX + 1
  sent = 0
end

request = function()
  local r = MIX[idx]
  idx = idx % #MIX + 1
  sent = sent + 1
  if r.k == "read" then
    return wrk.format("GET", r.p, read_headers, nil)
  end
  local body
  if r.k == "create" then
    -- "zz…" sorts after every seeded name, so creates do not shift the pages being read.
    body = string.format(
      '{"department":{"name":"zz bench mixed %d-%d","email":"mixed@bench.example","enabled":true,"showOnRegistration":true}}',
      tid, sent)
  elseif r.k == "update" then
    body = string.format('{"department":{"description":"bench update %d-%d"}}', tid, sent)
  else -- agents upsert
    body = string.format('{"upsert":[{"agentId":"%s","count":%d,"order":0}],"remove":[]}', r.a, sent % 7)
  end
  return wrk.format(r.m, r.p, write_headers, body)
end

response = function(status, headers, body) common.count(status) end
done = common.make_done()
