#!/usr/bin/env bash
# The test command (the README's second command, and what .ci/run calls).
#
# Installs what the tests need, fills the components cache (builds etcd,
# kube-apiserver, kube-controller-manager and helm from their Go modules once per
# machine; later runs reuse ~/.cache/preflight), starts a Docker engine and builds the
# kind node images (once per machine), then runs formatting, lints and every test
# (the fuzz seeds and kept findings among them), on local control planes and on kind,
# and prints the slowest tests. Exits non-zero, loudly, on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# libtest's --report-time (below) is unstable; RUSTC_BOOTSTRAP lets the stable test
# binaries accept it. It is set for every cargo call here, not only `cargo test`: some
# dependencies' build scripts (anyhow, proc-macro2, thiserror) rerun when it changes,
# and everything above them with them, so a clippy without it and a test build with it
# would rebuild each other's artifacts in a build directory kept between runs.
export RUSTC_BOOTSTRAP=1

say() { printf '\n==> %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is missing: $2" >&2; exit 2; }; }

need cargo "install Rust with rustup (https://rustup.rs)"
need go "install Go >= 1.22; the Kubernetes components are built from their Go modules"
# Headless Chromium renders report.html in the tests (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  say "installing chromium (renders report.html in the tests)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "error: chromium is missing: sudo apt-get install chromium" >&2; exit 2
  fi
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

say "layers: preflight-core depends on no cluster client, runtime, HTTP or process crate"
./ci/layers.sh

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Every fuzz seed and kept finding runs through its target's check in `cargo test`
# (harness/tests/fuzz_seeds.rs); fuzzing itself is bounded and nightly
# (ci/github/fuzz-nightly.yml), or here when PREFLIGHT_FUZZ_SECONDS is set.
if [ -n "${PREFLIGHT_FUZZ_SECONDS:-}" ]; then
  say "cargo fuzz: scenario files, runs.json, webhook reviews, twins (${PREFLIGHT_FUZZ_SECONDS}s each)"
  ./ci/fuzz.sh
else
  say "cargo check of the fuzz targets (fuzzing: PREFLIGHT_FUZZ_SECONDS=45 ./ci/fuzz.sh)"
  # Its build directory lives in the cache, as ci/fuzz.sh's does: CI clones afresh.
  cargo check --quiet --manifest-path fuzz/Cargo.toml --bins \
    --target-dir "${PREFLIGHT_CACHE_DIR:-$HOME/.cache/preflight}/fuzz-check"
fi

say "actionlint ci/github/*.yml .github/workflows/*.yml (built from its Go module once per machine)"
tools="${PREFLIGHT_CACHE_DIR:-$HOME/.cache/preflight}/tools"
if [ ! -x "$tools/actionlint" ]; then
  GOBIN="$tools" GOFLAGS=-mod=mod go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
fi
"$tools/actionlint" -shellcheck= ci/github/*.yml .github/workflows/*.yml

say "components: the pinned source and target (built once per machine)"
cargo run --quiet -- components ensure
# The cross-version tests walk v1.29 -> v1.32 (v1.31 and v1.32 as the newest patches
# that build here); every other version is built on demand, never in CI.
say "components: v1.31 and v1.32 for the path tests (built once per machine)"
cargo run --quiet -- components ensure --version v1.31 --version v1.32

say "Docker engine and kind node images for the pinned source and target (built once per machine)"
if [ "$(id -u)" = 0 ]; then ./ci/docker-engine.sh; elif ! docker info >/dev/null 2>&1; then
  echo "error: no Docker engine answers: run 'sudo ci/docker-engine.sh' (the kind tests need one)" >&2; exit 2
fi
cargo run --quiet -- components kind-image
# v1.31 too: kind configures it as it does v1.29 and v1.30 (kubeadm v1beta3), which
# one test checks because kubeadm itself moved to v1beta4 there.
cargo run --quiet -- components kind-image --version v1.31

say "cargo test (the kind tests, one at a time, beside all the others)"
# libtest's --report-time puts each test's time after its result; the times give the
# slowest tests at the end.
#
# The kind tests (module kind_clusters of the integration binary) each need most of
# this machine and take turns; among the shared test threads, one waiting for another
# would hold a thread for many minutes. So they run on their own thread, in their own
# process group (stopped if this script stops), beside the rest, which run one at a
# time too: two threads there beside a kind cluster loaded 2 cores to a load average of
# 19 and finished no sooner, as the kind tests take longer anyway. Kind lines carry
# "kind| ".
log="$(mktemp "${TMPDIR:-/tmp}/preflight-test.XXXXXX")"
kind_log="$(mktemp "${TMPDIR:-/tmp}/preflight-kind-test.XXXXXX")"
kind_pid=""
trap 'rm -f "$log" "$kind_log" "$kind_log.rc"; [ -z "$kind_pid" ] || kill -- -"$kind_pid" 2>/dev/null || true' EXIT
cargo test --workspace --no-run
setsid bash -c 'cargo test -p preflight --test integration -- kind_clusters:: --test-threads=1 \
  -Z unstable-options --report-time 2>&1 | tee "$1" | sed -u "s/^/kind| /" >&2
  echo "${PIPESTATUS[0]}" >"$1.rc"' kind "$kind_log" &
kind_pid=$!
status=0
# Whole lines only (sed -u), on both sides: libtest prints a test's name, then its result
# when it ends, and a kind line written in between would split it.
cargo test --workspace -- --skip kind_clusters:: --test-threads=1 -Z unstable-options --report-time 2>&1 |
  sed -u '' | tee "$log" || status=$?
wait "$kind_pid" || true
kind_pid=""
kind_status="$(cat "$kind_log.rc" 2>/dev/null || echo 1)"
if [ "$kind_status" != 0 ]; then
  say "the kind tests FAILED (exit $kind_status): their lines are those marked 'kind| ' above"
  status=1
fi
say "the 10 slowest tests"
# awk reads to the end and prints the first ten: `head` would stop the pipe early, and
# pipefail would count sort's SIGPIPE as a failure.
cat "$log" "$kind_log" | sed -n 's/^test \(.*\) \.\.\. [a-zA-Z]* <\([0-9.]*\)s>$/\2\t\1/p' | sort -rn |
  awk -F '\t' 'NR <= 10 { printf "%8.1fs  %s\n", $1, $2 }' >&2
exit "$status"
