#!/usr/bin/env bash
# Turns preflight's exit code into the job's result, with an annotation that says
# which of the two failures it is.
#
#   PREFLIGHT_EXIT_CODE  the code merge.sh recorded (empty or anything not a number:
#                        the merge never ran, which counts as "could not run")
#
# Exits 0 (the target is no worse), 1 (the target behaves worse) or 2 (preflight
# could not run).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

code=${PREFLIGHT_EXIT_CODE:-}
case "$code" in
  0)
    echo "preflight: the target is no worse than the source"
    exit 0 ;;
  1)
    ci_annotate error "preflight: the target behaves worse than the source (see the summary and the preflight-report artifact)"
    exit 1 ;;
  *)
    ci_annotate error "preflight could not run (exit code ${code:-none}): the result says nothing about the target (see the merge and shard logs)"
    exit 2 ;;
esac
