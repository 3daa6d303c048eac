#!/usr/bin/env bash
# Installs the real peers the tests talk to, idempotently. A fresh Debian
# machine with the Rust toolchain has none of them.
#
#   prometheus-alertmanager   the real Alertmanager the detector's alert client
#                             is tested against (detector/tests/alert_real_alertmanager.rs).
#                             Debian's package starts no service when installed
#                             in a container (no systemd); tests start their own
#                             instance on a free port with a temp config.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runs apt-get as root directly, or through sudo when available.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup-peers: need root (or sudo) to run: $*" >&2; return 1; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

if command -v prometheus-alertmanager >/dev/null; then
  echo "prometheus-alertmanager: present ($(command -v prometheus-alertmanager))"
else
  echo "prometheus-alertmanager: installing (Debian package)"
  apt_install prometheus-alertmanager
  command -v prometheus-alertmanager >/dev/null || {
    echo "setup-peers: prometheus-alertmanager still not on PATH after install" >&2
    exit 1
  }
fi
