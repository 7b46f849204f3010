#!/usr/bin/env bash
# Fuzzes what preflight reads from others (nightly: .github/workflows/fuzz-nightly.yml;
# ci/test.sh calls it when PREFLIGHT_FUZZ_SECONDS is set):
#   scenario        scenario files, through the parser and validator `preflight run` uses
#   report          runs.json of `merge-reports` (and snapshot JSON of `diff`), merged,
#                   assembled and rendered in all four formats
#   webhook_review  AdmissionReview / ConversionReview bodies to the sample webhook's answer
#   twin            twin.yaml and the captured files under cluster/, loaded as replay loads them
#
# Installs cargo-fuzz once per machine (into $PREFLIGHT_CACHE_DIR/tools/cargo-fuzz, default
# ~/.cache/preflight), builds the targets with the nightly toolchain, and runs each for
# $PREFLIGHT_FUZZ_SECONDS (default 45) on a copy of its seeds in fuzz/corpus/<target>/
# (the corpus growth is thrown away; only the seeds are kept in the repository).
# Exits non-zero, loudly, on any crash, timeout (one input over 10 s) or out-of-memory
# (over 2 GiB); the input that did it is kept in fuzz/artifacts/<target>/.
# Prints one line per target (executions, seconds) and writes them to
# target/fuzz-summary.tsv.
#
# No sanitizer: the harness forbids unsafe code, so AddressSanitizer would find nothing
# the Rust checks do not, at about twice the build time and half the executions. Debug
# assertions and overflow checks stay on (cargo-fuzz's default).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*" >&2; }

CARGO_FUZZ_VERSION=0.13.2
seconds="${PREFLIGHT_FUZZ_SECONDS:-45}"
tools="${PREFLIGHT_CACHE_DIR:-$HOME/.cache/preflight}/tools/cargo-fuzz"
targets=(scenario report webhook_review twin)

case "$seconds" in '' | *[!0-9]*) echo "error: PREFLIGHT_FUZZ_SECONDS=$seconds: expected whole seconds" >&2; exit 2 ;; esac

if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools (once per machine)"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$tools"
fi
# cargo-fuzz runs as `cargo fuzz` (a cargo subcommand), on the nightly toolchain. Its
# build directory lives in the cache, not the checkout: CI clones afresh every time, and
# the instrumented dependencies take about 15 minutes to build from nothing.
fuzz_target="${PREFLIGHT_CACHE_DIR:-$HOME/.cache/preflight}/fuzz-target"
fuzz() { (cd fuzz && PATH="$tools/bin:$PATH" cargo +nightly fuzz "$@"); }

say "cargo fuzz build (nightly, no sanitizer; build directory $fuzz_target)"
fuzz build --sanitizer none --target-dir "$fuzz_target"

work="$(mktemp -d "${TMPDIR:-/tmp}/preflight-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p target
summary=target/fuzz-summary.tsv
printf 'target\texecutions\tseconds\tresult\n' >"$summary"
failed=()
for t in "${targets[@]}"; do
  say "cargo fuzz run $t for ${seconds}s"
  mkdir -p "$work/$t"
  cp fuzz/corpus/"$t"/* "$work/$t"/
  log="$work/$t.log"
  result=ok
  # The copy is the corpus libFuzzer reads and grows; the seeds stay as they are. The
  # targets' own scratch folders go under $work too (TMPDIR), so nothing is left.
  if ! TMPDIR="$work" fuzz run --sanitizer none --target-dir "$fuzz_target" "$t" "$work/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    result=FAILED
    failed+=("$t")
    tail -n 60 "$log" >&2
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
  # libFuzzer's last words: "Done 12345 runs in 45 second(s)".
  secs="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)"
  printf '%s\t%s\t%s\t%s\n' "$t" "${execs:-0}" "${secs:-?}" "$result" >>"$summary"
  printf 'fuzz %-15s %10s executions in %4ss  %s\n' "$t" "${execs:-0}" "${secs:-?}" "$result"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "error: fuzzing found a crash, timeout or out-of-memory in: ${failed[*]} (inputs in fuzz/artifacts/; once fixed, keep each in fuzz/regressions/<target>/ so every test run checks it)" >&2
  exit 1
fi
