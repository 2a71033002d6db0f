-- One URL (the one given to wrk on the command line), authenticated, non-2xx counted.
-- Used for the `list` and `get` workloads and every growth query, against the service and
-- against the ceiling app (which ignores the headers).
local common = require("common")

wrk.headers = common.auth_headers()
setup = common.setup
init = function(args) common.init() end
response = function(status, headers, body) common.count(status) end
done = common.make_done()
