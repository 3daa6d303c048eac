#!/usr/bin/env bash
# Installs the real peers the tests talk to, idempotently. A fresh Debian
# machine with the Rust toolchain has none of them.
#
#   prometheus-alertmanager   the real Alertmanager the detector's alert client
#                             is tested against (detector/tests/alert_real_alertmanager.rs).
#                             Debian's package starts no service when installed
#                             in a container (no systemd); tests start their own
#                             instance on a free port with a temp config.
#   prometheus                the real Prometheus that scrapes both binaries'
#                             /metrics in the end-to-end suite (tests/e2e_*.rs,
#                             found through tests/support/prometheus.rs). Same
#                             story: no service starts; tests run their own on
#                             a free port with a temp config and TSDB directory.
#   Python OpenTelemetry SDK  opentelemetry-sdk and the OTLP exporters (gRPC and
#                             HTTP/protobuf), pinned, from PyPI into the project's
#                             own venv .peers/venv, so CI and a fresh machine run
#                             the same versions (agent/tests/e2e_otel_sdk.rs).
#                             Tests find it through agent/tests/support/python.rs
#                             (or ARGUS_PYTHON); a missing SDK fails them loudly.
#   promtool (Debian `prometheus`) and amtool (comes with
#   prometheus-alertmanager)  check the dashboards' PromQL, unit-test the
#                             alert rules, check and route-test alertmanager.yml
#                             (ops/tests). Installing `prometheus` starts no
#                             service in a container either.
#   kubernetes-validate       pinned, from PyPI into the same venv: validates every
#                             manifest in deploy/ against the Kubernetes schemas
#                             it ships (offline) (ops/tests/ops_deploy.rs).
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

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  echo "prometheus: present ($(command -v prometheus))"
else
  echo "prometheus: installing (Debian package)"
  apt_install prometheus
  command -v prometheus >/dev/null || {
    echo "setup-peers: prometheus still not on PATH after install" >&2
    exit 1
  }
fi

# Python OpenTelemetry SDK, pinned. Bump the versions together (the SDK and its
# exporters are released in lockstep).
OTEL_PY_VERSION=1.45.2
otel_py_packages=(
  "opentelemetry-api==$OTEL_PY_VERSION"
  "opentelemetry-sdk==$OTEL_PY_VERSION"
  "opentelemetry-exporter-otlp-proto-grpc==$OTEL_PY_VERSION"
  "opentelemetry-exporter-otlp-proto-http==$OTEL_PY_VERSION"
)
venv=.peers/venv
otel_py_check() {
  "$venv/bin/python" - "$OTEL_PY_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http
assert version("opentelemetry-sdk") == sys.argv[1], version("opentelemetry-sdk")
PY
}
if [ -x "$venv/bin/python" ] && otel_py_check; then
  echo "python opentelemetry-sdk $OTEL_PY_VERSION: present ($venv)"
else
  echo "python opentelemetry-sdk $OTEL_PY_VERSION: installing into $venv (PyPI)"
  python=$(command -v python3 || true)
  [ -n "$python" ] || { echo "setup-peers: python3 is needed for the OpenTelemetry SDK peer" >&2; exit 1; }
  if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${otel_py_packages[@]}"
  otel_py_check || {
    echo "setup-peers: the OpenTelemetry SDK is still not importable from $venv/bin/python" >&2
    exit 1
  }
fi

# promtool ships with Debian's prometheus package, amtool with the
# alertmanager one (both installed above).
command -v promtool >/dev/null || { echo "setup-peers: promtool missing (it comes with prometheus)" >&2; exit 1; }
command -v amtool >/dev/null || { echo "setup-peers: amtool missing (it comes with prometheus-alertmanager)" >&2; exit 1; }

# kubernetes-validate, pinned, into the project venv (it bundles the
# Kubernetes JSON schemas, so validation needs no network).
KUBERNETES_VALIDATE_VERSION=1.37.0
if [ -x "$venv/bin/kubernetes-validate" ] &&
  [ "$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("kubernetes-validate"))' 2>/dev/null)" = "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: present ($venv)"
else
  echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: installing into $venv (PyPI)"
  [ -x "$venv/bin/python" ] || "$(command -v python3)" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  "$venv/bin/kubernetes-validate" --version >/dev/null || {
    echo "setup-peers: kubernetes-validate does not run from $venv/bin" >&2
    exit 1
  }
fi
