#!/usr/bin/env python3
"""hnswlib reference numbers for `strata bench`.

Builds an hnswlib index over the same base vectors, with the same HNSW parameters, that
`strata bench` loads into Strata, then searches the same queries and reports recall@k,
single-thread QPS and per-query latency for each `ef`. Prints ONE JSON object on stdout;
progress goes to stderr.

Vector files (by extension):
  .npy            2-D array, C order, float32/float64 (ground truth: any integer dtype)
  .fvecs/.ivecs   TEXMEX format (per row: int32 dimension, then the values)
  anything else   raw little-endian float32 (ground truth: int32), rows of --dim values
                  (ground truth: rows of --gt-width values, or inferred from the file size)

Example:
  python3 scripts/hnswlib_reference.py --base base.f32 --queries queries.f32 \
      --gt gt.i32 --dim 384 --metric cosine --m 16 --ef-construction 200 \
      --ef 32,64,128 --k 10 --threads 2

Filtered search (`strata bench --filtered` passes `--filtered SPEC.json`): after the
unfiltered runs, the same index is searched with `knn_query(q, k, filter=callable)` for
every combination in the spec, and the output gains a "filtered" object. The spec names
the attribute arrays (.npy, one value per base row, label = row number), and per
combination the attribute, a (queries x 2) .npy of each query's [lo, hi) and the exact
filtered ground truth (.npy, -1 pads queries with fewer than k matching rows):

  {"k": 10, "efs": [32, 64, 128], "budget_s": 60, "min_queries": 10, "warmup_queries": 10,
   "attributes": {"u": "u.npy", "band": "band.npy"},
   "combos": [{"name": "uncorrelated s=0.01", "correlation": "uncorrelated",
               "selectivity": 0.01, "attr": "u", "ranges": "r.npy", "gt": "gt.npy"}, ...]}

The filter callable is `allowed.__getitem__` on a Python list of booleans built for the
query's range before the timed call (the cheapest callable hnswlib can be given); hnswlib
still calls it once per candidate close enough to enter the results, crossing from C++
into Python each time. Each combination stops once its timed searches (every ef together)
exceed `budget_s` seconds, after at least `min_queries` queries; the number of queries used
is reported.
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

try:
    import hnswlib
except ImportError:  # pragma: no cover - reported to the caller as JSON-less failure
    sys.stderr.write(
        "error: the python module 'hnswlib' is not importable; "
        "install it with: pip install -r scripts/requirements-bench.txt\n"
    )
    sys.exit(3)

SPACES = {"cosine": "cosine", "dot": "ip", "l2": "l2"}


def log(msg):
    sys.stderr.write(f"[hnswlib-reference] {msg}\n")
    sys.stderr.flush()


def read_texmex(path, dtype):
    raw = np.fromfile(path, dtype="<i4")
    if raw.size == 0:
        raise SystemExit(f"error: {path} is empty")
    dim = int(raw[0])
    if dim <= 0 or raw.size % (dim + 1) != 0:
        raise SystemExit(f"error: {path}: size {raw.size * 4} bytes is not a whole number of "
                         f"rows of dimension {dim}")
    rows = raw.reshape(-1, dim + 1)
    if not np.all(rows[:, 0] == dim):
        raise SystemExit(f"error: {path}: rows have differing dimensions")
    return rows[:, 1:].copy().view(dtype)


def read_matrix(path, kind, width):
    """Reads a 2-D matrix; kind is 'f' (float32 vectors) or 'i' (int ground truth)."""
    if not os.path.exists(path):
        raise SystemExit(f"error: file not found: {path}")
    lower = path.lower()
    if lower.endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2:
            raise SystemExit(f"error: {path}: expected a 2-D array, found shape {arr.shape}")
    elif lower.endswith(".fvecs"):
        arr = read_texmex(path, "<f4")
    elif lower.endswith(".ivecs"):
        arr = read_texmex(path, "<i4")
    else:
        arr = np.fromfile(path, dtype="<f4" if kind == "f" else "<i4")
        if width is None or width <= 0:
            raise SystemExit(f"error: {path}: raw files need a row width")
        if arr.size % width != 0:
            raise SystemExit(f"error: {path}: {arr.size} values are not a whole number of "
                             f"rows of {width}")
        arr = arr.reshape(-1, width)
    if kind == "f":
        return np.ascontiguousarray(arr, dtype=np.float32)
    return np.ascontiguousarray(arr, dtype=np.int64)


def exact_ground_truth(base, queries, metric, k):
    log(f"computing exact ground truth (top-{k}) with numpy")
    if metric == "cosine":
        base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-30)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    base_sq = (base * base).sum(axis=1) if metric == "l2" else None
    for start in range(0, queries.shape[0], 256):
        q = queries[start:start + 256]
        sims = q @ base.T
        if metric == "l2":
            # Smaller distance is better: rank by -(|b|^2 - 2 q.b).
            sims = 2.0 * sims - base_sq[None, :]
        part = np.argpartition(-sims, kth=min(k, sims.shape[1] - 1), axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        out[start:start + q.shape[0]] = np.take_along_axis(part, order, axis=1)
    return out


def percentile_us(samples_s, p):
    """Nearest-rank percentile of durations in seconds, returned in microseconds."""
    if not samples_s:
        return 0.0
    ordered = sorted(samples_s)
    rank = max(1, int(np.ceil(p / 100.0 * len(ordered))))
    return ordered[min(rank, len(ordered)) - 1] * 1e6


def recall_at_k(labels, gt, k):
    hits = 0
    for row, truth in zip(labels, gt):
        hits += len(set(int(x) for x in row[:k]) & set(int(x) for x in truth[:k]))
    return hits / float(k * len(gt))


def filtered_search(index, queries, spec):
    """Filtered knn_query for every combination and ef of `spec`; returns the "filtered" object."""
    k = int(spec["k"])
    efs = [int(e) for e in spec["efs"]]
    budget = float(spec.get("budget_s", 60))
    min_queries = int(spec.get("min_queries", 10))
    warmup = int(spec.get("warmup_queries", 10))
    attrs = {name: np.load(path).reshape(-1).astype(np.int64) for name, path in spec["attributes"].items()}
    nq = queries.shape[0]
    entries = []
    for combo in spec["combos"]:
        gt = np.load(combo["gt"]).astype(np.int64)[:nq]
        values = attrs[combo["attr"]] if combo.get("attr") else None
        ranges = np.load(combo["ranges"]).astype(np.int64)[:nq] if combo.get("ranges") else None
        cache = {}

        def allowed_for(i):
            if values is None:
                return None
            lo, hi = int(ranges[i, 0]), int(ranges[i, 1])
            if (lo, hi) not in cache:
                cache.clear()
                cache[(lo, hi)] = ((values >= lo) & (values < hi)).tolist().__getitem__
            return cache[(lo, hi)]

        def query(i, ef, fn):
            index.set_ef(max(ef, k))
            if fn is None:
                lab, _ = index.knn_query(queries[i:i + 1], k=k, num_threads=1)
            else:
                lab, _ = index.knn_query(queries[i:i + 1], k=k, num_threads=1, filter=fn)
            return lab[0]

        for i in range(min(warmup, nq)):  # warm-up, untimed
            try:
                query(i, efs[0], allowed_for(i))
            except RuntimeError:
                pass
        # Candidates hnswlib hands to the callback per query (a counting wrapper, untimed).
        calls = {}
        if values is not None:
            for ef in efs:
                counted = [0]
                for i in range(min(3, nq)):
                    inner = allowed_for(i)

                    def counting(label, inner=inner):
                        counted[0] += 1
                        return inner(label)

                    try:
                        query(i, ef, counting)
                    except RuntimeError:
                        pass
                calls[ef] = counted[0] / min(3, nq)
        per_ef = {ef: {"lat": [], "cpu": [], "hits": 0, "truth": 0, "errors": 0} for ef in efs}
        spent = 0.0
        used = 0
        for i in range(nq):
            fn = allowed_for(i)
            truth = set(int(x) for x in gt[i][:k] if x >= 0)
            for ef in efs:
                acc = per_ef[ef]
                c0 = time.process_time()
                t0 = time.perf_counter()
                try:
                    labels = query(i, ef, fn)
                except RuntimeError:  # fewer than k results: counted, no hits
                    labels = []
                    acc["errors"] += 1
                t1 = time.perf_counter()
                c1 = time.process_time()
                acc["lat"].append(t1 - t0)
                acc["cpu"].append(c1 - c0)
                acc["hits"] += len(truth & set(int(x) for x in labels))
                acc["truth"] += len(truth)
                spent += t1 - t0
            used = i + 1
            if spent > budget and used >= min_queries:
                break
        for ef in efs:
            acc = per_ef[ef]
            total = sum(acc["lat"])
            entry = {
                "combo": combo["name"],
                "correlation": combo.get("correlation"),
                "selectivity": combo.get("selectivity"),
                "ef": ef,
                "queries": used,
                "capped": used < nq,
                "recall": acc["hits"] / acc["truth"] if acc["truth"] else 1.0,
                "qps": used / total if total > 0 else 0.0,
                "latency_us": {
                    "p50": percentile_us(acc["lat"], 50),
                    "p99": percentile_us(acc["lat"], 99),
                    "mean": total / used * 1e6 if used else 0.0,
                },
                "cpu_us_per_query": sum(acc["cpu"]) / used * 1e6 if used else 0.0,
                "cpu_us_p50": percentile_us(acc["cpu"], 50),
                "errors": acc["errors"],
                "callback_calls_per_query": calls.get(ef),
            }
            log(f"filtered {combo['name']} ef={ef}: recall@{k}={entry['recall']:.4f} over {used} queries, "
                f"{entry['qps']:,.1f} QPS, CPU {entry['cpu_us_per_query']:,.0f} us/query, "
                f"{entry['callback_calls_per_query'] or 0:,.0f} callback calls/query"
                + (f", {acc['errors']} errors" if acc["errors"] else ""))
            entries.append(entry)
    return {
        "efs": efs,
        "budget_s": budget,
        "min_queries": min_queries,
        "warmup_queries": warmup,
        "filter_callable": "list.__getitem__ of a per-query list of booleans (built untimed)",
        "note": "hnswlib calls the Python filter once per candidate close enough to enter the results; "
                "every call crosses from C++ into Python, included in cpu_us_per_query",
        "search": entries,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt", help="ground truth ids (computed exactly with numpy if absent)")
    ap.add_argument("--dim", type=int, help="row width of raw base/query files")
    ap.add_argument("--gt-width", type=int, help="row width of a raw ground-truth file")
    ap.add_argument("--max-queries", type=int, help="use only the first N queries")
    ap.add_argument("--metric", choices=sorted(SPACES), default="cosine")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", default="64", help="comma-separated list, e.g. 32,64,128")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="threads for the index build")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--filtered", help="JSON spec of the filtered searches (see the module doc)")
    args = ap.parse_args()

    efs = [int(x) for x in args.ef.split(",") if x.strip()]
    if not efs:
        raise SystemExit("error: --ef must list at least one value")

    base = read_matrix(args.base, "f", args.dim)
    queries = read_matrix(args.queries, "f", args.dim)
    if args.max_queries:
        queries = queries[: args.max_queries]
    if base.shape[1] != queries.shape[1]:
        raise SystemExit(f"error: base dimension {base.shape[1]} != query dimension {queries.shape[1]}")
    if args.dim and base.shape[1] != args.dim:
        raise SystemExit(f"error: --dim {args.dim} but the base vectors have dimension {base.shape[1]}")
    n, dim = base.shape
    nq = queries.shape[0]
    if args.gt:
        width = args.gt_width
        if width is None and not args.gt.lower().endswith((".npy", ".ivecs")):
            size = os.path.getsize(args.gt) // 4
            full_nq = read_matrix(args.queries, "f", args.dim).shape[0]
            width = size // full_nq if full_nq else 0
        gt = read_matrix(args.gt, "i", width)[:nq]
        if gt.shape[0] < nq:
            raise SystemExit(f"error: ground truth has {gt.shape[0]} rows for {nq} queries")
        if gt.shape[1] < args.k:
            raise SystemExit(f"error: ground truth has {gt.shape[1]} ids per query; k is {args.k}")
    else:
        gt = exact_ground_truth(base, queries, args.metric, args.k)
    log(f"{n} base x {dim}, {nq} queries, metric {args.metric}, M={args.m}, "
        f"ef_construction={args.ef_construction}, build threads={args.threads}")

    index = hnswlib.Index(space=SPACES[args.metric], dim=dim)
    index.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction,
                     random_seed=args.seed)
    index.set_num_threads(args.threads)
    started = time.perf_counter()
    chunk = 10000
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        index.add_items(base[start:stop], np.arange(start, stop), num_threads=args.threads)
        elapsed = time.perf_counter() - started
        rate = stop / elapsed if elapsed > 0 else 0.0
        eta = (n - stop) / rate if rate > 0 else 0.0
        log(f"build: {stop}/{n} vectors, {rate:,.0f} vectors/s, ETA {eta:.0f}s")
    build_s = time.perf_counter() - started

    results = []
    for ef in efs:
        index.set_ef(max(ef, args.k))
        for q in queries:  # warm-up pass
            index.knn_query(q.reshape(1, -1), k=args.k, num_threads=1)
        labels = np.empty((nq, args.k), dtype=np.int64)
        lat = []
        t0 = time.perf_counter()
        for i, q in enumerate(queries):
            s = time.perf_counter()
            lab, _ = index.knn_query(q.reshape(1, -1), k=args.k, num_threads=1)
            lat.append(time.perf_counter() - s)
            labels[i] = lab[0]
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        index.knn_query(queries, k=args.k, num_threads=args.threads)
        batch_total = time.perf_counter() - t1
        entry = {
            "ef": ef,
            "recall": recall_at_k(labels, gt, args.k),
            "qps": nq / total if total > 0 else 0.0,
            "latency_us": {
                "p50": percentile_us(lat, 50),
                "p99": percentile_us(lat, 99),
                "p999": percentile_us(lat, 99.9),
                "mean": sum(lat) / len(lat) * 1e6 if lat else 0.0,
            },
            "batch_qps": nq / batch_total if batch_total > 0 else 0.0,
            "batch_threads": args.threads,
        }
        log(f"ef={ef}: recall@{args.k}={entry['recall']:.4f}, {entry['qps']:,.0f} QPS (1 thread), "
            f"p50 {entry['latency_us']['p50']:.0f} us, p99 {entry['latency_us']['p99']:.0f} us, "
            f"batch {entry['batch_qps']:,.0f} QPS ({args.threads} threads)")
        results.append(entry)

    out = {
        "library": "hnswlib",
        "hnswlib_version": getattr(hnswlib, "__version__", None) or _dist_version("hnswlib"),
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
        "n": int(n),
        "dim": int(dim),
        "queries": int(nq),
        "metric": args.metric,
        "space": SPACES[args.metric],
        "m": args.m,
        "ef_construction": args.ef_construction,
        "k": args.k,
        "threads": args.threads,
        "build_seconds": build_s,
        "build_vectors_per_sec": n / build_s if build_s > 0 else 0.0,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "search": results,
    }
    if args.filtered:
        with open(args.filtered) as f:
            spec = json.load(f)
        out["filtered"] = filtered_search(index, queries, spec)
        out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - the version is informative only
        return None


if __name__ == "__main__":
    main()
