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
# the expression chain, and a 2 KB JSON order for wrk to POST
python3 - "$W" "$ORIGIN" <<'PY'
import json, sys
w, origin = sys.argv[1], sys.argv[2]
policy = '''<policies><inbound>
<set-variable name="order" value="@(context.Request.Body.As<JObject>(preserveContent: true))" />
<set-variable name="tier" value="@{
    var tier = context.Request.Headers.GetValueOrDefault("X-Tier", "bronze").ToLower();
    var order = (JObject)context.Variables["order"];
    return order["currency"].ToString() == "EUR" ? tier + "-eu" : tier;
}" />
<choose>
  <when condition="@(((JObject)context.Variables["order"])["total"].Value<double>() > 100)">
    <set-header name="X-Review" exists-action="override"><value>required</value></set-header>
  </when>
  <otherwise><set-header name="X-Review" exists-action="override"><value>none</value></set-header></otherwise>
</choose>
<set-body>@{
    var body = (JObject)context.Variables["order"];
    body["tier"] = (string)context.Variables["tier"];
    body.Remove("internal");
    return body.ToString(Formatting.None);
}</set-body>
<set-header name="X-Summary" exists-action="override"><value>@($"{context.Request.Method} {context.Variables["tier"]} {context.Request.Headers.GetValueOrDefault("X-Request-Id", "-")}")</value></set-header>
</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>'''
api = lambda version, pol: {"schemaVersion": 1, "version": version, "apis": [{"id": "b", "path": "",
    "serviceUrl": f"http://127.0.0.1:{origin}", "subscriptionRequired": False,
    "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}], **({"policies": pol} if pol else {})}
json.dump(api("expr", policy), open(f"{w}/expr.json", "w"))
# validate-content of the same POST against the order's schema (as an OpenAPI import
# stores it), in prevent mode
schemas = [{"id": "openapi-components", "contentType": "application/vnd.oai.openapi.components+json",
  "document": {"components": {"schemas": {
    "Order": {"type": "object", "required": ["id", "total", "currency", "items"], "additionalProperties": False,
      "properties": {"id": {"type": "string"}, "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]}, "internal": {"type": "string"},
        "items": {"type": "array", "maxItems": 100, "items": {"$ref": "#/components/schemas/Item"}}}},
    "Item": {"type": "object", "required": ["sku", "qty"],
      "properties": {"sku": {"type": "string", "pattern": "^sku-[0-9]{4}$"}, "name": {"type": "string", "maxLength": 100},
        "qty": {"type": "integer", "minimum": 1}, "price": {"type": "number"}}}}}}}]
validate = api("valid", '<policies><inbound><validate-content unspecified-content-type-action="prevent" max-size="102400" size-exceeded-action="prevent"><content type="application/json" validate-as="json" action="prevent" /></validate-content></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>')
validate["apis"][0]["schemas"] = schemas
validate["apis"][0]["operations"] = [{"id": "all", "method": "*", "urlTemplate": "/*",
  "request": {"representations": [{"contentType": "application/json", "schemaId": "openapi-components", "typeName": "Order"}]}}]
json.dump(validate, open(f"{w}/valid.json", "w"))
items, i = [], 0
while len(json.dumps({"items": items})) < 1900:
    items.append({"sku": f"sku-{i:04d}", "name": f"Item number {i}", "qty": i % 5 + 1, "price": round(9.99 + i, 2)})
    i += 1
order = json.dumps({"id": "order-1", "total": 250.5, "currency": "EUR", "internal": "x", "items": items})
open(f"{w}/order.json", "w").write(order)
open(f"{w}/post.lua", "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-Tier"] = "Gold"\n'
    f'wrk.body = {json.dumps(order)}\n')
PY
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
echo "runs posting 2 KB JSON without policies: ${PP[*]}"
echo "runs posting 2 KB JSON with the expression chain: ${EE[*]}"
echo "median req/s posting 2 KB JSON at c=$CONNS: without $mpp, with the expression chain $mee, ratio $(awk -v a="$mee" -v b="$mpp" 'BEGIN {printf "%.3f", a/b}')"
mvv=$(median "${VV[@]}")
echo "runs posting 2 KB JSON with validate-content: ${VV[*]}"
echo "median req/s posting 2 KB JSON at c=$CONNS: without $mpp, with validate-content $mvv, ratio $(awk -v a="$mvv" -v b="$mpp" 'BEGIN {printf "%.3f", a/b}')"
