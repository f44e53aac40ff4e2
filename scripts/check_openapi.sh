#!/usr/bin/env bash
# Checks the OpenAPI document end to end (CI runs it after the deployment checks):
#   1. builds the strata binary (or uses $STRATA_BIN) and writes `strata openapi`;
#   2. validates it with openapi-spec-validator (OpenAPI 3.1);
#   3. generates a Python client from it with openapi-python-client (warnings fail);
#   4. starts a standalone strata on a free loopback port with a temporary data directory
#      and runs scripts/openapi_smoke.py: create, upsert, search, get, query, update,
#      delete, flush, drop through the generated client, each answer checked against the
#      document's schema for its status, and the served document against the printed one;
#   5. fuzzes that server with schemathesis for $STRATA_FUZZ_SECONDS (default 90 s;
#      deterministic generation, so a run repeats): every check on the server's answers
#      must pass — no 5xx, every status documented, every body and header as documented,
#      every schema-violating request refused and every schema-valid one accepted, except
#      for the 400s of the data-dependent rules listed in scripts/schemathesis_hooks.py
#      (a collection's dimension, shard count, attribute types…), which no schema can state.
# The Python tools live in a venv outside the repo ($STRATA_OPENAPI_VENV, default
# ~/.cache/strata/venv-openapi), installed from scripts/requirements-openapi.txt (exact pins)
# when missing or when the pins change. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

VENV="${STRATA_OPENAPI_VENV:-$HOME/.cache/strata/venv-openapi}"
REQUIREMENTS=scripts/requirements-openapi.txt
started=$SECONDS
step() { echo "== check_openapi: $* ($((SECONDS - started)) s)"; }
fail() { echo "check_openapi: FAILED: $*" >&2; exit 1; }

step "python tools ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || fail "cannot create a venv at $VENV (Debian: apt-get install python3-venv)"
fi
stamp="$VENV/.strata-requirements-openapi"
if ! cmp -s "$REQUIREMENTS" "$stamp"; then
  echo "installing $REQUIREMENTS"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$stamp"
fi
# The generator runs ruff (one of its dependencies) on what it writes.
export PATH="$VENV/bin:$PATH"

step "strata binary"
bin=$(scripts/strata_bin.sh)
[ -x "$bin" ] || fail "no strata binary at $bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/strata-openapi.XXXXXX")
server=
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "strata openapi > openapi.json"
"$bin" openapi > "$work/openapi.json" || fail "$bin openapi failed"

step "openapi-spec-validator $(openapi-spec-validator --version 2>&1 | awk '{print $NF}')"
openapi-spec-validator --validation-errors all "$work/openapi.json" || fail "the document is not valid OpenAPI"

step "openapi-python-client generate"
if ! openapi-python-client generate --path "$work/openapi.json" --output-path "$work/client" \
    --meta none --fail-on-warning > "$work/generate.log" 2>&1; then
  cat "$work/generate.log" >&2
  fail "openapi-python-client could not generate a client without warnings"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "strata standalone on 127.0.0.1:$port"
STRATA_LOG=warn "$bin" standalone --listen "127.0.0.1:$port" --data-dir "$work/data" > "$work/server.log" 2>&1 &
server=$!

step "smoke test through the generated client"
if ! python "scripts/openapi_smoke.py" --url "http://127.0.0.1:$port" --client "$work" --package client \
    --document "$work/openapi.json"; then
  echo "--- server log (last 40 lines)" >&2
  tail -n 40 "$work/server.log" >&2
  fail "the smoke test failed"
fi
kill -0 "$server" 2>/dev/null || fail "the server exited during the smoke test"

fuzz_seconds=${STRATA_FUZZ_SECONDS:-90}
step "schemathesis $(schemathesis --version | awk '{print $NF}'), ${fuzz_seconds} s"
# The hooks replace positive_data_acceptance with strata_positive_data_acceptance. Run
# from the work directory: schemathesis keeps a cache of past failures (.schemathesis/)
# in its working directory, and a run must not depend on earlier ones.
if ! (cd "$work" && PYTHONPATH="$OLDPWD/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks \
    schemathesis run "http://127.0.0.1:$port/openapi.json" --checks all \
    --exclude-checks positive_data_acceptance \
    --max-time "$fuzz_seconds" --generation-deterministic --request-timeout 10 \
    --no-color > "$work/fuzz.log" 2>&1); then
  grep -vE "^\s*$" "$work/fuzz.log" | tail -n 150 >&2
  echo "--- server log (last 40 lines)" >&2
  tail -n 40 "$work/server.log" >&2
  fail "schemathesis found failures"
fi
grep -E '^ +[0-9]+ generated|passed|Test cases' "$work/fuzz.log" | tail -n 3
kill -0 "$server" 2>/dev/null || fail "the server exited during fuzzing"

step "OK"
