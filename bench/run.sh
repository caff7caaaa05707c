#!/usr/bin/env bash
# Benchmarks edgegate against nginx (1 worker, upstream keep-alive) and HAProxy (1 thread)
# in the same run, on loopback, with the peer harness in bench/harness (wrk; proxy pinned to CPU 1).
#   bench/run.sh                       # c=1/50/500, 3 reps x 10 s, + 9,000 idle connections
#   PEERS="nginx" CONNS="50" bench/run.sh
# Needs: nginx, haproxy, wrk (bench/run.sh --install installs them with apt).
# The harness is bench/harness/ (override with SHARED_BENCH).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$HERE/harness}"
if [ "${1:-}" = "--install" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light haproxy wrk
  shift
fi
[ -x "$SHARED_BENCH/run-peers.sh" ] || { echo "peer harness not found at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 2; }
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
BACKEND_PORT="${BACKEND_PORT:-18080}"
WORK="$(mktemp -d)"
CONFIG="$WORK/bench.json"
cat > "$CONFIG" <<JSON
{"schemaVersion": 1, "version": "bench", "apis": [
  {"id": "bench", "path": "", "serviceUrl": "http://127.0.0.1:$BACKEND_PORT", "protocols": ["http"],
   "subscriptionRequired": false,
   "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}]}
JSON
export GATEWAY_CMD="$ROOT/target/release/edgegate gateway --config $CONFIG --set net.server.http.listen=127.0.0.1:{PORT} --set telemetry.logs.std=none --set limits.connections.max=20000 --set config.backup.path=$WORK/backup.db"
export GATEWAY_NAME="${GATEWAY_NAME:-edgegate}"
export PEERS="${PEERS:-direct nginx haproxy}"
export BACKEND_PORT
export OUT_DIR="${OUT_DIR:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}"
exec "$SHARED_BENCH/run-peers.sh" "$@"
