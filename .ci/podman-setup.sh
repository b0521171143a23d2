#!/usr/bin/env bash
# Installs and configures podman for the container tests (test/containers.test.ts), before its first
# use: some of these settings cannot change once podman has stored anything. Safe to run again.
#
# Why each setting (found on the CI sandbox, a Debian 12 container running as root):
# - runtime runc: crun fails to start containers here; runc works.
# - cgroup_manager cgroupfs: there is no systemd to ask for cgroups.
# - events_logger file: no journald either.
# - default_ulimits: podman's default raises nofile and nproc, which needs CAP_SYS_RESOURCE the
#   sandbox does not have; ask for the shell's own hard limit instead.
# - storage driver overlay, set before the first use: with the fallback (vfs) `podman run --rm`
#   never removed its containers here.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  echo "podman-setup: installing podman and runc"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc
fi

# A configuration someone else wrote is left alone (it may already have storage behind it).
MARK='# Written by .ci/podman-setup.sh (see there for why).'
ours() {
  [ ! -e "$1" ] || head -n 1 "$1" | grep -qxF "$MARK"
}
write() {
  if ours "$1"; then as_root tee "$1" >/dev/null; else echo "podman-setup: keeping $1 (not written by this script)"; cat >/dev/null; fi
}

nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
as_root mkdir -p /etc/containers
write /etc/containers/containers.conf <<CONF
$MARK
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
write /etc/containers/storage.conf <<CONF
$MARK
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF

# One real check, so a machine where podman cannot run containers fails here, with podman's words.
podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}'
