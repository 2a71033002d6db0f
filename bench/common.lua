-- Shared by the bench/*.lua wrk scripts (loaded with require("common"); run.py puts bench/ on
-- LUA_PATH). It provides:
--   * the auth headers (X-User-Id / X-Auth-Token from BENCH_USER_ID / BENCH_TOKEN),
--   * per-thread status counting (every response that is not 2xx is counted as non-2xx),
--   * done(): one line "BENCH_RESULT {json}" with requests, duration, latency percentiles,
--     wrk's socket errors, the non-2xx count and a status histogram, for run.py to parse.
-- wrk runs setup()/done() in the main Lua state and init()/request()/response() in one Lua
-- state per thread; per-thread counters are globals read back with thread:get().

local M = {}
local threads = {}

function M.auth_headers(extra)
  local h = {}
  local uid, tok = os.getenv("BENCH_USER_ID"), os.getenv("BENCH_TOKEN")
  if uid and uid ~= "" and tok and tok ~= "" then
    h["X-User-Id"] = uid
    h["X-Auth-Token"] = tok
  end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

function M.setup(thread)
  table.insert(threads, thread)
  thread:set("bench_tid", #threads)
end

function M.init()
  bench_non2xx = 0
  bench_statuses = {}
end

function M.count(status)
  bench_statuses[status] = (bench_statuses[status] or 0) + 1
  if status < 200 or status > 299 then
    bench_non2xx = bench_non2xx + 1
  end
end

-- A small JSON encoder: numbers, strings, booleans and tables (arrays when keyed 1..n).
local function encode(v)
  local t = type(v)
  if v == nil then return "null"
  elseif t == "boolean" then return v and "true" or "false"
  elseif t == "number" then
    if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "table" then
    local n = #v
    local is_array = true
    for k, _ in pairs(v) do
      if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then is_array = false; break end
    end
    local parts = {}
    if is_array then
      for i = 1, n do parts[#parts + 1] = encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for k, val in pairs(v) do parts[#parts + 1] = encode(tostring(k)) .. ":" .. encode(val) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return '"<' .. t .. '>"'
end
M.encode = encode

-- per_thread(thread) may return a table of extra per-thread data (bench/writes.lua does).
function M.make_done(per_thread)
  return function(summary, latency, requests)
    local non2xx, statuses, extra = 0, {}, {}
    for _, t in ipairs(threads) do
      non2xx = non2xx + (t:get("bench_non2xx") or 0)
      for code, n in pairs(t:get("bench_statuses") or {}) do
        statuses[tostring(code)] = (statuses[tostring(code)] or 0) + n
      end
      if per_thread then extra[#extra + 1] = per_thread(t) end
    end
    local e = summary.errors
    local result = {
      requests = summary.requests,
      duration_us = summary.duration,
      bytes = summary.bytes,
      non2xx = non2xx,
      statuses = statuses,
      errors = { connect = e.connect, read = e.read, write = e.write, status = e.status, timeout = e.timeout },
      latency_us = {
        min = latency.min, mean = latency.mean, max = latency.max, stdev = latency.stdev,
        p50 = latency:percentile(50), p90 = latency:percentile(90),
        p99 = latency:percentile(99), p999 = latency:percentile(99.9),
      },
      threads = extra,
    }
    io.write("BENCH_RESULT " .. encode(result) .. "\n")
  end
end

return M
