"""Writes go straight to Qdrant and the next search sees them; nothing scans a collection.

Both engines: qdrant-edge (embedded) and qdrant-client (local mode standing in for a server).
Every engine request is counted at the engine object itself, below our code.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import numpy as np
import pytest

from retrieval.cases import delete_case, search_cases, upsert_case
from retrieval.store import Chunk, open_client_store, open_store, point_id

C = "inc"
TENANTS = [None, "acme", "globex"]
INTENTS = ["refund", "invoice", "login"]
WORDS = ("refund charge invoice plan billing card payment failed login password reset webhook "
         "signature api key rotate export seat upgrade cancel tax vat receipt sso").split()


@pytest.fixture(params=["embedded", "client"])
def store(request, tmp_path, embedder):
    if request.param == "embedded":
        opened = open_store(home=tmp_path / "home", embedder=embedder)
        yield opened
        opened.close()
        return
    from qdrant_client import QdrantClient

    opened = open_client_store(QdrantClient(path=str(tmp_path / "client")),
                               location=str(tmp_path / "client"), server=False,
                               embedder=embedder)
    yield opened
    opened.close()


class Counting:
    """Wraps an engine object (an EdgeShard or a QdrantClient) and counts its calls."""

    def __init__(self, inner: Any, calls: Counter, scans: list[str]) -> None:
        self._inner, self._calls, self._scans = inner, calls, scans

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls[name] += 1
            if name == "scroll":
                request = args[0] if args and not isinstance(args[0], str) else None
                flt = (getattr(request, "filter", None) if request is not None
                       else kwargs.get("scroll_filter"))
                if flt is None:
                    self._scans.append(name)
            return attr(*args, **kwargs)

        return call


def count_calls(store) -> tuple[Counter, list[str]]:
    """Count every request the store sends to its engine from now on."""
    calls: Counter = Counter()
    scans: list[str] = []
    backend = store.backend
    if hasattr(backend, "_shards"):  # embedded: wrap each open shard
        for name in list(backend._shards):
            backend._shard(name)
            backend._shards[name].handle = Counting(backend._shards[name].handle, calls, scans)
    else:
        backend.client = Counting(backend.client, calls, scans)
    return calls, scans


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector, axis=-1, keepdims=True)).astype(np.float32)


def case(store, ticket_id, text, *, tenant="acme", intent="refund_request", reply="Refunded."):
    return upsert_case(store, ticket_id=ticket_id, text=text, reply=reply, intent=intent,
                       tenant=tenant, resolved_at="2026-11-25T12:00:00Z", source="auto")


def test_learn_and_search_never_scan_the_collection(store):
    """50 learns and 50 searches: 0 whole-collection scrolls, a bounded number of requests."""
    case(store, "w0", "The export of our data to CSV times out")
    calls, scans = count_calls(store)
    rng = random.Random(3)
    for i in range(1, 51):
        text = f"Ticket {i}: " + " ".join(rng.choices(WORDS, k=10))
        tenant = rng.choice(TENANTS)
        before = sum(calls.values())
        assert case(store, f"w{i}", text, intent=rng.choice(INTENTS),
                    tenant=tenant) in ("added", "updated")
        assert sum(calls.values()) - before <= 5  # lookup, holder lookup, search, (re)upsert
        before = sum(calls.values())
        found = search_cases(store, text, k=3, tenant=tenant)
        assert sum(calls.values()) - before == 1  # one hybrid query
        assert found and found[0].score > 0.9  # learned, then found at once
        if i % 10 == 0:
            assert delete_case(store, f"w{i - 5}") in (True, False)
    assert scans == []
    assert calls["scroll"] <= 50  # only the filtered, limit-1 holder lookups


def test_random_writes_are_what_searches_see(store):
    """Adds, replacements (longer, shorter) and deletes; after each, the store equals a model."""
    rng = random.Random(20261125)
    nprng = np.random.default_rng(20261125)
    model: dict[tuple[str | None, str], list[Chunk]] = {}
    store.ensure_collection(C)

    def write(doc_id: str, tenant: str | None, n: int) -> None:
        chunks = [Chunk(doc_id=doc_id, chunk=i, text=" ".join(rng.choices(WORDS, k=8)),
                        tenant=tenant, extra={"intent": rng.choice(INTENTS)})
                  for i in range(n)]
        store.upsert_chunks(C, chunks, vectors=unit(nprng.normal(size=(n, 384))))
        model[(tenant, doc_id)] = chunks

    for step in range(40):
        op = rng.choice(["add", "add", "replace", "delete"])
        if op == "add" or not model:
            write(f"d{step}", rng.choice(TENANTS), rng.randrange(1, 4))
        elif op == "replace":
            tenant, doc_id = rng.choice(sorted(model, key=str))
            write(doc_id, tenant, max(1, len(model[(tenant, doc_id)]) + rng.choice([-1, 1])))
        else:
            tenant, doc_id = rng.choice(sorted(model, key=str))
            chunks = model.pop((tenant, doc_id))
            store.delete_ids(C, [point_id(doc_id, c.chunk, tenant) for c in chunks])
        assert store.count(C) == sum(len(v) for v in model.values())
        for tenant in TENANTS:
            hits = store.search(C, "refund charge", k=200, tenant=tenant, tenant_filter=True,
                                query_vector=unit(nprng.normal(size=384)), mode="dense")
            expected = {(c.doc_id, c.chunk, c.text) for (t, _), chunks in model.items()
                        if t == tenant for c in chunks}
            assert {(h.doc_id, h.chunk, h.text) for h in hits} == expected


def test_readers_never_see_a_half_applied_write(store):
    """Searches on threads while one thread rewrites and deletes points.

    Each write gives a point a new version: text, payload and vector all derive from it, so a
    hit whose cosine does not match the vector of its payload's version would be a reader
    seeing a mix of two writes.
    """
    n_docs = 40

    def vector(doc: int, version: int) -> np.ndarray:
        return unit(np.random.default_rng(doc * 1000 + version).normal(size=384))

    def chunk(doc: int, version: int) -> Chunk:
        return Chunk(doc_id=f"d{doc}", chunk=0, text=f"version{version} refund charge {doc}",
                     tenant=TENANTS[doc % 3], extra={"version": version})

    store.ensure_collection(C)
    store.upsert_chunks(C, [chunk(d, 0) for d in range(n_docs)],
                        vectors=np.stack([vector(d, 0) for d in range(n_docs)]))
    done = threading.Event()
    errors: list[BaseException] = []
    searches = [0]

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not done.is_set():
                query = vector(rng.randrange(n_docs), rng.randrange(30))
                tenant = rng.choice(TENANTS)
                for hit in store.search(C, f"version{rng.randrange(30)} refund", k=5,
                                        query_vector=query, tenant=tenant, tenant_filter=True):
                    doc, version = int(hit.doc_id[1:]), hit.payload["version"]
                    assert hit.text.startswith(f"version{version} ")
                    assert hit.payload.get("tenant") == tenant
                    expected = float(np.dot(vector(doc, version), query))
                    assert abs(hit.dense_score - expected) < 1e-4, (hit, expected)
                searches[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    rng = random.Random(9)
    version = {d: 0 for d in range(n_docs)}
    try:
        for step in range(1, 150):
            doc = rng.randrange(n_docs)
            if rng.random() < 0.2 and doc in version:
                store.delete_ids(C, [point_id(f"d{doc}", 0, TENANTS[doc % 3])])
                del version[doc]
            else:
                version[doc] = step
                store.upsert_chunks(C, [chunk(doc, step)], vectors=vector(doc, step)[None, :])
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert searches[0] > 20
    stored = {p["doc_id"]: p["version"] for _, p in store.scroll_payloads(C)}
    assert stored == {f"d{d}": v for d, v in version.items()}
