#!/usr/bin/env bash
# HTTPS termination: edgegate against nginx (1 worker) in the same run, each pinned alone
# to CPU 1, terminating TLS (ECDSA P-256 certificate, keep-alive) in front of the same
# nginx origin on CPU 0; wrk -c$CONNS on CPU 0. Reports req/s and CPU per request
# (utime+stime of the proxy ÷ requests), medians of REPS runs of DURATION.
#   bench/tls.sh              # REPS=3 DURATION=10s CONNS=50
# Needs: nginx (with ssl), wrk, openssl. No timing assertions anywhere: a benchmark.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$HERE/harness}"
REPS="${REPS:-3}"; DURATION="${DURATION:-10s}"; CONNS="${CONNS:-50}"
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
W="$(mktemp -d)"; trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$W"' EXIT
ORIGIN=18281; EDGE=18282; NGINX=18283
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$W/key.pem" -out "$W/cert.pem" -subj /CN=bench.test 2>/dev/null
sed -e "s#@RUNDIR@#$W#g" -e "s#@NAME@#origin#g" -e "s#@LISTEN_PORT@#$ORIGIN#g" \
  "$SHARED_BENCH/conf/origin-nginx.conf" > "$W/origin.conf"
taskset -c 0 nginx -c "$W/origin.conf" -p "$W" 2>/dev/null &
# nginx terminating TLS: the harness proxy config with an ssl listener
sed -e "s#@RUNDIR@#$W#g" -e "s#@NAME@#proxy#g" -e "s#@LISTEN_PORT@#$NGINX#g" \
  -e "s#@BACKEND_PORT@#$ORIGIN#g" -e "s#@ACCESS_LOG@#access_log off;#" \
  -e "s#listen 127.0.0.1:$NGINX backlog=4096;#listen 127.0.0.1:$NGINX ssl backlog=4096; ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;#" \
  "$SHARED_BENCH/conf/nginx-proxy.conf" > "$W/proxy.conf"
taskset -c 1 nginx -c "$W/proxy.conf" -p "$W" 2>/dev/null &
python3 - "$W" "$ORIGIN" <<'PY'
import json, sys
w, origin = sys.argv[1], sys.argv[2]
doc = {"schemaVersion": 1, "version": "tls-bench",
       "certificates": [{"id": "c", "hostnames": ["bench.test"],
                         "certPem": open(w + "/cert.pem").read(), "keyPem": open(w + "/key.pem").read()}],
       "apis": [{"id": "b", "path": "", "serviceUrl": f"http://127.0.0.1:{origin}",
                 "subscriptionRequired": False,
                 "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}]}
json.dump(doc, open(w + "/edge.json", "w"))
PY
taskset -c 1 "$ROOT/target/release/edgegate" gateway --config "$W/edge.json" \
  --set net.server.http.listen=127.0.0.1:0 --set net.server.https.listen=127.0.0.1:$EDGE \
  --set telemetry.logs.std=none --set config.backup.path="$W/edge.db" 2>/dev/null &
sleep 1
# every process holding the listener (nginx: master and worker), CPU ticks summed
pids_on() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
cpu_ticks() { local t=0; for p in $1; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
run() {  # port → "req/s cpu_us_per_request"
  local pids; pids="$(pids_on "$1")"
  local before; before="$(cpu_ticks "$pids")"
  local out; out="$(taskset -c 0 wrk -t1 -c"$CONNS" -d"$DURATION" "https://127.0.0.1:$1/x")"
  local after; after="$(cpu_ticks "$pids")"
  local rps; rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  local total; total="$(awk '/requests in/ {print $1}' <<<"$out")"
  awk -v r="$rps" -v t="$total" -v c="$((after - before))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%s %.1f\n", r, c / hz * 1e6 / t}'
}
declare -a E N
for i in $(seq "$REPS"); do E+=("$(run $EDGE)"); N+=("$(run $NGINX)"); done
median() { printf '%s\n' "$@" | sort -n -k"$K" | awk -v k="$K" '{a[NR]=$k} END {print a[int((NR+1)/2)]}'; }
K=1; er=$(median "${E[@]}"); nr=$(median "${N[@]}")
K=2; ec=$(median "${E[@]}"); nc=$(median "${N[@]}")
echo "edgegate runs (req/s, CPU µs/req): ${E[*]}"
echo "nginx runs    (req/s, CPU µs/req): ${N[*]}"
echo "median HTTPS at c=$CONNS: edgegate $er req/s, $ec µs/req; nginx $nr req/s, $nc µs/req; CPU ratio $(awk -v a="$ec" -v b="$nc" 'BEGIN {printf "%.2f", a/b}')"
