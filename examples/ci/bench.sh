#!/usr/bin/env bash
# Serve the checkout's model with MLServer behind a costwarden gateway and bench it, one run per
# results file, interleaved with another checkout's when two are given:
#
#   examples/ci/bench.sh OUT_DIR CHECKOUT [OTHER_CHECKOUT] [PAIRS]
#
# writes OUT_DIR/a-<k>.json for CHECKOUT and OUT_DIR/b-<k>.json for OTHER_CHECKOUT, k = 1..PAIRS
# (default 5), alternating a, b, a, b... so the runner's noise falls on both sides alike. Each
# checkout's examples/iris/model is served by its own MLServer and gateway. Needs `costwarden`
# on PATH and .venv-mlserver (scripts/setup-mlserver) in each checkout.
set -euo pipefail

OUT="${1:?usage: bench.sh OUT_DIR CHECKOUT [OTHER_CHECKOUT] [PAIRS]}"
CHECKOUTS=("${2:?usage: bench.sh OUT_DIR CHECKOUT [OTHER_CHECKOUT] [PAIRS]}")
[[ -n "${3:-}" ]] && CHECKOUTS+=("$3")
PAIRS="${4:-5}"
REQUESTS="${BENCH_REQUESTS:-50}"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export CI_KEY="cw_ci_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
PIDS=()
TMPS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for dir in "${TMPS[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # URL SECONDS
  "$PYTHON" - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        if urllib.request.urlopen(url, timeout=2).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"{url} was not ready in time")
PY
}

# Both checkouts' model servers start at once (each takes seconds to load), then both gateways.
ML_PORTS=()
for checkout in "${CHECKOUTS[@]}"; do
  dir="$(mktemp -d)"; TMPS+=("$dir")
  ml_port="$(free_port)"; ML_PORTS+=("$ml_port")
  TMPDIR="$dir" "$checkout/examples/iris/serve.sh" "$ml_port" "$(free_port)" "$(free_port)" >"$dir/mlserver.log" 2>&1 &
  PIDS+=("$!")
done
GATEWAYS=()
for i in "${!CHECKOUTS[@]}"; do
  gw_port="$(free_port)"
  ML_URL="http://127.0.0.1:${ML_PORTS[$i]}" CI_DIR="${TMPS[$i]}" \
    costwarden serve --config "$HERE/costwarden-ci.yaml" --port "$gw_port" >"${TMPS[$i]}/gateway.log" 2>&1 &
  PIDS+=("$!")
  GATEWAYS+=("http://127.0.0.1:$gw_port")
done
for i in "${!CHECKOUTS[@]}"; do
  wait_for "http://127.0.0.1:${ML_PORTS[$i]}/v2/models/iris/ready" 120
  wait_for "${GATEWAYS[$i]}/readyz" 30
done

sides=(a b)
for k in $(seq 1 "$PAIRS"); do
  for i in "${!GATEWAYS[@]}"; do
    ML_URL=http://127.0.0.1:9 CI_DIR="${TMPS[0]}" costwarden bench "${GATEWAYS[$i]}" -d iris --protocol v2 \
      --config "$HERE/costwarden-ci.yaml" --hardware ci-runner --api-key "$CI_KEY" \
      --concurrency 1 --requests "$REQUESTS" --duration 300 -o "$OUT/${sides[$i]}-$k.json" >/dev/null
  done
done
echo "bench.sh: results in $OUT"
