-- GET a rotation of URLs (one per line in the file named by BENCH_TARGETS), authenticated,
-- non-2xx counted. The growth mode uses it for its "distinct URLs" runs: thousands of URLs that
-- ask for the same work (e.g. the default list with excludeDepartmentId=<an id that does not
-- exist>), so a response cache keyed by URL cannot answer them from memory.
local common = require("common")

local targets = {}
for line in io.lines(os.getenv("BENCH_TARGETS")) do
  if line ~= "" then targets[#targets + 1] = line end
end
local headers = common.auth_headers()
local idx

setup = common.setup
init = function(args)
  common.init()
  idx = ((bench_tid or 1) - 1) * 7919 % #targets + 1
end
request = function()
  local target = targets[idx]
  idx = idx % #targets + 1
  return wrk.format("GET", target, headers, nil)
end
response = function(status, headers, body) common.count(status) end
done = common.make_done()
