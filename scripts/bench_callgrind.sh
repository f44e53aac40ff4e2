#!/usr/bin/env bash
# Instructions per search of a `strata` server, counted by callgrind (repeatable on a
# shared, noisy machine, unlike CPU time). Starts BIN as a standalone server on DATA_DIR
# (an existing data directory) under valgrind with instrumentation off, warms it up with
# one bench run, counts the instructions of the whole process (every thread) during a
# second run, and divides by its searches (queries x 2: the bench's warm-up pass and its
# measured pass; pass --repeat 1 and one --ef and --query-threads value).
#
#   scripts/bench_callgrind.sh BIN DATA_DIR -- BENCH_ARGS...
#   scripts/bench_callgrind.sh target/release/strata /tmp/minilm -- \
#       --dataset ../shared/datasets/debian-minilm --shards 2 --ef 64 --query-threads 1 --repeat 1
#
# Needs valgrind (Debian package valgrind). The bench client is BIN's own; BENCH_PORT
# (default 7740) is the port. About 50x slower than a plain run.
set -euo pipefail
[ $# -ge 3 ] && [ "$3" = "--" ] || { sed -n 2,15p "$0" >&2; exit 2; }
bin=$1 data=$2
shift 3
port="${BENCH_PORT:-7740}"
out=$(mktemp -d)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.%p" \
  "$bin" standalone --data-dir "$data" --listen "127.0.0.1:$port" >"$out/server.log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 "$pid" 2>/dev/null || { echo "server exited; see $out/server.log" >&2; exit 1; }
  sleep 0.5
done
args=(--url "http://127.0.0.1:$port" --skip-ingest --no-reference --json-out "$out/bench.json" "$@")
"$bin" bench "${args[@]}" >/dev/null 2>&1
callgrind_control -i on "$pid" >/dev/null 2>&1
"$bin" bench "${args[@]}" >/dev/null 2>&1
callgrind_control -i off "$pid" >/dev/null 2>&1
callgrind_control -d "$pid" >/dev/null 2>&1
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
searches=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(s["queries"] for s in r["search"]) * 2)' "$out/bench.json")
total=$(cat "$out"/cg.* | awk '/^totals:/ {s += $2} END {printf "%d", s}')
echo "instructions per search: $((total / searches)) ($total over $searches searches; dumps in $out)"
