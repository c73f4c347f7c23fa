-- wrk script for bench/token_issuance.py: the same GET on every request, as docker repeats it.
--
--   WRK_AUTHORIZATION='Basic …' wrk -t1 -c32 -d5s -s bench/wrk_get.lua URL [-- PREFIX COUNT SUFFIX]
--
-- The Authorization header (if any) comes from the environment, so credentials are not on the
-- command line for other users to read. With PREFIX, COUNT and SUFFIX, request i appends
-- PREFIX .. (i % COUNT) .. SUFFIX to the URL, so that COUNT requests in a row all differ. When done, prints one line of JSON: completed
-- requests, run time, wrk's error counts (a "status" error is a response >= 400) and latency
-- percentiles, all times in microseconds.

local prefix, count, suffix, sent = nil, 0, "", 0

function init(args)
  if args[1] ~= nil then
    prefix, count, suffix = args[1], tonumber(args[2]), args[3]
  end
  local authorization = os.getenv("WRK_AUTHORIZATION")
  if authorization ~= nil and authorization ~= "" then
    wrk.headers["Authorization"] = authorization
  end
end

function request()
  if prefix == nil then
    return wrk.format()
  end
  sent = sent + 1
  return wrk.format(nil, wrk.path .. prefix .. (sent % count) .. suffix)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d,'
      .. ' "status": %d, "timeout": %d}, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
