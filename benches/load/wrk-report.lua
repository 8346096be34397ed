-- Shared by every wrk run: print one JSON line with the run's figures when it ends.
-- Non-2xx answers count as errors (wrk counts them but does not fail on them).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, "p999_us": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0), latency:percentile(99.9),
    e.connect, e.read, e.write, e.timeout, e.status))
end
