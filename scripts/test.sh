#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
#   ./scripts/test.sh            everything: peers set-up, fmt, clippy, all tests
#   SKIP_PEERS=1 ./scripts/test.sh   skip installing real peers (tests needing
#                                    them then fail loudly, they never skip)
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n\033[1m== %s\033[0m (%ss)\n' "$1" "$SECONDS"; }

if [ -z "${SKIP_PEERS:-}" ]; then
  stage "set-up: real peers (idempotent)"
  bash scripts/setup-peers.sh
fi
# Peers installed into the project's own prefix are found through PATH.
export PATH="$PWD/.peers/bin:$PATH"
# One-shot builds gain nothing from incremental state, which would add
# gigabytes to target/ on a machine whose disk CI shares; override to opt in.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "cargo test (workspace: unit, integration, end-to-end)"
cargo test --workspace --locked --no-fail-fast

stage "done"
