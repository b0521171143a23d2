#!/usr/bin/env bash
# Installs Prometheus for test/prometheus.test.ts: Debian's prometheus package brings the prometheus
# and promtool binaries. The test runs its own prometheus (its own configuration and data directory,
# on a free port), so the service the package sets up is not wanted: it is kept from starting while
# the package installs, and stopped and disabled if it runs anyway. Safe to run again.
#
# Why the policy-rc.d: the package's maintainer scripts start the service through invoke-rc.d. In a
# container without systemd that runs the package's init script, which would start a prometheus on
# :9090 (the gateway's default admin port) or fail the install; a policy-rc.d that answers 101
# ("not allowed") makes invoke-rc.d skip the start and succeed. One that someone else wrote is kept.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  echo "prometheus-setup: $(prometheus --version 2>&1 | head -n 1)"
  exit 0
fi

POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# Written by .ci/prometheus-setup.sh while it installs prometheus; removed after.\nexit 101\n' | as_root tee "$POLICY" >/dev/null
  as_root chmod 755 "$POLICY"
  trap 'as_root rm -f "$POLICY"' EXIT
fi

echo "prometheus-setup: installing prometheus (prometheus and promtool)"
as_root apt-get update -q
# --no-install-recommends: the exporters the package recommends are not needed here.
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus

# Should a service have started anyway (a policy that allowed it), stop it and keep it off.
if [ -d /run/systemd/system ]; then
  as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
  as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

# One real check, so a machine where the binaries cannot run fails here.
prometheus --version 2>&1 | head -n 1
promtool --version >/dev/null
