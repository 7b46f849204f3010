#!/usr/bin/env bash
# Shows the merged report.md on the run's page: appended to the job summary on GitHub
# ($GITHUB_STEP_SUMMARY), attached as a summary tab on Azure (task.uploadsummary).
# When there is no report.md, says so there rather than leaving the page blank.
#
#   PREFLIGHT_REPORT_MD  [default: reports/merged/report.md]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

report=${PREFLIGHT_REPORT_MD:-reports/merged/report.md}
# GitHub refuses a step summary over 1 MiB (and then shows none): keep under it.
limit=1000000

if [ ! -f "$report" ]; then
  ci_annotate warning "no $report: preflight wrote no merged report (see the merge step)"
  report=$(mktemp "${RUNNER_TEMP:-${AGENT_TEMPDIRECTORY:-${TMPDIR:-/tmp}}}/preflight-summary.XXXXXX")
  printf '# preflight\n\nNo merged report: preflight could not run or the shards brought no reports. See the shard and merge logs.\n' > "$report"
fi

case "$(ci_system)" in
  github)
    if [ "$(wc -c < "$report")" -gt "$limit" ]; then
      head -c "$limit" "$report" >> "$GITHUB_STEP_SUMMARY"
      printf '\n\n_(cut at %s bytes: the whole report.md is in the preflight-report artifact)_\n' "$limit" >> "$GITHUB_STEP_SUMMARY"
    else
      cat "$report" >> "$GITHUB_STEP_SUMMARY"
    fi ;;
  # Azure wants an absolute path.
  azure) echo "##vso[task.uploadsummary]$(cd "$(dirname "$report")" && pwd)/$(basename "$report")" ;;
  *) cat "$report" ;;
esac
