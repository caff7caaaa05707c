#!/usr/bin/env bash
# Cost of a realistic policy chain, measured against the same gateway without policies in
# the same run: subscription key + rate-limit + set-header + validate-jwt (RS256, one
# token reused as real clients do), and the same chain with 100,000 subscriptions in the
# config (the key lookup is a hash lookup); and the expression chain typical of APIM
# documents on a 2 KB JSON POST (a @{...} block reading headers and variables, the body
# as a JObject with preserveContent, a choose on a value in it, a set-body that edits it,
# a set-header from an interpolated string) against the same gateway without policies
# on the same POST, and validate-content of that POST against the order's JSON schema.
# Origin: nginx (fixed 200, keep-alive) on CPU 0; gateways pinned to
# CPU 1; wrk -c50 on CPU 0. Medians of REPS runs of DURATION each.
#   bench/policies.sh              # REPS=3 DURATION=10s
# Needs: nginx, wrk, openssl (bench/run.sh --install installs nginx and wrk).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPS="${REPS:-3}"; DURATION="${DURATION:-10s}"; CONNS="${CONNS:-50}"
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
cargo build --release --manifest-path "$ROOT/Cargo.toml" --example jwt_token >&2
W="$(mktemp -d)"; trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$W"' EXIT
ORIGIN=18181; PLAIN=18182; POLICY=18183; MANY=18184; EXPR=18185; VALID=18186
sed -e "s#@RUNDIR@#$W#g" -e "s#@NAME@#origin#g" -e "s#@LISTEN_PORT@#$ORIGIN#g" \
  "$ROOT/bench/harness/conf/origin-nginx.conf" > "$W/origin.conf"
taskset -c 0 nginx -c "$W/origin.conf" -p "$W" 2>/dev/null &
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -outform DER -out "$W/rsa.der" 2>/dev/null
# prints: n e token (RS256, exp in one hour)
read -r N E TOKEN < <("$ROOT/target/release/examples/jwt_token" "$W/rsa.der")
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
# the gateway without policies, the expression chain, and a 2 KB JSON order for wrk to POST
python3 "$ROOT/bench/harness/post_documents.py" "$W" "$ORIGIN"
echo "POST body: $(wc -c < "$W/order.json") bytes of JSON" >&2
declare -A PORT=([plain]=$PLAIN [policy]=$POLICY [many]=$MANY [expr]=$EXPR [valid]=$VALID)
for name in plain policy many expr valid; do
  port=${PORT[$name]}
  taskset -c 1 "$ROOT/target/release/edgegate" gateway --config "$W/$name.json" \
    --set net.server.http.listen=127.0.0.1:$port --set telemetry.logs.std=none \
    --set config.backup.path="$W/$name.db" 2>"$W/$name.log" &
done
for port in $PLAIN $POLICY $MANY $EXPR $VALID; do  # wait for each listener (the 100k document takes a moment)
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$port/ && break; sleep 0.1; done
done
H1="Ocp-Apim-Subscription-Key: bench-primary-key"; H2="Authorization: Bearer $TOKEN"
for port in $POLICY $MANY; do
  check=$(curl -s -o /dev/null -w '%{http_code}' -H "$H1" -H "$H2" http://127.0.0.1:$port/x)
  [ "$check" = 200 ] || { echo "policy gateway on $port answered $check" >&2; cat "$W/policy.log" "$W/many.log" >&2; exit 1; }
done
check=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$W/order.json" http://127.0.0.1:$EXPR/x)
[ "$check" = 200 ] || { echo "expression gateway answered $check" >&2; cat "$W/expr.log" >&2; exit 1; }
check=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$W/order.json" http://127.0.0.1:$VALID/x)
[ "$check" = 200 ] || { echo "validating gateway answered $check" >&2; cat "$W/valid.log" >&2; exit 1; }
run() { taskset -c 0 wrk -t2 -c"$CONNS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
declare -a P Q M PP EE VV
for i in $(seq "$REPS"); do
  P+=("$(run http://127.0.0.1:$PLAIN/x)")
  Q+=("$(run -H "$H1" -H "$H2" http://127.0.0.1:$POLICY/x)")
  M+=("$(run -H "$H1" -H "$H2" http://127.0.0.1:$MANY/x)")
  PP+=("$(run -s "$W/post.lua" http://127.0.0.1:$PLAIN/x)")
  EE+=("$(run -s "$W/post.lua" http://127.0.0.1:$EXPR/x)")
  VV+=("$(run -s "$W/post.lua" http://127.0.0.1:$VALID/x)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mp=$(median "${P[@]}"); mq=$(median "${Q[@]}"); mm=$(median "${M[@]}")
echo "runs without policies: ${P[*]}"
echo "runs with the chain:   ${Q[*]}"
echo "runs with the chain and 100,000 subscriptions: ${M[*]}"
echo "median req/s with 100,000 subscriptions: $mm, ratio to 1 subscription $(awk -v a="$mm" -v b="$mq" 'BEGIN {printf "%.3f", a/b}')"
echo "median req/s at c=$CONNS: without $mp, with $mq, ratio $(awk -v a="$mq" -v b="$mp" 'BEGIN {printf "%.3f", a/b}')"
mpp=$(median "${PP[@]}"); mee=$(median "${EE[@]}")
# each repetition runs the two back to back: the ratio within a repetition does not
# see the machine's speed drift between repetitions
declare -a RE
for i in "${!PP[@]}"; do RE+=("$(awk -v a="${EE[$i]}" -v b="${PP[$i]}" 'BEGIN {printf "%.3f", a/b}')"); done
echo "runs posting 2 KB JSON without policies: ${PP[*]}"
echo "runs posting 2 KB JSON with the expression chain: ${EE[*]}"
echo "median req/s posting 2 KB JSON at c=$CONNS: without $mpp, with the expression chain $mee, ratio $(awk -v a="$mee" -v b="$mpp" 'BEGIN {printf "%.3f", a/b}')"
echo "expression chain / plain within each repetition: ${RE[*]}; median $(median "${RE[@]}")"
mvv=$(median "${VV[@]}")
echo "runs posting 2 KB JSON with validate-content: ${VV[*]}"
echo "median req/s posting 2 KB JSON at c=$CONNS: without $mpp, with validate-content $mvv, ratio $(awk -v a="$mvv" -v b="$mpp" 'BEGIN {printf "%.3f", a/b}')"
