#!/usr/bin/env bash
# Makes a Docker engine usable for the kind provider on this machine, offline.
#
#   ci/docker-engine.sh          install (Debian's docker.io) and start dockerd if none answers
#
# What it does, and why:
# - Debian's `docker.io`, `debootstrap` (the kind node image's root file system) and
#   `busybox-static` (the workload image) come from the machine's own package mirror.
# - dockerd runs with `--dns 127.0.0.1`: no container's DNS leaves the machine.
# - `iptables -I DOCKER-USER -o <uplink> -j DROP`: no container traffic is forwarded out
#   of the machine's uplink (kind's bridge, pods and services stay in network namespaces
#   on this machine).
# - Some hosts (Firecracker VMs among them) withhold capabilities from every process, so
#   runc fails `--privileged` containers with "unable to apply caps". Only when the
#   bounding set lacks capabilities that `--privileged` asks for, a runc wrapper that
#   drops the ones the host cannot grant is registered as the default runtime.
#
# Idempotent: a second call with an engine already answering only re-checks the drop rule.
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
state=${PREFLIGHT_DOCKER_STATE:-/var/lib/preflight-docker}

if [ "$(id -u)" != 0 ]; then
  if docker info >/dev/null 2>&1; then exit 0; fi
  echo "error: no Docker engine answers and installing one needs root (sudo $0)" >&2
  exit 2
fi

missing=()
for pair in dockerd:docker.io debootstrap:debootstrap busybox:busybox-static jq:jq capsh:libcap2-bin iptables:iptables; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The capabilities `--privileged` asks for that this host's bounding set lacks.
bounding=$(awk '/^CapBnd/{print $2}' /proc/self/status)
lacking=$( (capsh --decode=000001ffffffffff | cut -d= -f2 | tr ',' '\n' | sort) |
  comm -23 - <(capsh --decode="$bounding" | cut -d= -f2 | tr ',' '\n' | sort) | paste -sd, -)

runtime_flags=()
if [ -n "$lacking" ]; then
  mkdir -p "$state"
  wrapper="$state/runc-capfix"
  say "this host withholds $lacking: registering a runc wrapper that drops them ($wrapper)"
  cat >"$wrapper" <<'WRAP'
#!/bin/bash
# Registered by preflight's ci/docker-engine.sh: drops from an OCI spec the capabilities
# that this host's bounding set lacks, then runs runc.
granted=$(capsh --decode="$(awk '/^CapBnd/{print $2}' /proc/self/status)" | cut -d= -f2 | tr a-z A-Z)
strip() { # $1: a spec file, $2: the jq path of its process object
  [ -f "$1" ] || return 0
  jq --arg ok "$granted" "if $2.capabilities then $2.capabilities |= with_entries(.value |= map(select(IN(\$ok | split(\",\")[])))) else . end" \
    "$1" >"$1.capfix" && mv "$1.capfix" "$1"
}
prev=""
for a in "$@"; do
  case "$prev" in --bundle | -b) strip "$a/config.json" .process ;; --process | -p) strip "$a" "" ;; esac
  case "$a" in --bundle=*) strip "${a#--bundle=}/config.json" .process ;; --process=*) strip "${a#--process=}" "" ;; esac
  prev="$a"
done
exec /usr/sbin/runc "$@"
WRAP
  chmod 0755 "$wrapper"
  runtime_flags=(--add-runtime "capfix=$wrapper" --default-runtime capfix)
fi

if ! docker info >/dev/null 2>&1; then
  mkdir -p "$state"
  say "starting dockerd (log: $state/dockerd.log)"
  nohup dockerd --dns 127.0.0.1 "${runtime_flags[@]}" >"$state/dockerd.log" 2>&1 &
  deadline=$(($(date +%s) + 60))
  until docker info >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "error: dockerd did not answer within 60 s; last lines of $state/dockerd.log:" >&2
      tail -n 20 "$state/dockerd.log" >&2
      exit 2
    fi
    sleep 0.5
  done
fi

uplink=$(ip route show default 2>/dev/null | awk '{print $5; exit}')
if [ -n "$uplink" ] && iptables -L DOCKER-USER >/dev/null 2>&1; then
  iptables -C DOCKER-USER -o "$uplink" -j DROP 2>/dev/null || iptables -I DOCKER-USER -o "$uplink" -j DROP
fi
# kind bind-mounts /lib/modules read-only into its nodes.
mkdir -p /lib/modules
say "Docker engine $(docker info --format '{{.ServerVersion}}') ready ($(docker info --format '{{.CgroupVersion}}' 2>/dev/null || echo '?') cgroups, container traffic kept on this machine${uplink:+: $uplink drops forwarded traffic})"
