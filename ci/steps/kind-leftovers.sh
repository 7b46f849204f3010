#!/usr/bin/env bash
# After a kind run: warns about kind clusters (containers named preflight-*) still
# there. preflight deletes its clusters on every exit path, a sentinel process even
# when preflight itself is killed; this only makes a cancelled job's leftovers
# visible. Never fails the job.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

if ! command -v docker >/dev/null 2>&1; then exit 0; fi
left=$(docker ps -a --format '{{.Names}}' 2>/dev/null | grep '^preflight-' || true)
if [ -n "$left" ]; then
  ci_annotate warning "kind containers left behind: $(echo "$left" | tr '\n' ' ')"
fi
