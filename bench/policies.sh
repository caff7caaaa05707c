#!/usr/bin/env bash
# Cost of a realistic policy chain, measured against the same gateway without policies in
# the same run: subscription key + rate-limit + set-header + validate-jwt (RS256, one
# token reused as real clients do), and the same chain with 100,000 subscriptions in the
# config (the key lookup is a hash lookup). Origin: nginx (fixed 200, keep-alive) on CPU 0;
# gateways pinned to CPU 1; wrk -c50 on CPU 0. Medians of REPS runs of DURATION each.
#   bench/policies.sh              # REPS=3 DURATION=10s
# Needs: nginx, wrk, openssl (bench/run.sh --install installs nginx and wrk).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPS="${REPS:-3}"; DURATION="${DURATION:-10s}"; CONNS="${CONNS:-50}"
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
cargo build --release --manifest-path "$ROOT/Cargo.toml" --example jwt_token >&2
W="$(mktemp -d)"; trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$W"' EXIT
ORIGIN=18181; PLAIN=18182; POLICY=18183; MANY=18184
sed -e "s#@RUNDIR@#$W#g" -e "s#@NAME@#origin#g" -e "s#@LISTEN_PORT@#$ORIGIN#g" \
  "$ROOT/bench/harness/conf/origin-nginx.conf" > "$W/origin.conf"
taskset -c 0 nginx -c "$W/origin.conf" -p "$W" 2>/dev/null &
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -outform DER -out "$W/rsa.der" 2>/dev/null
# prints: n e token (RS256, exp in one hour)
read -r N E TOKEN < <("$ROOT/target/release/examples/jwt_token" "$W/rsa.der")
cat > "$W/plain.json" <<JSON
{"schemaVersion": 1, "version": "plain", "apis": [{"id": "b", "path": "", "serviceUrl": "http://127.0.0.1:$ORIGIN",
 "subscriptionRequired": false, "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}]}
JSON
POL="<policies><inbound><rate-limit calls=\\\"100000000\\\" renewal-period=\\\"60\\\" /><set-header name=\\\"X-Caller\\\" exists-action=\\\"override\\\"><value>@(context.Subscription.Id)</value></set-header><validate-jwt header-name=\\\"Authorization\\\" require-scheme=\\\"Bearer\\\"><issuer-signing-keys><key n=\\\"$N\\\" e=\\\"$E\\\" /></issuer-signing-keys><audiences><audience>bench</audience></audiences></validate-jwt></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"
cat > "$W/policy.json" <<JSON
{"schemaVersion": 1, "version": "policy", "apis": [{"id": "b", "path": "", "serviceUrl": "http://127.0.0.1:$ORIGIN",
 "subscriptionRequired": true, "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}],
 "policies": "$POL",
 "subscriptions": [{"id": "bench-sub", "scope": "/apis", "primaryKey": "bench-primary-key"}]}
JSON
# the same document with 99,999 more subscriptions
awk '/"version": "policy"/ { sub(/"version": "policy"/, "\"version\": \"many\"") }
     /bench-primary-key"}]}$/ {
       sub(/}]}$/, "}")
       printf "%s", $0
       for (i = 0; i < 99999; i++) printf ", {\"id\": \"sub-%d\", \"scope\": \"/apis\", \"primaryKey\": \"key-%08d-abcdefgh\"}", i, i
       print "]}"
       next
     }
     { print }' "$W/policy.json" > "$W/many.json"
declare -A PORT=([plain]=$PLAIN [policy]=$POLICY [many]=$MANY)
for name in plain policy many; do
  port=${PORT[$name]}
  taskset -c 1 "$ROOT/target/release/edgegate" gateway --config "$W/$name.json" \
    --set net.server.http.listen=127.0.0.1:$port --set telemetry.logs.std=none \
    --set config.backup.path="$W/$name.db" 2>"$W/$name.log" &
done
for port in $PLAIN $POLICY $MANY; do  # wait for each listener (the 100k document takes a moment)
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$port/ && break; sleep 0.1; done
done
H1="Ocp-Apim-Subscription-Key: bench-primary-key"; H2="Authorization: Bearer $TOKEN"
for port in $POLICY $MANY; do
  check=$(curl -s -o /dev/null -w '%{http_code}' -H "$H1" -H "$H2" http://127.0.0.1:$port/x)
  [ "$check" = 200 ] || { echo "policy gateway on $port answered $check" >&2; cat "$W/policy.log" "$W/many.log" >&2; exit 1; }
done
run() { taskset -c 0 wrk -t2 -c"$CONNS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
declare -a P Q M
for i in $(seq "$REPS"); do
  P+=("$(run http://127.0.0.1:$PLAIN/x)")
  Q+=("$(run -H "$H1" -H "$H2" http://127.0.0.1:$POLICY/x)")
  M+=("$(run -H "$H1" -H "$H2" http://127.0.0.1:$MANY/x)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mp=$(median "${P[@]}"); mq=$(median "${Q[@]}"); mm=$(median "${M[@]}")
echo "runs without policies: ${P[*]}"
echo "runs with the chain:   ${Q[*]}"
echo "runs with the chain and 100,000 subscriptions: ${M[*]}"
echo "median req/s with 100,000 subscriptions: $mm, ratio to 1 subscription $(awk -v a="$mm" -v b="$mq" 'BEGIN {printf "%.3f", a/b}')"
echo "median req/s at c=$CONNS: without $mp, with $mq, ratio $(awk -v a="$mq" -v b="$mp" 'BEGIN {printf "%.3f", a/b}')"
