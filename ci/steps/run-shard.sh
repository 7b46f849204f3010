#!/usr/bin/env bash
# Runs one shard of the preflight run: `preflight run ... --shard I/N
# --report-dir <root>/shard-I`. Every shard job of the CI matrix runs this with its
# own I; the merge job then joins the shards' report directories.
#
#   PREFLIGHT_SHARD_INDEX    I, 1-based (required)
#   PREFLIGHT_SHARD_TOTAL    N (required)
#   PREFLIGHT_SCENARIOS      scenario files, directories (their *.yaml and *.yml
#                            files) or names of embedded scenarios, space separated;
#                            globs are expanded. Empty: the *.yaml/*.yml files of
#                            PREFLIGHT_SCENARIO_DIR when it has any, else preflight's
#                            embedded scenarios.
#   PREFLIGHT_SCENARIO_DIR   [default: preflight]
#   PREFLIGHT_TWIN           a twin directory (from `preflight capture`) to replay
#                            instead of scenarios.
#   PREFLIGHT_PATH_VERSIONS  the versions to walk, e.g. v1.29,v1.30,v1.31 (`--path`);
#                            empty: preflight's own source and target.
#   PREFLIGHT_PROVIDER       local (default: no Docker needed) or kind
#   PREFLIGHT_EXTRA_ARGS     more `preflight run` flags, space separated, e.g.
#                            `--aks-upgrades preflight/aks.yaml` (no quoting: a value
#                            cannot hold a space)
#   PREFLIGHT_REPORT_ROOT    [default: reports]
#
# Exit codes: preflight's own (0 pass, 1 findings) are left to the merge job to judge,
# so this exits 0 for them and records `exit-code`; anything else (preflight could
# not run this shard) fails the shard's job here.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

index=${PREFLIGHT_SHARD_INDEX:-}
total=${PREFLIGHT_SHARD_TOTAL:-}
if ! [[ $index =~ ^[1-9][0-9]*$ && $total =~ ^[1-9][0-9]*$ ]] || [ "$index" -gt "$total" ]; then
  ci_annotate error "PREFLIGHT_SHARD_INDEX ('$index') and PREFLIGHT_SHARD_TOTAL ('$total') must be whole numbers with 1 <= index <= total"
  exit 2
fi
provider=${PREFLIGHT_PROVIDER:-local}
case "$provider" in
  local|kind) ;;
  *) ci_annotate error "PREFLIGHT_PROVIDER must be local or kind, not '$provider'"; exit 2 ;;
esac

# What to run: a twin, the listed scenarios, the scenario directory, or (no argument)
# preflight's embedded scenarios.
targets=()
if [ -n "${PREFLIGHT_TWIN:-}" ]; then
  if [ -n "${PREFLIGHT_SCENARIOS:-}" ]; then
    ci_annotate error "give PREFLIGHT_TWIN or PREFLIGHT_SCENARIOS, not both"
    exit 2
  fi
  if [ "$total" -gt 1 ]; then
    # A twin's passes share one installation per version: it replays whole.
    ci_annotate error "a twin replays whole: run it with one shard (PREFLIGHT_SHARD_TOTAL=1, not $total)"
    exit 2
  fi
  targets=("$PREFLIGHT_TWIN")
else
  words=${PREFLIGHT_SCENARIOS:-}
  if [ -z "$words" ]; then
    dir=${PREFLIGHT_SCENARIO_DIR:-preflight}
    if compgen -G "$dir/*.yaml" >/dev/null || compgen -G "$dir/*.yml" >/dev/null; then
      words="$dir"
    fi
  fi
  # Unquoted on purpose: split on spaces and expand globs. A glob that matches
  # nothing stays as written, and preflight then says which file is missing.
  # shellcheck disable=SC2086
  for word in $words; do
    if [ -d "$word" ]; then
      for file in "$word"/*.yaml "$word"/*.yml; do
        if [ -f "$file" ]; then targets+=("$file"); fi
      done
    else
      targets+=("$word")
    fi
  done
fi

report_dir=${PREFLIGHT_REPORT_ROOT:-reports}/shard-$index
# A self-hosted runner keeps its workspace: an earlier run's files must not be
# uploaded as this shard's.
rm -rf -- "$report_dir"

args=(run "${targets[@]}" --provider "$provider")
if [ -n "${PREFLIGHT_PATH_VERSIONS:-}" ]; then args+=(--path "$PREFLIGHT_PATH_VERSIONS"); fi
args+=(--shard "$index/$total" --report-dir "$report_dir")
extra=()
if [ -n "${PREFLIGHT_EXTRA_ARGS:-}" ]; then read -r -a extra <<< "$PREFLIGHT_EXTRA_ARGS"; fi
args+=("${extra[@]}")

pf=$(preflight_bin)
echo "shard $index/$total: $pf ${args[*]}"
code=0
"$pf" "${args[@]}" || code=$?
ci_output exit-code "$code"
ci_output report-dir "$report_dir"
case "$code" in
  0) echo "shard $index/$total: the target is no worse here" ;;
  1) ci_annotate warning "shard $index/$total: preflight found that the target behaves worse (the merge job fails the run)" ;;
  *) ci_annotate error "shard $index/$total: preflight could not run (exit code $code)"; exit "$code" ;;
esac
