"""The client against a real standalone server (conftest.py), and its retries against a
local HTTP server that answers 503 with Retry-After."""

import http.server
import threading
import time
import uuid

import numpy as np
import pytest

import strata_client as sc


def fresh(client, dimension=8, **kw):
    return client.create_collection(f"c{uuid.uuid4().hex[:12]}", dimension=dimension, metric="l2", **kw)


def test_upsert_search_get_count_query_delete_update(server):
    client = sc.Client(server.url)
    docs = fresh(client, shards=2)
    rng = np.random.default_rng(1)
    vectors = rng.random((300, 8), dtype=np.float32)
    ids = np.arange(300)
    attrs = [{"lang": "en" if i % 3 else "de", "n": int(i)} for i in range(300)]
    assert docs.import_numpy(ids, vectors, attrs, batch=128, progress=False) == 300

    hits = docs.search(vectors[42], top_k=5)
    assert hits[0].id == 42 and hits[0].score == pytest.approx(0.0, abs=1e-5)
    assert hits[0].attributes == {"lang": "de", "n": 42}
    exact = np.argsort(((vectors - vectors[7]) ** 2).sum(axis=1))[:10]
    assert [h.id for h in docs.search(vectors[7], top_k=10, ef=200)] == list(exact)

    filtered = docs.search(vectors[42], top_k=20, filter={"lang": "de"})
    assert filtered and all(h.attributes["lang"] == "de" for h in filtered)

    got = docs.get([5, 6, 10_000], include_vector=True)
    assert [h.id for h in got] == [5, 6]
    np.testing.assert_array_equal(got[0].vector, vectors[5])

    assert docs.count() == 300 and docs.count({"lang": "de"}) == 100
    assert sorted(h.id for h in docs.query({"n": {"$lt": 50}}, page=7)) == list(range(50))

    assert docs.update({"lang": "fr"}, ids=[1, 2]) == 2
    assert docs.get([1])[0].attributes["lang"] == "fr"
    assert docs.delete(filter={"lang": "de"}) == 100
    assert docs.delete(ids=[1]) == 1
    assert docs.count() == 199
    docs.flush()
    assert docs.count() == 199
    assert client.collection(docs.name).dimension == 8
    assert docs.name in [c["name"] for c in client.list_collections()]
    client.drop_collection(docs.name)
    with pytest.raises(sc.NotFound):
        docs.count()


def test_errors_are_typed_and_say_what_is_wrong(server):
    client = sc.Client(server.url)
    docs = fresh(client)
    with pytest.raises(ValueError, match="shape"):
        docs.upsert([1], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        docs.search([np.nan] * 8)
    with pytest.raises(ValueError, match="exactly one"):
        docs.delete()
    with pytest.raises(sc.InvalidArgument) as e:
        docs.search(np.zeros(8), filter={"n": {"$near": 1}})
    assert e.value.status == 400 and "$near" in e.value.message
    with pytest.raises(sc.Conflict):
        client.create_collection(docs.name, dimension=8)
    with pytest.raises(sc.NotFound):
        client.describe_collection("no-such-collection")
    with pytest.raises(sc.Unavailable):
        sc.Client("http://127.0.0.1:9", retries=1, timeout=2).list_collections()


def test_api_keys_and_roles(keyed_server):
    with pytest.raises(sc.Unauthenticated):
        sc.Client(keyed_server.url, api_key="").list_collections()
    admin = sc.Client(keyed_server.url, api_key=keyed_server.keys["admin"])
    docs = fresh(admin)
    docs.upsert([1], np.ones((1, 8)))
    reader = sc.Client(keyed_server.url, api_key=keyed_server.keys["read"])
    assert reader.collection(docs.name).search(np.ones(8), top_k=1)[0].id == 1
    with pytest.raises(sc.PermissionDenied):
        reader.collection(docs.name).upsert([2], np.ones((1, 8)))


class Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 with `Retry-After: 1` to the first request, then 200."""

    calls: list = []

    def do_GET(self):
        Flaky.calls.append(time.monotonic())
        if len(Flaky.calls) == 1:
            body = b'{"error":{"code":"unavailable","message":"busy"}}'
            self.send_response(503)
            self.send_header("Retry-After", "1")
        else:
            body = b'{"collections":[]}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def test_503_is_retried_after_the_servers_retry_after():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = sc.Client(f"http://127.0.0.1:{httpd.server_address[1]}")
        assert client.list_collections() == []
        assert len(Flaky.calls) == 2
        assert Flaky.calls[1] - Flaky.calls[0] >= 0.95, "did not wait Retry-After"
        Flaky.calls.clear()
        with pytest.raises(sc.Unavailable) as e:
            sc.Client(f"http://127.0.0.1:{httpd.server_address[1]}", retries=0).list_collections()
        assert e.value.status == 503 and e.value.message == "busy"
    finally:
        httpd.shutdown()
