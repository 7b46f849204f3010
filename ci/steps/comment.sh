#!/usr/bin/env bash
# On a pull request, posts the merged report.md as a comment, or updates the comment
# this token posted last (`gh pr comment --edit-last`), so a PR carries one preflight
# comment however often it is pushed. On any other event it does nothing.
#
#   GITHUB_EVENT_NAME    pull_request / pull_request_target: comment; anything else: skip
#   PREFLIGHT_PR_NUMBER  the pull request (github.event.pull_request.number)
#   PREFLIGHT_REPORT_MD  [default: reports/merged/report.md]
#   GH_TOKEN, GH_REPO    for gh (the job's token needs pull-requests: write)
#
# A comment that cannot be posted (a fork's pull request gets a read-only token) is a
# warning, not a failure: the gate step decides the job's result.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

case "${GITHUB_EVENT_NAME:-}" in
  pull_request|pull_request_target) ;;
  *) echo "not a pull request (${GITHUB_EVENT_NAME:-no event}): no comment"; exit 0 ;;
esac
pr=${PREFLIGHT_PR_NUMBER:-}
if ! [[ $pr =~ ^[0-9]+$ ]]; then
  ci_annotate warning "PREFLIGHT_PR_NUMBER ('$pr') is not a pull request number: no comment"
  exit 0
fi
need gh "posting the PR comment needs the GitHub CLI (preinstalled on GitHub's runners)"

report=${PREFLIGHT_REPORT_MD:-reports/merged/report.md}
body=$(mktemp "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/preflight-comment.XXXXXX")
trap 'rm -f -- "$body"' EXIT
# GitHub refuses comments over 65536 characters: cut well below, pointing at the run.
limit=60000
run_url="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-}/actions/runs/${GITHUB_RUN_ID:-}"
if [ -f "$report" ]; then
  if [ "$(wc -c < "$report")" -gt "$limit" ]; then
    head -c "$limit" "$report" > "$body"
    printf '\n\n_(cut: the whole report is in the [run](%s)\x27s preflight-report artifact)_\n' "$run_url" >> "$body"
  else
    cat "$report" > "$body"
  fi
else
  printf '# preflight\n\nNo merged report: preflight could not run. See the [run](%s).\n' "$run_url" > "$body"
fi

# --edit-last fails when this token has not commented yet (older gh) or when there is
# nothing to edit: then post a new comment.
if gh pr comment "$pr" --body-file "$body" --edit-last || gh pr comment "$pr" --body-file "$body"; then
  echo "commented on pull request #$pr"
else
  ci_annotate warning "could not comment on pull request #$pr (a fork's pull request has a read-only token); the report is in the summary"
fi
