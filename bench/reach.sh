#!/usr/bin/env bash
# What the policies that reach out and remember cost, against the same gateway without
# policies in the same run (#10's figures):
#   - a response cache hit (cache-lookup / cache-store; the backend is asked once);
#   - validate-jwt with openid-config (keys fetched by the agent from a local discovery
#     document) against validate-jwt with the same key inline;
#   - a send-request to the local origin on every call, then the forward.
# Requests/s (median of REPS runs of DURATION, wrk -c$CONNS) and the gateway's CPU per
# request (user + system time from /proc over the runs, divided by the requests wrk
# made). Origin: nginx (fixed 200, keep-alive) on CPU 0, wrk on CPU 0, gateways on CPU 1.
#   bench/reach.sh              # REPS=3 DURATION=10s
# Needs: nginx, wrk, openssl, python3 (bench/run.sh --install installs nginx and wrk).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPS="${REPS:-3}"; DURATION="${DURATION:-10s}"; CONNS="${CONNS:-50}"
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
cargo build --release --manifest-path "$ROOT/Cargo.toml" --example jwt_token >&2
W="$(mktemp -d)"; trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$W"' EXIT
ORIGIN=18281; DOCS=18282; PLAIN=18283; CACHE=18284; STATIC=18285; OPENID=18286; SEND=18287
sed -e "s#@RUNDIR@#$W#g" -e "s#@NAME@#origin#g" -e "s#@LISTEN_PORT@#$ORIGIN#g" \
  "$ROOT/bench/harness/conf/origin-nginx.conf" > "$W/origin.conf"
taskset -c 0 nginx -c "$W/origin.conf" -p "$W" 2>/dev/null &
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -outform DER -out "$W/rsa.der" 2>/dev/null
read -r N E TOKEN < <("$ROOT/target/release/examples/jwt_token" "$W/rsa.der")
# the discovery document and JWKS the agent fetches (once), served by python
mkdir -p "$W/docs/.well-known"
echo "{\"jwks_uri\": \"http://127.0.0.1:$DOCS/keys.json\"}" > "$W/docs/.well-known/openid-configuration"
echo "{\"keys\": [{\"kty\": \"RSA\", \"n\": \"$N\", \"e\": \"$E\"}]}" > "$W/docs/keys.json"
taskset -c 0 python3 -m http.server "$DOCS" --bind 127.0.0.1 --directory "$W/docs" >/dev/null 2>&1 &
python3 - "$W" "$ORIGIN" "$DOCS" "$N" "$E" <<'PY'
import json, sys
w, origin, docs, n, e = sys.argv[1:]
def doc(version, inbound="", outbound=""):
    pol = (f"<policies><inbound>{inbound}</inbound><backend><forward-request /></backend>"
           f"<outbound>{outbound}</outbound><on-error /></policies>")
    api = {"id": "b", "path": "", "serviceUrl": f"http://127.0.0.1:{origin}", "subscriptionRequired": False,
           "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}
    d = {"schemaVersion": 1, "version": version, "apis": [api]}
    if inbound or outbound:
        d["policies"] = pol
    json.dump(d, open(f"{w}/{version}.json", "w"))
jwt = '<validate-jwt header-name="Authorization" require-scheme="Bearer">{}<audiences><audience>bench</audience></audiences></validate-jwt>'
doc("plain")
doc("cache", '<cache-lookup vary-by-developer="false" vary-by-developer-groups="false" />', '<cache-store duration="3600" />')
doc("static", jwt.format(f'<issuer-signing-keys><key n="{n}" e="{e}" /></issuer-signing-keys>'))
doc("openid", jwt.format(f'<openid-config url="http://127.0.0.1:{docs}/.well-known/openid-configuration" />'))
doc("send", f'<send-request mode="new" response-variable-name="r" timeout="10"><set-url>http://127.0.0.1:{origin}/check</set-url></send-request>'
            '<set-header name="X-Check" exists-action="override"><value>@(((IResponse)context.Variables["r"]).StatusCode.ToString())</value></set-header>')
PY
declare -A PORT=([plain]=$PLAIN [cache]=$CACHE [static]=$STATIC [openid]=$OPENID [send]=$SEND)
declare -A PID
for name in plain cache static openid send; do
  taskset -c 1 "$ROOT/target/release/edgegate" gateway --config "$W/$name.json" \
    --set net.server.http.listen=127.0.0.1:${PORT[$name]} --set telemetry.logs.std=none \
    --set config.backup.path="$W/$name.db" 2>"$W/$name.log" &
  PID[$name]=$!
done
H="Authorization: Bearer $TOKEN"
for name in plain cache static openid send; do
  ok=""
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "$H" http://127.0.0.1:${PORT[$name]}/x || true)
    [ "$code" = 200 ] && { ok=1; break; }
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "$name gateway answered $code" >&2; cat "$W/$name.log" >&2; exit 1; }
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A RPS REQS CPU
for name in plain cache static openid send; do RPS[$name]=""; REQS[$name]=0; CPU[$name]=0; done
for i in $(seq "$REPS"); do
  for name in plain cache static openid send; do
    before=$(ticks "${PID[$name]}")
    # only the validate-jwt gateways get the token (a request with Authorization is not
    # cached unless allow-private-response-caching says so)
    case $name in static|openid) auth=(-H "$H") ;; *) auth=() ;; esac
    out=$(taskset -c 0 wrk -t2 -c"$CONNS" -d"$DURATION" "${auth[@]}" http://127.0.0.1:${PORT[$name]}/x)
    after=$(ticks "${PID[$name]}")
    RPS[$name]="${RPS[$name]} $(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    REQS[$name]=$(( ${REQS[$name]} + $(echo "$out" | awk '/requests in/ {print $1}') ))
    CPU[$name]=$(( ${CPU[$name]} + after - before ))
  done
done
median() { printf '%s\n' $@ | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
us() { awk -v t="${CPU[$1]}" -v hz="$HZ" -v n="${REQS[$1]}" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}'; }
base=$(median ${RPS[plain]})
for name in plain cache static openid send; do
  m=$(median ${RPS[$name]})
  echo "$name: runs${RPS[$name]}; median $m req/s, ratio to plain $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.3f", a/b}'), gateway CPU $(us $name) us/request"
done
