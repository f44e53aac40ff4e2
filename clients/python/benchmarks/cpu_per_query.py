"""Client CPU per search: strata_client against a plain `requests` client sending the
vector as a JSON array, the same queries against the same standalone server (started here
from $STRATA_BIN or scripts/strata_bin.sh). Prints the median of 5 rounds of CPU time
(process_time) per query for each client.

    python benchmarks/cpu_per_query.py [--queries 2000] [--dimension 384]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import Server  # noqa: E402

import strata_client as sc  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dimension", type=int, default=384)
    args = parser.parse_args()
    server = Server()
    try:
        client = sc.Client(server.url)
        docs = client.create_collection("bench", dimension=args.dimension, metric="cosine")
        rng = np.random.default_rng(0)
        docs.import_numpy(np.arange(5000), rng.standard_normal((5000, args.dimension)), progress=False)
        queries = rng.standard_normal((args.queries, args.dimension)).astype(np.float32)
        session = requests.Session()
        url = f"{server.url}/v1/collections/bench/search"

        def with_requests(q):
            r = session.post(url, json={"vector": q.tolist(), "top_k": 10})
            r.raise_for_status()
            return r.json()["results"]

        def with_client(q):
            return docs.search(q, top_k=10, include_attributes=False)

        rounds = {"requests (JSON array)": [], "strata_client (base64)": []}
        for _ in range(5):
            for name, fn in (("requests (JSON array)", with_requests), ("strata_client (base64)", with_client)):
                start = time.process_time()
                for q in queries:
                    fn(q)
                rounds[name].append((time.process_time() - start) / len(queries) * 1e6)
        for name, values in rounds.items():
            print(f"{name:24} client CPU per query: median {statistics.median(values):.0f} µs "
                  f"(rounds: {', '.join(f'{v:.0f}' for v in values)})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
