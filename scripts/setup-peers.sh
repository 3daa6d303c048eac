#!/usr/bin/env bash
# Installs the real peers the tests talk to, idempotently. A fresh Debian
# machine with the Rust toolchain has none of them.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "(no peers needed yet)"
