-- wrk script: POST the benchmark body with its headers; set by bench/harness.py through the
-- environment (BENCH_BODY, BENCH_AUTH). An empty BENCH_BODY means a plain GET.
local body = os.getenv("BENCH_BODY") or ""
local auth = os.getenv("BENCH_AUTH") or ""

if body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
if auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end
