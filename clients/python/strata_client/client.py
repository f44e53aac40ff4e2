"""The Strata REST client: one connection pool per `Client`, numpy vectors sent as base64
of little-endian float32 (the server's compact wire form), retries on 429 and 503 that
honour `Retry-After`, and typed errors (`strata_client.errors`).

    client = Client("https://strata.example:7700", api_key="strata_...", ca_file="ca.pem")
    docs = client.create_collection("docs", dimension=384, metric="cosine", shards=2)
    docs.upsert(ids=[1, 2], vectors=np.random.rand(2, 384), attributes=[{"lang": "en"}, {"lang": "de"}])
    hits = docs.search(np.random.rand(384), top_k=5, filter={"lang": "en"})
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import urllib3

from .errors import StrataError, error_for

RowId = Union[int, str]
Filter = dict

# Statuses after which a request is tried again: the server did nothing with it.
_RETRY_STATUSES = (429, 503)


def encode_vector(vector: Any, dimension: Optional[int] = None) -> str:
    """Base64 of the vector's little-endian float32 values (checked: 1-d, finite)."""
    array = np.asarray(vector, dtype="<f4")
    if array.ndim != 1:
        raise ValueError(f"a vector must be 1-dimensional, got shape {array.shape}")
    if dimension is not None and array.shape[0] != dimension:
        raise ValueError(f"the vector has {array.shape[0]} values, the collection {dimension}")
    if not np.all(np.isfinite(array)):
        raise ValueError("vector values must be finite")
    return base64.b64encode(array.tobytes()).decode("ascii")


@dataclass
class Hit:
    """A row of a search, get or query answer."""

    id: RowId
    score: Optional[float] = None
    vector: Optional[np.ndarray] = None
    attributes: Optional[dict] = None

    @staticmethod
    def from_json(row: dict) -> "Hit":
        vector = row.get("vector")
        return Hit(
            id=row["id"],
            score=row.get("score"),
            vector=None if vector is None else np.asarray(vector, dtype=np.float32),
            attributes=row.get("attributes"),
        )


class Client:
    """A connection to a Strata node (any node answers the whole API).

    `api_key` defaults to `$STRATA_API_KEY`, `ca_file` (the CA to trust for HTTPS) to
    `$STRATA_CA_FILE`. `retries` is how many times a 429 or 503 answer, or a connection
    failure of a request that is safe to repeat, is tried again; the wait is the
    server's `Retry-After` when it sends one, else an exponential backoff with jitter.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:7700",
        api_key: Optional[str] = None,
        ca_file: Optional[str] = None,
        timeout: float = 30.0,
        retries: int = 5,
        max_wait: float = 10.0,
        pool_size: int = 4,
    ):
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("STRATA_API_KEY")
        ca_file = ca_file if ca_file is not None else os.environ.get("STRATA_CA_FILE")
        self.retries, self.max_wait = retries, max_wait
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"
        options: dict[str, Any] = {"maxsize": pool_size, "timeout": urllib3.Timeout(total=timeout), "retries": False}
        if ca_file:
            options["ca_certs"] = ca_file
        self._pool = urllib3.PoolManager(**options)

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def request(self, method: str, path: str, body: Any = None, idempotent: bool = True) -> Any:
        """Sends one request and returns its JSON answer; raises a `StrataError`."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        attempt = 0
        while True:
            try:
                response = self._pool.request(method, self.url + path, body=data, headers=self._headers)
            except urllib3.exceptions.HTTPError as e:
                if not idempotent or attempt >= self.retries:
                    raise error_for(0, "unavailable", f"cannot reach {self.url}: {e}") from e
                self._wait(attempt, None)
                attempt += 1
                continue
            if response.status in _RETRY_STATUSES and attempt < self.retries:
                self._wait(attempt, response.headers.get("Retry-After"))
                attempt += 1
                continue
            return self._answer(response)

    def _wait(self, attempt: int, retry_after: Optional[str]) -> None:
        try:
            wait = float(retry_after) if retry_after is not None else None
        except ValueError:
            wait = None
        if wait is None:
            wait = min(self.max_wait, 0.1 * 2**attempt) * (0.5 + random.random() / 2)
        time.sleep(min(max(wait, 0.0), self.max_wait))

    @staticmethod
    def _answer(response: urllib3.BaseHTTPResponse) -> Any:
        text = response.data
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        if 200 <= response.status < 300:
            return body
        error = (body or {}).get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise error_for(response.status, str(error.get("code", "")), str(error.get("message", "")))
        raise error_for(response.status, "http_error", text.decode("utf-8", "replace")[:200])

    # --------------------------------------------------------------- collections
    def create_collection(
        self,
        name: str,
        dimension: int,
        metric: str = "cosine",
        shards: int = 1,
        replication: int = 1,
        attributes: Optional[dict[str, str]] = None,
        hnsw: Optional[dict[str, int]] = None,
    ) -> "Collection":
        body: dict[str, Any] = {"name": name, "dimension": dimension, "metric": metric, "shards": shards,
                                "replication": replication}
        if attributes:
            body["attributes"] = attributes
        if hnsw:
            body["hnsw"] = hnsw
        self.request("POST", "/v1/collections", body, idempotent=False)
        return Collection(self, name, dimension)

    def collection(self, name: str) -> "Collection":
        """A handle on an existing collection (its dimension is read once)."""
        return Collection(self, name, self.describe_collection(name)["dimension"])

    def list_collections(self) -> list[dict]:
        return self.request("GET", "/v1/collections")["collections"]

    def describe_collection(self, name: str) -> dict:
        return self.request("GET", f"/v1/collections/{name}")

    def drop_collection(self, name: str) -> None:
        self.request("DELETE", f"/v1/collections/{name}", idempotent=False)


class Collection:
    """Reads and writes of one collection."""

    def __init__(self, client: Client, name: str, dimension: int):
        self.client, self.name, self.dimension = client, name, dimension
        self._path = f"/v1/collections/{name}"

    def _post(self, op: str, body: dict, idempotent: bool = True) -> Any:
        return self.client.request("POST", f"{self._path}/{op}", body, idempotent=idempotent)

    # --------------------------------------------------------------------- writes
    def upsert(self, ids: Sequence[RowId], vectors: Any, attributes: Optional[Sequence[Optional[dict]]] = None) -> int:
        """Inserts or replaces rows; `vectors` is an (n, dimension) array. Durable on return."""
        matrix = np.asarray(vectors, dtype="<f4")
        if matrix.ndim != 2 or matrix.shape != (len(ids), self.dimension):
            raise ValueError(f"vectors must have shape ({len(ids)}, {self.dimension}), got {matrix.shape}")
        if attributes is not None and len(attributes) != len(ids):
            raise ValueError(f"{len(attributes)} attribute dicts for {len(ids)} ids")
        rows = []
        for i, row_id in enumerate(ids):
            row: dict[str, Any] = {"id": _plain_id(row_id), "vector": encode_vector(matrix[i])}
            if attributes is not None and attributes[i] is not None:
                row["attributes"] = attributes[i]
            rows.append(row)
        return self._post("upsert", {"rows": rows})["upserted"]

    def delete(self, ids: Optional[Sequence[RowId]] = None, filter: Optional[Filter] = None) -> int:
        """Deletes rows by ids or by filter (exactly one)."""
        return self._post("delete", _selector(ids, filter))["deleted"]

    def update(self, attributes: dict, ids: Optional[Sequence[RowId]] = None, filter: Optional[Filter] = None) -> int:
        """Sets (or, with `None`, removes) attributes of rows chosen by ids or filter."""
        return self._post("update", {**_selector(ids, filter), "attributes": attributes})["updated"]

    def flush(self) -> None:
        self.client.request("POST", f"{self._path}/flush")

    def import_numpy(
        self,
        ids: Sequence[RowId],
        vectors: Any,
        attributes: Optional[Sequence[Optional[dict]]] = None,
        batch: int = 1000,
        progress: bool = True,
    ) -> int:
        """Upserts many rows in batches (retried like every request), printing progress
        (rows, rows/s, ETA) on stderr when `progress`."""
        matrix = np.asarray(vectors, dtype="<f4")
        total, done, start = len(ids), 0, time.monotonic()
        for lo in range(0, total, batch):
            hi = min(lo + batch, total)
            done += self.upsert(ids[lo:hi], matrix[lo:hi], None if attributes is None else attributes[lo:hi])
            # A live line on a terminal; only the final one when stderr is a file or pipe.
            if progress and (done == total or sys.stderr.isatty()):
                elapsed = max(time.monotonic() - start, 1e-9)
                rate = done / elapsed
                eta = (total - done) / rate if rate else 0.0
                print(f"\r{self.name}: {done:,}/{total:,} rows, {rate:,.0f} rows/s, ETA {eta:.0f} s",
                      end="" if done < total else "\n", file=sys.stderr, flush=True)
        return done

    # ---------------------------------------------------------------------- reads
    def search(
        self,
        vector: Any,
        top_k: int = 10,
        filter: Optional[Filter] = None,
        ef: Optional[int] = None,
        include_vector: bool = False,
        include_attributes: bool = True,
        consistency: Union[str, dict, None] = None,
    ) -> list[Hit]:
        """The `top_k` nearest rows, best first."""
        body: dict[str, Any] = {"vector": encode_vector(vector, self.dimension), "top_k": top_k,
                                "include_vector": include_vector, "include_attributes": include_attributes}
        if filter is not None:
            body["filter"] = filter
        if ef is not None:
            body["ef"] = ef
        if consistency is not None:
            body["consistency"] = consistency
        return [Hit.from_json(r) for r in self._post("search", body)["results"]]

    def get(
        self,
        ids: Sequence[RowId],
        include_vector: bool = False,
        include_attributes: bool = True,
        filter: Optional[Filter] = None,
    ) -> list[Hit]:
        """The rows of `ids` that exist (and match `filter`)."""
        body: dict[str, Any] = {"ids": [_plain_id(i) for i in ids], "include_vector": include_vector,
                                "include_attributes": include_attributes}
        if filter is not None:
            body["filter"] = filter
        return [Hit.from_json(r) for r in self._post("get", body)["rows"]]

    def count(self, filter: Optional[Filter] = None) -> int:
        return self._post("count", {} if filter is None else {"filter": filter})["count"]

    def query(self, filter: Optional[Filter] = None, page: int = 1000, include_vector: bool = False) -> Iterator[Hit]:
        """Every row matching `filter`, page by page."""
        cursor = None
        while True:
            body: dict[str, Any] = {"limit": page, "include_vector": include_vector}
            if filter is not None:
                body["filter"] = filter
            if cursor is not None:
                body["cursor"] = cursor
            answer = self._post("query", body)
            yield from (Hit.from_json(r) for r in answer["rows"])
            cursor = answer.get("next_cursor")
            if not cursor:
                return

    def describe(self) -> dict:
        return self.client.describe_collection(self.name)


def _plain_id(row_id: Any) -> RowId:
    """numpy integers become Python ints (JSON has no numpy types)."""
    if isinstance(row_id, np.integer):
        return int(row_id)
    if isinstance(row_id, (int, str)) and not isinstance(row_id, bool):
        return row_id
    raise ValueError(f"an id is an int or a str, got {type(row_id).__name__}")


def _selector(ids: Optional[Iterable[RowId]], filter: Optional[Filter]) -> dict:
    if (ids is None) == (filter is None):
        raise ValueError("give exactly one of ids and filter")
    return {"ids": [_plain_id(i) for i in ids]} if ids is not None else {"filter": filter}


__all__ = ["Client", "Collection", "Hit", "StrataError", "encode_vector"]
