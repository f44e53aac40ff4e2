"""Drives a running Strata server with a client generated from its OpenAPI document.

Run by scripts/check_openapi.sh (which builds the client and starts the server):

    python openapi_smoke.py --url http://127.0.0.1:PORT --client DIR --document openapi.json

Every call goes through the generated client with `raise_on_unexpected_status`, so a
status the document does not list fails; every JSON body that comes back is also checked
against the document's schema for that status (the client only reads the fields it knows),
and the served document must be the one `strata openapi` printed. Exits non-zero on the
first failure.
"""

import argparse
import importlib
import json
import sys
import time

import httpx
import jsonschema


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--client", required=True, help="directory holding the generated package")
    parser.add_argument("--package", default="client", help="the generated package's name")
    parser.add_argument("--document", required=True, help="the document the client was generated from")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for /readyz")
    args = parser.parse_args()
    sys.path.insert(0, args.client)
    with open(args.document) as f:
        document = json.load(f)
    Smoke(args.url, args.package, document).run(args.timeout)
    print("openapi smoke: every call answered as documented")
    return 0


class Smoke:
    def __init__(self, url, package, document):
        self.doc = document
        self.package = package
        self.pkg = importlib.import_module(package)
        self.errors = importlib.import_module(f"{package}.errors")
        self.models = importlib.import_module(f"{package}.models")
        self.client = self.pkg.Client(base_url=url, raise_on_unexpected_status=True, timeout=30.0)
        self.url = url
        self.calls = 0
        # operationId (the generated module's name) -> (method, path template)
        self.operations = {
            op["operationId"]: (method, path)
            for path, item in document["paths"].items()
            for method, op in item.items()
        }

    def op(self, dotted):
        """The generated module of one operation, e.g. `rows.search`."""
        return importlib.import_module(f"{self.package}.api.{dotted}")

    # ---- helpers -------------------------------------------------------------------

    def step(self, what):
        print(f"  - {what}", flush=True)

    def call(self, module, expect, **kwargs):
        """Calls one generated operation (`sync_detailed`), checks the status and the body
        against the document, and returns the parsed model."""
        self.calls += 1
        response = module.sync_detailed(client=self.client, **kwargs)
        status = int(response.status_code)
        body = response.content.decode(errors="replace")
        assert status == expect, f"{module.__name__}: expected {expect}, got {status}: {body}"
        method, path = self.operations[module.__name__.rsplit(".", 1)[1]]
        self.check_body(method, path, status, response)
        return response.parsed

    def raw(self, method, path, expect, **kwargs):
        """A request the generated client cannot send (its models hold ints where a client in
        another language may send 2.0); the body is still checked against the document."""
        self.calls += 1
        response = httpx.request(method, self.url + path, timeout=30.0, **kwargs)
        assert response.status_code == expect, f"{method} {path}: expected {expect}: {response.text}"
        template = "/v1/collections/{name}/" + path.rsplit("/", 1)[1]
        self.check_body(method.lower(), template, response.status_code, response)
        return response.json() if response.headers.get("content-type", "").startswith("application/json") else None

    def check_body(self, method, path, status, response):
        operation = self.doc["paths"][path][method]
        documented = operation["responses"].get(str(status))
        assert documented, f"{method.upper()} {path}: status {status} is not documented"
        content = documented.get("content", {})
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media == "application/json":
            schema = content.get("application/json", {}).get("schema")
            assert schema is not None, f"{method.upper()} {path} {status}: JSON not documented ({list(content)})"
            root = {"components": self.doc["components"], **schema}
            validator = jsonschema.Draft202012Validator(root)
            errors = sorted(validator.iter_errors(json.loads(response.content)), key=str)
            assert not errors, f"{method.upper()} {path} {status}: body does not match its schema: {errors[0]}"
        else:
            assert not content or any(m.split(";")[0] == media for m in content), (
                f"{method.upper()} {path} {status}: {media} not among {list(content)}"
            )

    def error(self, parsed, code):
        assert isinstance(parsed, self.models.ErrorBody), parsed
        assert parsed.error.code == code, parsed.error.to_dict()
        return parsed.error.message

    # ---- the walk-through ----------------------------------------------------------

    def run(self, timeout):
        m = self.models

        class Group:
            def __init__(group, tag):
                group.tag = tag

            def __getattr__(group, operation):
                return self.op(f"{group.tag}.{operation}")

        node, collections, rows, cluster = (Group(t) for t in ("node", "collections", "rows", "cluster"))

        self.step("waiting for /readyz")
        deadline = time.monotonic() + timeout
        while True:
            try:
                if node.readyz.sync_detailed(client=self.client).status_code == 200:
                    break
            except (httpx.TransportError, self.errors.UnexpectedStatus):
                pass
            assert time.monotonic() < deadline, f"the server was not ready within {timeout} s"
            time.sleep(0.1)
        self.call(node.healthz, 200)
        served = self.call(node.openapi, 200)
        assert served.to_dict() == self.doc, "GET /openapi.json differs from `strata openapi`"
        info = self.call(node.node_info, 200)
        assert info.node_id == "standalone", info.to_dict()
        self.call(node.metrics, 200)
        self.call(node.page, 200)

        name = "openapi_smoke"
        self.step(f"create collection {name} (3-d, l2, 2 shards)")
        created = self.call(collections.create_collection, 201, body=m.CreateCollectionRequest(
            name=name, dimension=3, metric=m.Metric.L2, shards=2))
        assert (created.name, created.dimension, created.shards, created.hnsw.m) == (name, 3, 2, 16), created
        self.call(collections.create_collection, 409, body=m.CreateCollectionRequest(
            name=name, dimension=3, metric=m.Metric.L2))
        listed = self.call(collections.list_collections, 200)
        assert [c.name for c in listed.collections] == [name], listed.to_dict()

        self.step("upsert 4 rows (integer and string ids, attributes)")
        def row(id_, vector, **attributes):
            r = m.Row(id=id_, vector=vector)
            if attributes:
                r.attributes = m.Attributes.from_dict(attributes)
            return r
        upserted = self.call(rows.upsert, 200, name=name, body=m.UpsertRequest(rows=[
            row(1, [1.0, 0.0, 0.0], lang="en", year=2021),
            row(2, [0.0, 1.0, 0.0], lang="de", year=2019),
            row("doc-3", [0.0, 0.0, 1.0], lang="en", year=2024),
            row(4, [0.9, 0.1, 0.0]),
        ]))
        assert upserted.upserted == 4, upserted
        message = self.error(self.call(rows.upsert, 400, name=name, body=m.UpsertRequest(rows=[])),
                             "invalid_argument")
        assert "empty" in message, message
        self.error(self.call(rows.upsert, 404, name="nope", body=m.UpsertRequest(rows=[row(9, [1.0, 0.0, 0.0])])),
                   "not_found")

        self.step("search (top_k 2, with attributes; integral and fractional top_k)")
        hits = self.call(rows.search, 200, name=name, body=m.SearchRequest(
            vector=[1.0, 0.0, 0.0], top_k=2, include_attributes=True))
        assert [h.id for h in hits.results] == [1, 4], hits.to_dict()
        assert hits.results[0].attributes.to_dict() == {"lang": "en", "year": 2021}, hits.to_dict()
        assert hits.results[0].score <= hits.results[1].score, "l2: best (lowest) first"
        as_float = self.raw("POST", f"/v1/collections/{name}/search", 200,
                            json={"vector": [1.0, 0.0, 0.0], "top_k": 2.0})
        assert [h["id"] for h in as_float["results"]] == [1, 4], as_float
        refused = self.raw("POST", f"/v1/collections/{name}/search", 400,
                           json={"vector": [1.0, 0.0, 0.0], "top_k": 2.5})
        assert "top_k" in refused["error"]["message"], refused
        top_k = self.doc["components"]["schemas"]["SearchRequest"]["properties"]["top_k"]
        for bad in (top_k["minimum"] - 1, top_k["maximum"] + 1):
            message = self.error(self.call(rows.search, 400, name=name, body=m.SearchRequest(
                vector=[1.0, 0.0, 0.0], top_k=bad)), "invalid_argument")
            assert "top_k" in message, message
        self.call(rows.search, 200, name=name, body=m.SearchRequest(vector=[1.0, 0.0, 0.0], top_k=top_k["maximum"]))
        filtered = self.call(rows.search, 200, name=name, body=m.SearchRequest(
            vector=[1.0, 0.0, 0.0], top_k=10, filter_=m.Filter.from_dict({"lang": "en"}),
            consistency=m.BoundedStaleness(max_staleness_ms=500)))
        assert [h.id for h in filtered.results] == [1, "doc-3"], filtered.to_dict()

        self.step("get, count, query, scan")
        got = self.call(rows.get_rows, 200, name=name, body=m.GetRequest(
            ids=[1, "doc-3", 99], include_vector=True, consistency=m.ConsistencyLevel.STRONG))
        assert [(r.id, r.vector) for r in got.rows] == [(1, [1.0, 0.0, 0.0]), ("doc-3", [0.0, 0.0, 1.0])], got
        self.error(self.call(rows.get_rows, 400, name=name, body=m.GetRequest(ids=[])), "invalid_argument")
        counted = self.call(rows.count, 200, name=name, body=m.CountRequest(
            filter_=m.Filter.from_dict({"year": {"$gte": 2020}})))
        assert counted.count == 2, counted
        page = self.call(rows.query, 200, name=name, body=m.QueryRequest(
            filter_=m.Filter.from_dict({"lang": "en"}), limit=1))
        assert len(page.rows) == 1 and isinstance(page.next_cursor, str), page.to_dict()
        rest = self.call(rows.query, 200, name=name, body=m.QueryRequest(
            filter_=m.Filter.from_dict({"lang": "en"}), limit=10, cursor=page.next_cursor))
        assert sorted(map(str, [r.id for r in page.rows + rest.rows])) == ["1", "doc-3"], rest.to_dict()
        scanned = [self.call(rows.scan, 200, name=name, body=m.ScanRequest(shard=s)) for s in (0, 1)]
        assert sum(len(p.rows) for p in scanned) == 4, [p.to_dict() for p in scanned]
        self.error(self.call(rows.scan, 400, name=name, body=m.ScanRequest(shard=2)), "invalid_argument")

        self.step("update attributes, delete rows, flush, describe")
        updated = self.call(rows.update_rows, 200, name=name, body=m.UpdateRequest(
            ids=[2], attributes=m.Attributes.from_dict({"lang": "fr"})))
        assert updated.updated == 1, updated
        deleted = self.call(rows.delete_rows, 200, name=name, body=m.DeleteRequest(ids=[4]))
        assert deleted.deleted == 1, deleted
        self.error(self.call(rows.delete_rows, 400, name=name, body=m.DeleteRequest()), "invalid_argument")
        got = self.call(rows.get_rows, 200, name=name, body=m.GetRequest(ids=[2, 4], include_attributes=True))
        assert [(r.id, r.attributes.to_dict()) for r in got.rows] == [(2, {"lang": "fr", "year": 2019})], got
        assert self.call(collections.flush, 200, name=name).flushed is True
        described = self.call(collections.describe_collection, 200, name=name)
        assert described.stats.rows == 3 and len(described.stats.shards) == 2, described.to_dict()

        self.step("cluster views and rebalance (wait_ms in range, out of range, malformed)")
        nodes = self.call(cluster.list_nodes, 200)
        assert [n.id for n in nodes.nodes] == ["standalone"], nodes.to_dict()
        shards = self.call(cluster.list_shards, 200)
        assert len(shards.shards) == 2, shards.to_dict()
        assert self.call(cluster.rebalance, 200, wait_ms=0).converged is True
        self.error(self.call(cluster.rebalance, 400, wait_ms=60_001), "invalid_argument")
        self.calls += 1
        response = httpx.post(self.url + "/v1/cluster/rebalance?wait_ms=soon", timeout=30.0)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_argument", response.text
        self.check_body("post", "/v1/cluster/rebalance", 400, response)

        self.step(f"drop {name}")
        assert self.call(collections.drop_collection, 200, name=name).dropped == name
        self.error(self.call(collections.describe_collection, 404, name=name), "not_found")
        self.error(self.call(collections.drop_collection, 404, name=name), "not_found")
        listed = self.call(collections.list_collections, 200)
        assert listed.collections == [], listed.to_dict()
        print(f"  {self.calls} calls checked")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print(f"openapi smoke: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
