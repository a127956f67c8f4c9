-- wrk script for bench/enqueue.py: POST send-message with an Idempotency-Key per request.
--
-- BENCH_MODE=unique  every request carries a new key (a new outbox item each time)
-- BENCH_MODE=repeat  keys cycle through BENCH_REPEAT_KEYS keys (replays of queued items)
-- Requests go round-robin over BENCH_INSTANCES instances named bench00, bench01, ...
-- The body is a pure function of the key, so a repeated key always carries the same payload.

local mode = os.getenv("BENCH_MODE") or "unique"
local prefix = os.getenv("BENCH_PREFIX") or tostring(os.time())
local instances = tonumber(os.getenv("BENCH_INSTANCES") or "20")
local repeat_keys = tonumber(os.getenv("BENCH_REPEAT_KEYS") or "1000")
local api_key = os.getenv("BENCH_API_KEY") or ""
local counter = 0

request = function()
  counter = counter + 1
  local n = counter
  if mode == "repeat" then
    n = counter % repeat_keys
  end
  local key = prefix .. ":" .. n
  local path = string.format("/instances/bench%02d/client/action/send-message", n % instances)
  local body = string.format('{"chatId":"2010%08d@c.us","message":"benchmark message %s"}', n % 100000000, key)
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. api_key,
    ["Idempotency-Key"] = key,
  }
  return wrk.format("POST", path, headers, body)
end

done = function(summary, latency, requests)
  -- One machine-readable line for bench/enqueue.py (wrk's own summary is printed above it).
  io.write(string.format("BENCH_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "errors_connect=%d errors_read=%d errors_write=%d errors_timeout=%d errors_status=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status))
end
