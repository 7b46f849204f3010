#!/usr/bin/env bash
# The shard matrix for GitHub Actions: `shards=[1,2,...,N]` (JSON) for
# `strategy.matrix.shard: ${{ fromJSON(needs.plan.outputs.shards) }}`, so that N is
# set in one place (PREFLIGHT_SHARDS) and the merge job knows it too.
#
#   PREFLIGHT_SHARDS  N, 1 to 256 (GitHub's limit on a matrix)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

n=${PREFLIGHT_SHARDS:-}
if ! [[ $n =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt 256 ]; then
  ci_annotate error "PREFLIGHT_SHARDS must be a whole number from 1 to 256, not '$n'"
  exit 2
fi
list=$(seq -s, 1 "$n")
ci_output shards "[$list]"
ci_output total "$n"
echo "$n shard(s)"
