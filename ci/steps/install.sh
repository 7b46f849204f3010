#!/usr/bin/env bash
# Installs preflight at a pinned version, as <root>/bin/preflight, and puts that
# directory on PATH for the later steps.
#
#   PREFLIGHT_BINARY_URL    optional: a prebuilt Linux x86_64 binary (or a .tar.gz
#                           holding one) to download instead of building; https:// or
#                           file://. Needs PREFLIGHT_BINARY_SHA256.
#   PREFLIGHT_BINARY_SHA256 the SHA-256 of what that URL serves (checked before
#                           anything is installed).
#   PREFLIGHT_GIT           otherwise: the preflight repository, built with
#                           `cargo install --git ... --rev ... --locked`.
#   PREFLIGHT_REF           the commit to build (a full SHA: the caches are keyed by
#                           it, so a branch name would keep serving an old build).
#   PREFLIGHT_INSTALL_ROOT  where to install [default: $CARGO_HOME, else ~/.cargo],
#                           the binary going to <root>/bin/preflight.
#   PREFLIGHT_CACHE_HIT     "true" when the CI cache restored that binary: then it is
#                           only checked, not rebuilt.
#
# Exit codes: 0 installed, 2 could not install (nothing is left in place then).
# Neither URL is printed: either may carry a token.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

root=${PREFLIGHT_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}
bin_dir=$root/bin
bin=$bin_dir/preflight

if [ "${PREFLIGHT_CACHE_HIT:-}" = true ] && [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "preflight restored from the cache: $("$bin" --version)"
  ci_add_path "$bin_dir"
  exit 0
fi

if [ -n "${PREFLIGHT_BINARY_URL:-}" ]; then
  sha=${PREFLIGHT_BINARY_SHA256:-}
  # A download without a checksum to hold it to could be anything: refuse.
  if ! printf '%s' "$sha" | grep -Eq '^[0-9a-fA-F]{64}$'; then
    ci_annotate error "PREFLIGHT_BINARY_URL is set but PREFLIGHT_BINARY_SHA256 is not a SHA-256 (64 hex digits)"
    exit 2
  fi
  need curl "downloading PREFLIGHT_BINARY_URL needs curl"
  need sha256sum "checking PREFLIGHT_BINARY_SHA256 needs sha256sum (coreutils)"
  work=$(mktemp -d "${RUNNER_TEMP:-${AGENT_TEMPDIRECTORY:-${TMPDIR:-/tmp}}}/preflight-install.XXXXXX")
  trap 'rm -rf -- "$work"' EXIT
  echo "downloading the prebuilt preflight (PREFLIGHT_BINARY_URL)"
  # -f: an HTTP error is a failure, not a saved error page. Only https (and file://
  # for a local mirror), also after redirects.
  if ! curl -fsSL --retry 3 --proto '=https,file' --proto-redir '=https' \
      -o "$work/download" "$PREFLIGHT_BINARY_URL"; then
    ci_annotate error "could not download PREFLIGHT_BINARY_URL"
    exit 2
  fi
  actual=$(sha256sum "$work/download" | cut -d' ' -f1)
  if [ "$actual" != "$(printf '%s' "$sha" | tr 'A-F' 'a-f')" ]; then
    ci_annotate error "the download from PREFLIGHT_BINARY_URL has SHA-256 $actual, not PREFLIGHT_BINARY_SHA256 $sha: nothing installed"
    exit 2
  fi
  # The query string (e.g. a signature) is not part of the file name.
  url_path=${PREFLIGHT_BINARY_URL%%\?*}
  case "$url_path" in
    *.tar.gz|*.tgz)
      mkdir "$work/unpacked"
      tar -xzf "$work/download" -C "$work/unpacked"
      found=$(find "$work/unpacked" -type f -name preflight | head -n 1)
      if [ -z "$found" ]; then
        ci_annotate error "the archive from PREFLIGHT_BINARY_URL holds no file named preflight"
        exit 2
      fi
      candidate=$found ;;
    *) candidate=$work/download ;;
  esac
  chmod 0755 "$candidate"
  # Run it before it replaces anything: a binary for another platform stops here.
  if ! version=$("$candidate" --version 2>&1); then
    ci_annotate error "the binary from PREFLIGHT_BINARY_URL does not run here: $version"
    exit 2
  fi
  mkdir -p "$bin_dir"
  # Copy next to the destination, then rename: a reader never sees half a file.
  cp "$candidate" "$bin.partial.$$"
  mv -f "$bin.partial.$$" "$bin"
else
  if [ -z "${PREFLIGHT_GIT:-}" ] || [ -z "${PREFLIGHT_REF:-}" ]; then
    ci_annotate error "set PREFLIGHT_GIT and PREFLIGHT_REF (the preflight repository and the commit to build), or PREFLIGHT_BINARY_URL and PREFLIGHT_BINARY_SHA256"
    exit 2
  fi
  case "$PREFLIGHT_GIT" in
    *example.invalid*)
      ci_annotate error "PREFLIGHT_GIT is still the template's placeholder: set it to where preflight's repository is"
      exit 2 ;;
  esac
  if ! printf '%s' "$PREFLIGHT_REF" | grep -Eq '^[0-9a-f]{40}$'; then
    ci_annotate warning "PREFLIGHT_REF is not a full commit SHA: a branch or tag can move while the cache keyed by it keeps the old build"
  fi
  need cargo "building preflight needs a Rust toolchain (https://rustup.rs), or set PREFLIGHT_BINARY_URL"
  echo "building preflight at $PREFLIGHT_REF (cargo install --locked)"
  # --force: on a cache miss a stale binary may still sit there (a self-hosted runner);
  # --locked: the dependency versions preflight was tested with.
  if ! cargo install --git "$PREFLIGHT_GIT" --rev "$PREFLIGHT_REF" --locked --force \
      --root "$root" preflight; then
    ci_annotate error "cargo install of preflight at $PREFLIGHT_REF failed (see the log above)"
    exit 2
  fi
fi

echo "installed $("$bin" --version) at $bin"
ci_add_path "$bin_dir"
