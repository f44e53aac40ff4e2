#!/usr/bin/env bash
# Prints the path of the strata binary the check scripts run: $STRATA_BIN when set, else
# the debug build, built first (cargo's output goes to stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${STRATA_BIN:-}" ]; then
  echo "$STRATA_BIN"
  exit 0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
cargo build -p strata --bin strata --locked >&2
echo "$CARGO_TARGET_DIR/debug/strata"
