#!/usr/bin/env bash
# Publishes the example API to gateway gw1 on a management plane and prints a token for
# gw1 (valid 7 days). Usage: scripts/publish-example.sh PLANE_URL ADMIN_TOKEN
set -euo pipefail
plane="${1:?plane URL, e.g. http://127.0.0.1:7070}"
auth="Authorization: Bearer ${2:?admin token}"
call() { curl -sf -X "$1" -H "$auth" -H "Content-Type: application/json" "$plane$2" ${3:+-d "$3"} > /dev/null; }
call PUT /admin/apis/echo '{"path": "echo", "serviceUrl": "http://127.0.0.1:9000", "protocols": ["http"], "subscriptionRequired": false}'
call PUT /admin/apis/echo/operations/anything '{"method": "*", "urlTemplate": "/*"}'
call PUT /admin/gateways/gw1 '{"description": "example gateway"}'
call PUT /admin/gateways/gw1/apis/echo
# GNU date, else BSD date (macOS)
expiry="$(date -u -d '+7 days' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v+7d +%Y-%m-%dT%H:%M:%SZ)"
curl -sf -X POST -H "$auth" "$plane/admin/gateways/gw1/token" -d "{\"expiry\": \"$expiry\"}" \
  | sed -e 's/.*"value":"\([^"]*\)".*/\1/'
