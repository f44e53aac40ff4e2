#!/usr/bin/env bash
# Reproducible standalone benchmark: builds the release binary, starts `strata standalone`
# on a fresh data directory, runs `strata bench` with the given arguments, then restarts
# the server (SIGTERM, start again on the same data with its warm disk cache) and measures
# the time to the first answered query and the resident memory once the data is loaded.
#
#   scripts/bench.sh --dataset ../shared/datasets/debian-minilm --ef 32,64,128
#   scripts/bench.sh --synthetic 1000000 --dim 128 --ef 64,128 --max-queries 1000
#
# Environment: BENCH_DIR (default: a new temp dir), BENCH_PORT (default 7700),
# STRATA_CONFIG (a TOML config for the server).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
cargo build --release -p strata >&2
bin="$CARGO_TARGET_DIR/release/strata"
dir="${BENCH_DIR:-$(mktemp -d)}"
port="${BENCH_PORT:-7700}"
url="http://127.0.0.1:$port"
config_args=()
[ -n "${STRATA_CONFIG:-}" ] && config_args=(--config "$STRATA_CONFIG")

start_server() {
  "$bin" standalone --data-dir "$dir/data" --listen "127.0.0.1:$port" "${config_args[@]}" >>"$dir/server.log" 2>&1 &
  pid=$!
  until curl -sf "$url/healthz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "server exited; see $dir/server.log" >&2; exit 1; }
    sleep 0.05
  done
}
stop_server() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap stop_server EXIT

start_server
echo "server pid $pid, data in $dir" >&2
"$bin" bench --url "$url" --json-out "$dir/bench.json" "$@"

collection=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["collection"])' "$dir/bench.json")
dim=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dataset"]["dim"])' "$dir/bench.json")
query=$(python3 -c "import json; print(json.dumps({'vector': [0.01] * $dim, 'top_k': 10}))")

echo >&2; echo "restart: SIGTERM, start on the same data (warm disk cache), first query" >&2
stop_server
t0=$(date +%s.%N)
start_server
until curl -sf -XPOST "$url/v1/collections/$collection/search" -H 'content-type: application/json' -d "$query" >/dev/null; do
  sleep 0.02
done
t1=$(date +%s.%N)
node=$(curl -sf "$url/v1/node")
describe=$(curl -sf "$url/v1/collections/$collection")
python3 - "$t0" "$t1" "$node" "$describe" <<'PY'
import json, sys
t0, t1, node, desc = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
rows, dim = desc["stats"]["rows"], desc["dimension"]
raw = rows * dim * 4
print()
print("| Restart (warm disk cache) | value |")
print("|---|---|")
print(f"| process start → first answered query | {t1 - t0:.2f} s |")
print(f"| rows / segments | {rows:,} / {desc['stats']['segments']} |")
print(f"| resident memory after loading | {node['rss_bytes'] / 2**20:,.0f} MiB (raw vectors {raw / 2**20:,.0f} MiB, ratio {node['rss_bytes'] / max(raw, 1):.2f}×) |")
PY
