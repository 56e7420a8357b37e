-- wrk script for bench_scoring.py: POST the trivial scoring request; at the end print the figures as one
-- JSON line (latencies in microseconds) so the benchmark need not parse wrk's rounded text output.
wrk.method = "POST"
wrk.body = '{"data": [21]}'
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
      '"mean_us": %.1f, "max_us": %d, "err_connect": %d, "err_read": %d, "err_write": %d, ' ..
      '"err_status": %d, "err_timeout": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
