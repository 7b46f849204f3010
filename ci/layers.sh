#!/usr/bin/env bash
# The layering check: preflight-core (harness/core, the records and the pure logic
# that judges and renders them) depends on no cluster client, async runtime, HTTP
# stack or process control. Its normal dependency tree is read with `cargo tree`, and
# any of those crates in it fails the check, loudly, naming the path that brings it.
# Every feature is on (the engine turns on `clap`), so no feature can bring one in.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='kube k8s-openapi tokio axum axum-server reqwest nix indicatif'

tree="$(cargo tree -p preflight-core -e normal --all-features --prefix none --quiet)"
# Crate names, one a line (a here-string below, not a pipe: `grep -q` leaving a pipe
# early would turn a match into a failed pipeline under pipefail).
names="$(printf '%s\n' "$tree" | awk '{print $1}' | sort -u)"
found=""
for name in $forbidden; do
  if grep -qx -- "$name" <<<"$names"; then
    found="$found $name"
  fi
done
if [ -n "$found" ]; then
  echo "error: preflight-core must do no I/O, but depends on:$found" >&2
  for name in $found; do
    echo "--- what brings in $name:" >&2
    cargo tree -p preflight-core -e normal --all-features --invert "$name" --quiet >&2 || true
  done
  exit 1
fi
echo "preflight-core: none of $forbidden in its dependency tree ($(wc -l <<<"$names") crates)" >&2

# The three crates, each on the ones below it (cargo refuses a cycle, so no module of a
# lower crate can reach a higher one): shown, and checked.
layers="$(cargo tree --workspace -e normal --depth 1 --prefix none --quiet | awk '$1 ~ /^preflight/ {print $1}')"
engine_deps="$(cargo tree -p preflight-engine -e normal --depth 1 --prefix none --quiet | awk '{print $1}')"
top_deps="$(cargo tree -p preflight -e normal --depth 1 --prefix none --quiet | awk '{print $1}')"
if ! grep -qx preflight-core <<<"$engine_deps" || grep -qx preflight <<<"$engine_deps"; then
  echo "error: preflight-engine must build on preflight-core and on nothing above it" >&2
  exit 1
fi
if ! grep -qx preflight-engine <<<"$top_deps"; then
  echo "error: preflight (the command line, twin, audit) must build on preflight-engine" >&2
  exit 1
fi
echo "layers: preflight -> preflight-engine -> preflight-core ($(sort -u <<<"$layers" | tr '\n' ' '))" >&2
