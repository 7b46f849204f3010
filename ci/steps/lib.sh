# shellcheck shell=bash
# Shared by the step scripts (sourced, not run). Speaks to whichever CI system runs
# the step: GitHub Actions (GITHUB_ACTIONS=true), Azure Pipelines (TF_BUILD=True),
# or neither (a shell on a laptop), so that the scripts themselves stay the same on
# both and can be tried locally.
#
# Nothing here prints the value of an input: inputs may carry tokens (a download URL
# with a signature, a git URL with credentials).

ci_system() {
  if [ "${GITHUB_ACTIONS:-}" = true ]; then echo github
  elif [ "${TF_BUILD:-}" = True ] || [ "${TF_BUILD:-}" = true ]; then echo azure
  else echo none
  fi
}

# An annotation on the run's page: level is error, warning or notice.
ci_annotate() {
  level=$1; shift
  case "$(ci_system)" in
    github) echo "::$level::$*" ;;
    # Azure has no "notice": a plain line says the same in the log.
    azure) if [ "$level" = notice ]; then echo "$*"; else echo "##vso[task.logissue type=$level]$*"; fi ;;
    *) echo "$level: $*" >&2 ;;
  esac
}

# A value later steps read: GitHub `steps.<id>.outputs.<name>`; Azure, whose variable
# names cannot hold a hyphen, `$(PREFLIGHT_<NAME>)` (exit-code: PREFLIGHT_EXIT_CODE).
ci_output() {
  case "$(ci_system)" in
    github) echo "$1=$2" >> "$GITHUB_OUTPUT" ;;
    azure) echo "##vso[task.setvariable variable=PREFLIGHT_$(echo "$1" | tr 'a-z-' 'A-Z_')]$2" ;;
    *) echo "$1=$2" ;;
  esac
}

# Puts a directory first on PATH for later steps (and for the rest of this script).
ci_add_path() {
  case "$(ci_system)" in
    github) echo "$1" >> "$GITHUB_PATH" ;;
    azure) echo "##vso[task.prependpath]$1" ;;
  esac
  PATH="$1:$PATH"
}

# `need TOOL WHY`: stop with exit code 2 (the templates' "could not run") when a tool
# is missing, rather than failing later with a less clear message.
need() {
  command -v "$1" >/dev/null 2>&1 || { ci_annotate error "'$1' is missing: $2"; exit 2; }
}

# The preflight executable: $PREFLIGHT (a path) if set, else `preflight` on PATH.
preflight_bin() {
  echo "${PREFLIGHT:-preflight}"
}
