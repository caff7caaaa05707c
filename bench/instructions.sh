#!/usr/bin/env bash
# Instructions per request, counted by valgrind (callgrind): the gateway without
# policies and with the expression chain of bench/policies.sh, each posting the 2 KB
# JSON order over one keep-alive connection. Unlike requests/s this does not move with
# the machine's load, so it tells whether a change made the request path cheaper.
# Each gateway serves N and then 6N requests in two runs; the difference over 5N is the
# cost of one request (start-up and shutdown cancel out).
#   bench/instructions.sh            # N=200
# Needs: valgrind, nginx, python3 (the origin answers a fixed 200, as in policies.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-200}"
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
W="$(mktemp -d)"; trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$W"' EXIT
ORIGIN=18191; PORT=18192
sed -e "s#@RUNDIR@#$W#g" -e "s#@NAME@#origin#g" -e "s#@LISTEN_PORT@#$ORIGIN#g" \
  "$ROOT/bench/harness/conf/origin-nginx.conf" > "$W/origin.conf"
nginx -c "$W/origin.conf" -p "$W" 2>/dev/null &
python3 "$ROOT/bench/harness/post_documents.py" "$W" "$ORIGIN"
# posts $2 orders to 127.0.0.1:$1 on one connection; every answer must be 200
post() {
  python3 - "$1" "$2" "$W/order.json" <<'PY'
import http.client, sys
port, n, body = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], 'rb').read()
c = http.client.HTTPConnection('127.0.0.1', port, timeout=120)
for _ in range(n):
    c.request('POST', '/x', body=body, headers={'Content-Type': 'application/json', 'X-Tier': 'Gold'})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"answered {r.status}")
PY
}
# total instructions of one gateway run serving $2 requests with document $1
count() {
  valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" \
    "$ROOT/target/release/edgegate" gateway --config "$W/$1.json" \
    --set net.server.http.listen=127.0.0.1:$PORT --set telemetry.logs.std=none \
    --set config.backup.path="$W/$1.db" > "$W/valgrind.log" 2>&1 &
  local v=$!
  for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.2; done
  post $PORT "$2"
  kill -TERM $v; wait $v || true
  awk '/^(summary|totals):/ {print $2; exit}' "$W/cg.out"
}
for doc in plain expr; do
  a=$(count $doc "$N"); b=$(count $doc $((6 * N)))
  echo "$doc: $(( (b - a) / (5 * N) )) instructions per request"
done
