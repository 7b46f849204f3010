#!/usr/bin/env bash
# Joins the shards' reports: `preflight merge-reports --report-dir <root>/merged
# <root>/shard-*`, which writes report.json, report.md, junit.xml and report.html
# there. Records preflight's exit code as `exit-code` and exits 0, so that the
# summary, test results and artifact are published whatever the verdict; gate.sh then
# fails the job.
#
#   PREFLIGHT_REPORT_ROOT  where the shard artifacts were downloaded, one directory
#                          shard-I each [default: reports]
#   PREFLIGHT_SHARD_TOTAL  N, optional: when set, a shard that brought no report makes
#                          the result "could not run" (2) even if the others pass: a
#                          merged report of part of the run is not a pass.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

root=${PREFLIGHT_REPORT_ROOT:-reports}
merged=$root/merged
rm -rf -- "$merged"

shards=()
for dir in "$root"/shard-*; do
  if [ -d "$dir" ]; then shards+=("$dir"); fi
done
# shard-10 sorts before shard-2 in a glob: order them by number, for a stable command.
if [ "${#shards[@]}" -gt 0 ]; then
  mapfile -t shards < <(printf "%s\n" "${shards[@]}" | sort -V)
fi

missing=()
total=${PREFLIGHT_SHARD_TOTAL:-}
if [ -n "$total" ]; then
  for ((i = 1; i <= total; i++)); do
    if [ ! -d "$root/shard-$i" ]; then missing+=("$i"); fi
  done
fi

code=0
if [ "${#shards[@]}" -eq 0 ]; then
  ci_annotate error "no shard reports under $root/shard-*: every shard failed before writing one (see the shard jobs)"
  code=2
else
  pf=$(preflight_bin)
  echo "$pf merge-reports --report-dir $merged ${shards[*]}"
  "$pf" merge-reports --report-dir "$merged" "${shards[@]}" || code=$?
fi
if [ "${#missing[@]}" -gt 0 ]; then
  ci_annotate error "shard(s) ${missing[*]} of $total brought no report: the merged report covers only part of the run"
  if [ "$code" -lt 2 ]; then code=2; fi
fi

ci_output exit-code "$code"
ci_output report-dir "$merged"
echo "merged exit code: $code"
