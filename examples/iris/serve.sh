#!/usr/bin/env bash
# Serve the iris classifier with Seldon MLServer (Open Inference Protocol V2) on 127.0.0.1.
# Usage: examples/iris/serve.sh HTTP_PORT [GRPC_PORT] [METRICS_PORT]   (defaults: HTTP+1, HTTP+2)
# Ready when GET http://127.0.0.1:HTTP_PORT/v2/models/iris/ready answers 200. Works from any cwd.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
HTTP_PORT="${1:?usage: serve.sh HTTP_PORT [GRPC_PORT] [METRICS_PORT]}"
GRPC_PORT="${2:-$((HTTP_PORT + 1))}"
METRICS_PORT="${3:-$((HTTP_PORT + 2))}"
MLSERVER="$ROOT/.venv-mlserver/bin/mlserver"

if [[ ! -x "$MLSERVER" || ! -f "$HERE/model/model.joblib" ]]; then
  echo "serve.sh: MLServer or the iris model is missing; run scripts/setup-mlserver first" >&2
  exit 1
fi

# MLServer writes .metrics/ and .envs/ under its cwd: keep them out of the repo, one dir per port.
RUN_DIR="${TMPDIR:-/tmp}/costwarden-mlserver-$HTTP_PORT"
mkdir -p "$RUN_DIR"
cd "$RUN_DIR"

export MLSERVER_HOST=127.0.0.1
export MLSERVER_HTTP_PORT="$HTTP_PORT"
export MLSERVER_GRPC_PORT="$GRPC_PORT"
export MLSERVER_METRICS_PORT="$METRICS_PORT"
# In-process inference (no worker pool) keeps it light on a 2-core machine;
# debug=false turns off uvicorn's per-request access log.
export MLSERVER_PARALLEL_WORKERS=0
export MLSERVER_DEBUG=false
exec "$MLSERVER" start "$HERE/model"
