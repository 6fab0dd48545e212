#!/usr/bin/env bash
# Bench a small model on a GPU host through the costwarden gateway (prepared; see docs/hardware.md).
#
#   bench/gpu/run.sh [OUT_DIR]          # default bench/results/gpu
#
# Needs: an NVIDIA GPU (nvidia-smi), costwarden installed, and vLLM (`pip install vllm`) with the
# model in the Hugging Face cache (MODEL, default Qwen/Qwen2.5-0.5B-Instruct). Set the hardware
# price: PROFILE (default gpu-host) and HOURLY_USD (default 3.50, an example: use your provider's).
# Writes, per load level, a results file (streams: TTFT, TPOT, tokens/s, cost per 1M tokens at
# HOURLY_USD), the rate search for the SLO (default "ttft<=250ms, tpot<=50ms"), and runs the
# shared decode fixture's script too when PyTorch and transformers are installed. Everything
# listens on 127.0.0.1; every process it starts is stopped on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$ROOT/bench/results/gpu}"
MODEL="${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}"
PROFILE="${PROFILE:-gpu-host}"
HOURLY_USD="${HOURLY_USD:-3.50}"
SLO="${SLO:-ttft<=250ms, tpot<=50ms}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
GPU_NAME="$(head -1 "$OUT/gpu.txt" | cut -d, -f1)"
GPUS="$(wc -l < "$OUT/gpu.txt")"
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {
  for _ in $(seq 1 600); do
    "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null && return 0
    sleep 1
  done
  echo "run.sh: $1 was not ready in 10 minutes" >&2; return 1
}

VLLM_PORT="$(free_port)"; GW_PORT="$(free_port)"
"$PYTHON" -m vllm.entrypoints.openai.api_server --host 127.0.0.1 --port "$VLLM_PORT" --model "$MODEL" \
  --served-model-name small >"$OUT/vllm.log" 2>&1 &
PIDS+=("$!")
wait_for "http://127.0.0.1:$VLLM_PORT/health"

KEY="cw_gpu_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$TMP/costwarden.yaml" <<YAML
server: {host: 127.0.0.1}
storage: {ledger: "sqlite:///$TMP/ledger.db", spool_dir: "$TMP/spool"}
teams: [{name: bench, projects: [gpu]}]
environments: [bench]
deployments:
  - {name: small, protocol: openai, upstream: "http://127.0.0.1:$VLLM_PORT",
     pricing: {compute: {hourly_usd: $HOURLY_USD, concurrency: 1}}}
keys: [{id: gpu, key: "$KEY", team: bench, project: gpu, environment: bench}]
hardware:
  - {name: $PROFILE, accelerator: "$GPU_NAME", accelerator_count: $GPUS, vcpus: $(nproc),
     memory_gib: $(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1048576 )), hourly_usd: $HOURLY_USD}
YAML
costwarden serve --config "$TMP/costwarden.yaml" --port "$GW_PORT" >"$OUT/gateway.log" 2>&1 &
PIDS+=("$!")
wait_for "http://127.0.0.1:$GW_PORT/readyz"

common=(-d small --config "$TMP/costwarden.yaml" --hardware "$PROFILE" --api-key "$KEY" --stream --max-tokens 64)
for c in 1 4 16 64; do
  costwarden bench "http://127.0.0.1:$GW_PORT" "${common[@]}" --concurrency "$c" --duration 30 \
    -o "$OUT/closed-c$c.json" --markdown "$OUT/closed-c$c.md"
done
costwarden bench "http://127.0.0.1:$GW_PORT" "${common[@]}" --search --slo "$SLO" --search-start 1 \
  --search-max 512 --duration 20 -o "$OUT/search.json" --markdown "$OUT/search.md"

if "$PYTHON" -c "import torch, transformers" 2>/dev/null; then
  "$PYTHON" "${DECODE_BENCH:-$ROOT/../shared/fixtures/gpu-decode-h200/decode_bench.py}" "$OUT/decode.json" || true
  "$PYTHON" "$HERE/import_decode.py" "$OUT/decode.json" "$OUT/decode" --profile "$PROFILE" --config "$TMP/costwarden.yaml"
fi
echo "run.sh: results in $OUT (add them to docs/hardware.md)"
