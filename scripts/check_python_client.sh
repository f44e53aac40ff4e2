#!/usr/bin/env bash
# The Python client (clients/python), in CI: installs it with pip from the repository into
# a venv outside it ($STRATA_CLIENT_VENV, default ~/.cache/strata/venv-client; test tools
# from clients/python/requirements-test.txt, exact pins), then runs its test suite from
# outside the source tree (so the installed package is what is tested) against real
# standalone servers started by the tests (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { echo "== check_python_client: $* ($((SECONDS - started)) s)"; }
VENV="${STRATA_CLIENT_VENV:-$HOME/.cache/strata/venv-client}"
REQUIREMENTS=clients/python/requirements-test.txt

step "venv ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! cmp -s "$REQUIREMENTS" "$VENV/.strata-requirements-test"; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$VENV/.strata-requirements-test"
fi
step "pip install ./clients/python"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# Built from a copy: setuptools leaves build/ and *.egg-info next to the sources.
cp -r clients/python "$build/src"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$build/src"

step "strata binary"
STRATA_BIN=$(scripts/strata_bin.sh)
export STRATA_BIN
step "pytest"
cp -r clients/python/tests "$build/tests"
(cd "$build" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests)
step "OK"
