#!/usr/bin/env python3
"""The smoke test through a docker-compose deployment (run by scripts/compose_smoke.sh).

Phases, each timed:
  up        `up -d --scale query-node=3`, until every service is healthy (one-shot jobs
            exited 0)
  ingest    a collection (8 shards, replication 2); 20,000 rows through the client entry
            point (https://localhost:7700, the admin key and CA from the `secrets` job)
  recall    searches through the entry point; recall@10 against brute force
  failover  `docker kill` one query-node container while searches run: none may fail;
            then every shard is served by two replicas again
  restart   `docker-compose restart ingest-node` while writes run: every acknowledged
            write is read back afterwards
  scale     `--scale query-node=4`: the new node serves shards
  down      `down -v`: no container or volume of the project is left
Prints one JSON line of figures at the end (docs/benchmarks.md records them).
Standard library only.
"""

import argparse
import base64
import json
import random
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

DIM, ROWS, SHARDS, REPLICATION, QUERIES, K = 16, 20_000, 8, 2, 40, 10
ENTRY = "https://localhost:7700"
COLLECTION = "smoke"


def log(message):
    print(f"compose_smoke: {message}", flush=True)


class Deployment:
    def __init__(self, compose, project, docker):
        self.compose, self.project, self.docker = compose, project, docker
        self.token = self.ctx = None
        self.figures = {}

    def run(self, *args, capture=False, check=True):
        result = subprocess.run(list(args), capture_output=capture, text=True)
        if check and result.returncode != 0:
            raise SystemExit(f"`{' '.join(args)}` exited {result.returncode}: {result.stderr if capture else ''}")
        return result.stdout if capture else None

    def containers(self, service=None, running_only=True):
        """(id, service, state, health) of the project's containers."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = self.run(self.docker, "ps", "-q", *([] if running_only else ["-a"]), *filters, capture=True).split()
        if not ids:
            return []
        out = []
        for c in json.loads(self.run(self.docker, "inspect", *ids, capture=True)):
            state = c["State"]
            health = (state.get("Health") or {}).get("Status", "none")
            out.append((c["Id"], c["Config"]["Labels"]["com.docker.compose.service"], state["Status"], health,
                        str(state["ExitCode"])))
        return out

    def wait_healthy(self, query_nodes, timeout):
        deadline = time.monotonic() + timeout
        while True:
            everything = self.containers(running_only=False)
            running = [c for c in everything if c[2] == "running"]
            failed_jobs = [c for c in everything if c[2] == "exited" and c[4] != "0"]
            if failed_jobs:
                raise SystemExit(f"one-shot jobs failed: {failed_jobs}")
            unhealthy = [c for c in running if c[3] not in ("healthy", "none")]
            queries = [c for c in running if c[1] == "query-node"]
            if not unhealthy and len(queries) == query_nodes and len(running) >= query_nodes + 4:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"not healthy within {timeout} s: {running}")
            time.sleep(1)

    # ------------------------------------------------------------------ HTTP
    def call(self, method, path, body=None, base=ENTRY, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise SystemExit(f"{method} {path} answered {status}: {answer}")
        return answer

    def shards_settled(self, nodes=None):
        """Whether every shard of the collection is served by REPLICATION replicas (of
        `nodes`, if given) and settled."""
        shards = [s for s in self.ok("GET", "/v1/cluster/shards")["shards"] if s["collection"] == COLLECTION]
        for s in shards:
            serving = [r["node"] for r in s["serving"] if r["state"] == "serving"]
            if not s["settled"] or len(serving) != REPLICATION or (nodes and not set(serving) <= nodes):
                return False
        return len(shards) == SHARDS

    def query_node_ids(self):
        return {n["id"] for n in self.ok("GET", "/v1/cluster/nodes")["nodes"] if "query" in n["roles"]}

    # ---------------------------------------------------------------- phases
    def phase(self, name, fn):
        start = time.monotonic()
        fn()
        self.figures[f"{name}_s"] = round(time.monotonic() - start, 1)
        log(f"{name}: {self.figures[f'{name}_s']} s")

    def up(self):
        self.run(*self.compose, "up", "-d", "--scale", "query-node=3")
        self.wait_healthy(3, timeout=240)
        self.token = self.run(*self.compose, "run", "--rm", "-T", "secrets", capture=True).strip().splitlines()[-1]
        ca = self.run(*self.compose, "run", "--rm", "-T", "secrets", "cat /secrets/ca.pem", capture=True)
        self.ctx = ssl.create_default_context(cadata=ca)

    def ingest(self):
        body = {"name": COLLECTION, "dimension": DIM, "metric": "l2", "shards": SHARDS, "replication": REPLICATION}
        status, answer = self.call("POST", "/v1/collections", body)
        assert status == 201, (status, answer)
        rng = random.Random(7)
        self.vectors = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(ROWS)]
        start = time.monotonic()
        for lo in range(0, ROWS, 1000):
            rows = [{"id": i, "vector": encode(self.vectors[i]), "attributes": {"batch": lo // 1000}}
                    for i in range(lo, lo + 1000)]
            assert self.ok("POST", f"/v1/collections/{COLLECTION}/upsert", {"rows": rows})["upserted"] == 1000
        self.figures["ingest_rows_per_s"] = round(ROWS / (time.monotonic() - start))
        self.ok("POST", f"/v1/collections/{COLLECTION}/flush")
        count = self.ok("POST", f"/v1/collections/{COLLECTION}/count", {})["count"]
        assert count == ROWS, count

    def recall(self):
        rng = random.Random(11)
        hits = 0
        for _ in range(QUERIES):
            q = [rng.uniform(-1, 1) for _ in range(DIM)]
            exact = sorted(range(ROWS), key=lambda i: sum((a - b) ** 2 for a, b in zip(q, self.vectors[i])))[:K]
            got = self.ok("POST", f"/v1/collections/{COLLECTION}/search", {"vector": encode(q), "top_k": K})
            hits += len({r["id"] for r in got["results"]} & set(exact))
        recall = hits / (QUERIES * K)
        self.figures["recall_at_10"] = round(recall, 4)
        log(f"recall@{K} over {QUERIES} queries: {recall:.4f}")
        assert recall >= 0.9, recall

    def inspect(self, container):
        return json.loads(self.run(self.docker, "inspect", container, capture=True))[0]["State"]

    def failover(self):
        victim = self.containers("query-node")[0][0]
        node = f"query-{victim[:12]}-7700"
        assert node in self.query_node_ids(), (node, self.query_node_ids())
        first_start = self.inspect(victim)["StartedAt"]
        searches = Searches(self)
        searches.start()
        time.sleep(2)
        killed = time.monotonic()
        self.run(self.docker, "kill", victim, capture=True)
        log(f"killed query node container {victim[:12]} (node {node})")
        # Its shards are served again either by the others, once its session has expired
        # and it left the membership, or by itself, restarted by docker (restart:
        # unless-stopped) and healthy again (/readyz: its shards loaded).
        deadline = killed + 180
        while True:
            state = self.inspect(victim)
            back = state["Running"] and state["StartedAt"] != first_start and \
                (state.get("Health") or {}).get("Status") == "healthy"
            gone = node not in self.query_node_ids()
            if (back or gone) and self.shards_settled():
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the shards were not served by two replicas again within 180 s: {state}")
            time.sleep(1)
        how = "restarted by docker" if back else "taken over by the other query nodes"
        self.figures["replicas_restored_s"] = round(time.monotonic() - killed, 1)
        self.figures["replicas_restored_by"] = how
        log(f"every shard served by {REPLICATION} replicas again after {self.figures['replicas_restored_s']} s ({how})")
        time.sleep(2)
        searches.stop()
        self.figures["failover_searches"] = searches.done
        self.figures["failover_failed_searches"] = len(searches.failures)
        log(f"{searches.done} searches during the failover, {len(searches.failures)} failed")
        assert not searches.failures, searches.failures[:5]
        # Leave the deployment as users run it: three query nodes.
        self.run(*self.compose, "up", "-d", "--scale", "query-node=3", "--no-recreate")
        self.wait_healthy(3, timeout=180)

    def restart(self):
        acked, stop = [], threading.Event()

        def write():
            next_id = 1_000_000
            while not stop.is_set():
                ids = list(range(next_id, next_id + 50))
                rows = [{"id": i, "vector": encode([float(i % 7)] * DIM)} for i in ids]
                next_id += 50
                try:
                    status, _ = self.call("POST", f"/v1/collections/{COLLECTION}/upsert", {"rows": rows}, timeout=10)
                except OSError:
                    status = None
                if status == 200:
                    acked.extend(ids)
                else:
                    time.sleep(0.2)

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(3)
        self.run(*self.compose, "restart", "ingest-node")
        self.wait_healthy(3, timeout=180)
        time.sleep(3)
        stop.set()
        writer.join()
        missing = []
        for lo in range(0, len(acked), 1000):
            ids = acked[lo:lo + 1000]
            got = self.ok("POST", f"/v1/collections/{COLLECTION}/get", {"ids": ids})
            missing += sorted(set(ids) - {r["id"] for r in got["rows"]})
        self.figures["restart_acked_writes"] = len(acked)
        log(f"{len(acked)} writes acknowledged around the restart, {len(missing)} missing")
        assert acked and not missing, missing[:10]

    def scale(self):
        before = self.query_node_ids()
        self.run(*self.compose, "up", "-d", "--scale", "query-node=4", "--no-recreate")
        self.wait_healthy(4, timeout=180)
        deadline = time.monotonic() + 180
        while True:
            new = self.query_node_ids() - before
            if new and self.shards_settled():
                shards = self.ok("GET", "/v1/cluster/shards")["shards"]
                taken = [s["shard"] for s in shards if s["collection"] == COLLECTION
                         and any(r["node"] in new and r["state"] == "serving" for r in s["serving"])]
                if taken:
                    log(f"the new query node {sorted(new)} serves shards {taken}")
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"the fourth query node took no shard within 180 s (new: {new})")
            time.sleep(1)

    def down(self):
        self.run(*self.compose, "down", "-v", "--remove-orphans")
        left = self.containers(running_only=False)
        volumes = self.run(self.docker, "volume", "ls", "-q", "--filter",
                           f"label=com.docker.compose.project={self.project}", capture=True).split()
        assert not left and not volumes, (left, volumes)


class Searches(threading.Thread):
    """Searches through the entry point in a loop, recording failures."""

    def __init__(self, deployment):
        super().__init__()
        self.deployment, self.done, self.failures = deployment, 0, []
        self.halt = threading.Event()

    def run(self):
        rng = random.Random(3)
        while not self.halt.is_set():
            q = [rng.uniform(-1, 1) for _ in range(DIM)]
            try:
                status, answer = self.deployment.call("POST", f"/v1/collections/{COLLECTION}/search",
                                                      {"vector": encode(q), "top_k": K}, timeout=10)
                if status != 200 or len(answer["results"]) != K or answer.get("partial"):
                    self.failures.append((status, answer))
            except OSError as e:
                self.failures.append(("error", str(e)))
            self.done += 1

    def stop(self):
        self.halt.set()
        self.join()


def encode(vector):
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True)
    parser.add_argument("--docker", default="docker")
    parser.add_argument("compose", nargs="+", help="the docker-compose command with its -p and -f options")
    args = parser.parse_args()
    d = Deployment(args.compose, args.project, args.docker)
    for name in ["up", "ingest", "recall", "failover", "restart", "scale", "down"]:
        d.phase(name, getattr(d, name))
    print("compose_smoke figures: " + json.dumps(d.figures), flush=True)


if __name__ == "__main__":
    sys.exit(main())
