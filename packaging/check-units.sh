#!/usr/bin/env bash
# Checks the systemd units: `systemd-analyze verify` (against a built binary standing in
# for /usr/bin/edgegate) must be clean, and `systemd-analyze security` must rate each
# unit at most EXPOSURE_MAX (default 2.0, "OK"). Needs systemd-analyze; no running systemd.
#   packaging/check-units.sh [BINARY]      # default: target/release/edgegate, else debug
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/release/edgegate}"
[ -x "$BIN" ] || BIN="$ROOT/target/debug/edgegate"
[ -x "$BIN" ] || { echo "build edgegate first" >&2; exit 2; }
BIN="$(realpath "$BIN")"  # units need an absolute path
MAX="${EXPOSURE_MAX:-2.0}"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
status=0
for unit in "$ROOT"/systemd/*.service; do
  name="$(basename "$unit")"
  sed "s#/usr/bin/edgegate#$BIN#" "$unit" > "$W/$name"
  out="$(systemd-analyze verify "$W/$name" 2>&1 || true)"
  if [ -n "$out" ]; then echo "$name: verify: $out"; status=1; fi
  level="$(systemd-analyze security --offline=true "$W/$name" 2>/dev/null | awk '/Overall exposure level/ {print $(NF-2)}')"
  if awk -v l="$level" -v m="$MAX" 'BEGIN {exit !(l == "" || l > m)}'; then
    echo "$name: exposure ${level:-unknown} > $MAX"; status=1
  else
    echo "$name: verify clean, exposure $level"
  fi
done
exit $status
