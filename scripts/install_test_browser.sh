#!/usr/bin/env bash
# Installs headless Chromium (Debian packages `chromium` and `chromium-driver`) for the
# admin page test (tests/ui.rs) when it is missing. Uses apt-get as root (or sudo).
# Without it that test is skipped, or fails under STRATA_REQUIRE_SERVERS=1.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_test_browser: no apt-get here; install chromium yourself or set STRATA_CHROMIUM_BIN" >&2
  exit 1
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

echo "== installing chromium and chromium-driver (apt-get)" >&2
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromium >&2
