#!/usr/bin/env bash
# The layering check: preflight-core (harness/core, the records and the pure logic
# that judges and renders them) depends on no cluster client, async runtime, HTTP
# stack or process control. Its normal dependency tree is read with `cargo tree`, and
# any of those crates in it fails the check, loudly, naming the path that brings it.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='kube k8s-openapi tokio axum axum-server reqwest nix indicatif'

tree="$(cargo tree -p preflight-core -e normal --prefix none --quiet)"
found=""
for name in $forbidden; do
  if printf '%s\n' "$tree" | awk '{print $1}' | grep -qx -- "$name"; then
    found="$found $name"
  fi
done
if [ -n "$found" ]; then
  echo "error: preflight-core must do no I/O, but depends on:$found" >&2
  for name in $found; do
    echo "--- what brings in $name:" >&2
    cargo tree -p preflight-core -e normal --invert "$name" --quiet >&2 || true
  done
  exit 1
fi
echo "preflight-core: no I/O dependencies ($(printf '%s\n' "$tree" | sort -u | wc -l) crates)" >&2
