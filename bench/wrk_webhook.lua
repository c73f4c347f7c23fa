-- wrk script for bench/ingest.py: POSTs registry notification envelopes to the webhook.
--
--   WEBHOOK_AUTHORIZATION='Bearer …' wrk -t1 -c16 -d5s -s bench/wrk_webhook.lua URL -- BODIES
--
-- BODIES holds one envelope per line (JSON has no raw newlines); each request sends the next
-- one, starting again at the first after the last. The secret comes from the environment, so
-- it is not on the command line for other users to read. When done, prints one line of JSON:
-- completed requests, run time, wrk's error counts (a "status" error is a response >= 400)
-- and latency percentiles, all times in microseconds.

local bodies, count, sent = {}, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    count = count + 1
    bodies[count] = line
  end
  if count == 0 then
    error("no envelopes in " .. args[1])
  end
  wrk.headers["Content-Type"] = "application/vnd.docker.distribution.events.v1+json"
  wrk.headers["Authorization"] = os.getenv("WEBHOOK_AUTHORIZATION")
end

function request()
  sent = sent % count + 1
  return wrk.format("POST", nil, nil, bodies[sent])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d,'
      .. ' "status": %d, "timeout": %d}, "p50_us": %d, "p95_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency.max))
end
