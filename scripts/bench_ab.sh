#!/usr/bin/env bash
# A/B of two `strata` binaries on the same data: each round starts a standalone server of
# binary A, then of binary B, on DATA_DIR (an existing data directory: run `strata bench`
# once without --skip-ingest to fill it) and runs the same bench client against each with
# --skip-ingest and the arguments given. Prints every run's server CPU per query, and
# keeps each run's JSON report in OUT_DIR. On a shared, noisy machine compare medians
# over rounds, not single runs.
#
#   scripts/bench_ab.sh BIN_A BIN_B DATA_DIR OUT_DIR ROUNDS -- BENCH_ARGS...
#   scripts/bench_ab.sh /tmp/strata-before target/release/strata /tmp/minilm /tmp/ab 3 -- \
#       --dataset ../shared/datasets/debian-minilm --shards 2 --ef 16,64 --query-threads 1,4 --repeat 20
#
# The bench client is BIN_B's (`strata bench`); BENCH_PORT (default 7720) is the port.
# AB_ENV_A / AB_ENV_B: extra `VAR=value` words for side A's / B's server and client, to
# compare one binary with itself under two settings, e.g. API keys off and on:
#   AB_ENV_B="STRATA__AUTH__KEYS_FILE=/tmp/keys.toml STRATA_API_KEY=$token" \
#     scripts/bench_ab.sh target/release/strata target/release/strata /tmp/minilm /tmp/ab 3 -- ...
# AB_SCHEME_A / AB_SCHEME_B: http (default) or https (side's env then sets the TLS files
# and STRATA_CA_FILE).
set -euo pipefail
[ $# -ge 6 ] && [ "$6" = "--" ] || { sed -n 2,19p "$0" >&2; exit 2; }
a=$1 b=$2 data=$3 out=$4 rounds=$5
shift 6
port="${BENCH_PORT:-7720}"
mkdir -p "$out"
run() { # label binary env-words scheme
  local label=$1 bin=$2 scheme=$4 pid
  local -a extra
  read -r -a extra <<<"$3"
  shift 4
  env "${extra[@]}" "$bin" standalone --data-dir "$data" --listen "127.0.0.1:$port" >>"$out/server.log" 2>&1 &
  pid=$!
  until curl -skf "$scheme://127.0.0.1:$port/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "server $bin exited; see $out/server.log" >&2; exit 1; }
    sleep 0.1
  done
  env "${extra[@]}" "$b" bench --url "$scheme://localhost:$port" --skip-ingest --no-reference --json-out "$out/$label.json" "$@" \
    >"$out/$label.md" 2>"$out/$label.err" || echo "run $label failed (see $out/$label.err)" >&2
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  grep -E 'server CPU' "$out/$label.err" | sed "s/^/$label /"
}
for r in $(seq 1 "$rounds"); do
  run "a-$r" "$a" "${AB_ENV_A:-}" "${AB_SCHEME_A:-http}" "$@"
  run "b-$r" "$b" "${AB_ENV_B:-}" "${AB_SCHEME_B:-http}" "$@"
done
