#!/usr/bin/env bash
# Installs the real protocol peers the tests run against, from Debian's packages, when missing:
# HAProxy as a PROXY-protocol sender (test/proxy-protocol.test.ts). Safe to run again.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "peers-setup: installing ${missing[*]}"
  as_root apt-get update -q
  # policy-rc.d: a package must not start its own service here (no init system; the tests run their own).
  printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
  as_root chmod +x /usr/sbin/policy-rc.d
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  as_root rm -f /usr/sbin/policy-rc.d
fi
haproxy -v | head -n 1
