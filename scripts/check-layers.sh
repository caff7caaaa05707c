#!/usr/bin/env bash
# Checks the dependency rules of ARCHITECTURE.md over the `crate::` paths in src/ (code
# lines only, not comments): no import circle between top-level modules; the core uses
# none of proxy, agent, manage; federation uses only the core; agent and manage never use
# each other; proxy never uses manage. Prints every broken rule; exit 1 if any.
# Also enforces the size budget: no file over 1,200 lines and no function over 150
# lines (tests excluded). Functions nested in functions count with their parent.
set -euo pipefail
cd "$(dirname "$0")/../src"

APPS="proxy agent manage"
module_of() { # src path -> top-level module name
  local p="${1#./}"
  p="${p%%/*}"
  echo "${p%.rs}"
}

edges="$(mktemp)"
trap 'rm -f "$edges" "$edges.size"' EXIT
for f in $(find . -name '*.rs' | sort); do
  from="$(module_of "$f")"
  if [ "$from" = "main" ] || [ "$from" = "lib" ]; then continue; fi
  # code lines only: drop comments, then every crate::<module> named
  sed -e 's://.*$::' "$f" | { grep -oE 'crate::[a-z_]+' || true; } | sed 's/crate:://' | sort -u |
    while read -r to; do
      if [ "$to" != "$from" ]; then echo "$from $to"; fi
    done
done | sort -u > "$edges"

failed=0
fail() { echo "layers: $*"; failed=1; }

while read -r from to; do
  is_app() { case " $APPS " in *" $1 "*) return 0;; esac; return 1; }
  if ! is_app "$from" && [ "$from" != "federation" ] && is_app "$to"; then
    fail "core module '$from' uses '$to' (the core uses no program)"
  fi
  if [ "$from" = "federation" ] && { is_app "$to"; }; then
    fail "federation uses '$to' (it is the contract both programs share)"
  fi
  case "$from:$to" in
    agent:manage|manage:agent) fail "'$from' uses '$to' (the gateway's agent and the plane never import each other)";;
    proxy:manage) fail "proxy uses manage (the gateway never imports the plane)";;
  esac
done < "$edges"

# circles: repeatedly drop modules with no outgoing edge left; what remains is a cycle
remaining="$(cat "$edges")"
while :; do
  sinks="$(comm -23 <(echo "$remaining" | awk 'NF{print $2}' | sort -u) <(echo "$remaining" | awk 'NF{print $1}' | sort -u))"
  [ -z "$sinks" ] && break
  remaining="$(echo "$remaining" | awk -v s="$sinks" 'BEGIN{n=split(s,a,"\n"); for(i=1;i<=n;i++) d[a[i]]=1} NF && !($2 in d)')"
done
if [ -n "$(echo "$remaining" | awk 'NF')" ]; then
  fail "import circle (modules on it or reaching it): $(echo "$remaining" | awk 'NF{print $1}' | sort -u | tr '\n' ' ')"
  echo "$remaining" | awk 'NF{print "  " $1 " -> " $2}'
fi

# size budget
for f in $(find . -name '*.rs' | sort); do
  code="$(awk '/^#\[cfg\(test\)\]/{exit} {n++} END{print n+0}' "$f")"
  if [ "$code" -gt 1200 ]; then fail "size: ${f#./} has $code lines before its tests (budget 1200)"; fi
  awk -v file="${f#./}" '
    # a function runs from its signature to the closing brace at its own indentation
    # (the code is rustfmt-formatted); one-line and bodiless signatures are skipped
    /^#\[cfg\(test\)\]/ { exit }
    name == "" && /^ *(pub(\([a-z]+\))? )?fn [a-z_0-9]+/ && !/;$/ {
      name = $0; sub(/.*fn /, "", name); sub(/[<(].*/, "", name)
      match($0, /^ */); close_line = substr($0, 1, RLENGTH) "}"; start = NR; next
    }
    name != "" && $0 == close_line {
      if (NR - start + 1 > 150) printf "size: %s: fn %s has %d lines (budget 150)\n", file, name, NR - start + 1
      name = ""
    }
  ' "$f" > "$edges.size"
  if [ -s "$edges.size" ]; then fail "$(cat "$edges.size")"; fi
done
rm -f "$edges.size"

if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "layers: ok ($(wc -l < "$edges") edges between top-level modules, no circle)"
