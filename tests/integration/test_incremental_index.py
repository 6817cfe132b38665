"""Our own writes patch a local collection's in-memory snapshot instead of rebuilding it.

Every check compares against a rebuild: a second `KnowledgeStore` on the same client, whose
first search scrolls the collection and builds its snapshot from scratch.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from retrieval.cases import COLLECTION, delete_case, search_cases, upsert_case
from retrieval.lexical import LexicalIndex
from retrieval.store import Chunk, KnowledgeStore, close_stores, open_store, point_id

C = "inc"
TENANTS = [None, "acme", "globex"]
INTENTS = ["refund", "invoice", "login"]
WORDS = ("refund charge invoice plan billing card payment failed login password reset webhook "
         "signature api key rotate export seat upgrade cancel tax vat receipt sso").split()


@pytest.fixture
def store(tmp_path):
    opened = open_store(home=tmp_path / "home")
    yield opened
    close_stores()


def rebuilt(store: KnowledgeStore) -> KnowledgeStore:
    """Another store on the same client: its snapshots come from a fresh scroll."""
    return KnowledgeStore(store.client, location=store.location, server=False,
                          embedder=store._embedder)


def count_rebuilds(store: KnowledgeStore, monkeypatch) -> list[str]:
    calls: list[str] = []
    original = store._scroll_with_vectors

    def counting(collection):
        calls.append(collection)
        return original(collection)

    monkeypatch.setattr(store, "_scroll_with_vectors", counting)
    return calls


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector, axis=-1, keepdims=True)).astype(np.float32)


def assert_same_snapshot(mine, ref) -> None:
    assert mine.ids == ref.ids == sorted(ref.ids)
    assert mine.payloads == ref.payloads
    assert mine.points == len(mine.ids)
    assert np.array_equal(mine.vectors, ref.vectors)
    assert list(mine.index.tenants) == list(ref.index.tenants)
    assert np.array_equal(mine.index.lengths, ref.index.lengths)
    for key, column in mine._columns.items():  # carried caches agree with the payloads
        assert list(column) == [p.get(key) for p in mine.payloads], key
    assert mine.payload_by_id() == dict(zip(ref.ids, ref.payloads, strict=True))


def test_random_writes_keep_the_snapshot_equal_to_a_rebuild(store, monkeypatch):
    """Adds, replacements (text, payload lists, vector, chunk count) and deletes, 60 steps."""
    rng = random.Random(20261125)
    nprng = np.random.default_rng(20261125)
    docs: dict[str, tuple[list[Chunk], np.ndarray]] = {}  # doc_id -> what is stored
    stored_vectors: list[np.ndarray] = []

    def chunks_of(doc_id: str, n: int) -> tuple[list[Chunk], np.ndarray]:
        tenant, intent = rng.choice(TENANTS), rng.choice(INTENTS)
        out, vectors = [], []
        for i in range(n):
            text = " ".join(rng.choices(WORDS, k=rng.randrange(1, 12)))
            if rng.random() < 0.2:
                text = "refund charge"  # identical texts: BM25 ties
            out.append(Chunk(
                doc_id=doc_id, chunk=i, text=text, title=rng.choice(["", "Billing", "Login"]),
                tenant=tenant, metadata={"n": rng.randrange(3)} if rng.random() < 0.3 else {},
                extra={"intent": intent,
                       "ticket_ids": [f"t{rng.randrange(50)}" for _ in range(rng.randrange(3))]},
            ))
            if stored_vectors and rng.random() < 0.2:  # identical vectors: dense ties
                vectors.append(rng.choice(stored_vectors))
            else:
                vectors.append(unit(nprng.normal(size=384)))
        stored_vectors.extend(vectors)
        return out, np.stack(vectors)

    def write(doc_id: str, n: int) -> None:
        chunks, vectors = chunks_of(doc_id, n)
        assert store.upsert_chunks(C, chunks, vectors=vectors) == n
        docs[doc_id] = chunks, vectors

    store.ensure_collection(C)
    for i in range(8):
        write(f"d{i}", rng.randrange(1, 4))
    store.search(C, "refund", k=3, query_vector=unit(nprng.normal(size=384)),
                 tenant="acme", match={"intent": "refund"})  # builds; caches the intent column
    store._lexical_index(C).column("ticket_ids")  # a list-valued column is carried too
    rebuilds = count_rebuilds(store, monkeypatch)
    next_doc = 8
    for _step in range(60):
        op = rng.choice(["add", "add", "replace", "replace", "delete", "same"])
        if op == "add" or not docs:
            for _ in range(rng.randrange(1, 3)):
                write(f"d{next_doc}", rng.randrange(1, 4))
                next_doc += 1
        elif op == "replace":  # same, fewer (stale tail) or more chunks
            doc_id = rng.choice(sorted(docs))
            write(doc_id, max(1, len(docs[doc_id][0]) + rng.choice([-1, 0, 0, 1])))
        elif op == "delete":
            doomed = rng.sample(sorted(docs), k=min(len(docs), rng.randrange(1, 3)))
            ids = [point_id(d, i) for d in doomed for i in range(len(docs.pop(d)[0]))]
            store.delete_ids(C, ids + [point_id("never-stored", 0)])
        else:  # an unchanged re-upsert writes nothing
            chunks, vectors = docs[rng.choice(sorted(docs))]
            assert store.upsert_chunks(C, chunks, vectors=vectors) == 0

        ref = rebuilt(store)
        queries = [" ".join(rng.choices(WORDS, k=3)) for _ in range(3)] + ["refund charge"]
        vectors = unit(nprng.normal(size=(len(queries), 384)))
        vectors[-1] = rng.choice(stored_vectors)  # a query sitting on tied stored vectors
        filters = [{}, *({"tenant": t, "tenant_filter": True} for t in TENANTS),
                   *({"tenant": t, "tenant_filter": True, "match": {"intent": i}}
                     for t in TENANTS for i in INTENTS[:2])]
        for kwargs in filters:
            for mode in ("hybrid", "lexical"):
                ours = store.search_many(C, queries, k=5, query_vectors=vectors, mode=mode,
                                         **kwargs)
                theirs = ref.search_many(C, queries, k=5, query_vectors=vectors, mode=mode,
                                         **kwargs)
                assert ours == theirs, (op, kwargs, mode)
        for ticket in ("t1", "t7"):
            assert (store.payloads_where(C, "ticket_ids", ticket)
                    == ref.payloads_where(C, "ticket_ids", ticket))
        mine = store._lexical_index(C)
        assert_same_snapshot(mine, ref._lexical_index(C))
        fresh = LexicalIndex([str(p.get("title", "")) for p in mine.payloads],
                             [str(p.get("text", "")) for p in mine.payloads],
                             [p.get("tenant") for p in mine.payloads])
        for query in queries:
            assert np.array_equal(mine.index.scores(query), fresh.scores(query))
    assert store.count(C) == len(mine.ids) == sum(len(c) for c, _ in docs.values())
    assert rebuilds == []


def case(store, ticket_id, text, *, tenant="acme", intent="refund_request", reply="Refunded."):
    return upsert_case(store, ticket_id=ticket_id, text=text, reply=reply, intent=intent,
                       tenant=tenant, resolved_at="2026-11-25T12:00:00Z", source="auto")


CASE_SEQUENCE = [
    ("t1", "I was charged twice for the Growth plan this month, please refund one charge",
     {}),
    ("t1", "I was charged twice for the Growth plan this month, please refund one charge",
     {}),  # re-run: unchanged
    ("t1", "I was charged twice for the Growth plan this month, please refund one charge",
     {"reply": "Refunded in 5-10 business days."}),  # changed reply: updated in place
    ("t2", "I was charged twice for the Growth plan this month, please refund one charge.",
     {}),  # near-duplicate: refreshes t1's case
    ("t2", "I was charged twice for the Growth plan this month, please refund one charge.",
     {}),  # re-run of an absorbed ticket: unchanged
    ("t3", "I was charged twice for the Growth plan this month, please refund one charge",
     {"intent": "payment_failed"}),
    ("t4", "I was charged twice for the Growth plan this month, please refund one charge",
     {"tenant": "globex"}),
    ("t5", "How do I verify webhook signatures?", {"intent": "webhooks", "tenant": None}),
    ("t6", "Our invoices are missing the VAT ID", {"intent": "invoice_request"}),
    ("t7", "Invoices are missing our VAT ID number", {"intent": "invoice_request"}),
    ("t8", "Please cancel my subscription at the end of the period",
     {"intent": "cancellation"}),
    ("t2", "Charged twice, refund please", {}),  # the absorbed ticket changes: updates the case
    ("t9", "Where do I rotate my API key?", {"intent": "api", "tenant": None}),
]
QUERIES = [("charged twice refund", "acme"), ("VAT ID missing on invoice", "acme"),
           ("webhook signature", None), ("refund", "globex"), ("API key", None)]


def test_cases_give_the_same_results_as_with_a_rebuild_after_every_write(tmp_path, monkeypatch):
    """upsert_case / search_cases / payloads_where: patched store vs the old rebuild path."""
    patched = open_store(home=tmp_path / "patched")
    rebuilding = open_store(home=tmp_path / "rebuilding")
    try:
        rebuilds = count_rebuilds(patched, monkeypatch)
        statuses: dict[str, list[str]] = {"patched": [], "rebuilding": []}
        for step, (ticket, text, options) in enumerate([*CASE_SEQUENCE, ("del", "", {}),
                                                        *CASE_SEQUENCE[8:]]):
            for name, store in (("patched", patched), ("rebuilding", rebuilding)):
                if ticket == "del":
                    statuses[name].append(str(delete_case(store, "t6")))
                else:
                    statuses[name].append(case(store, f"{ticket}", text, **options))
                if name == "rebuilding":
                    store._bump(COLLECTION)  # what every write did before
            for query, tenant in QUERIES:
                assert (search_cases(patched, query, k=5, tenant=tenant)
                        == search_cases(rebuilding, query, k=5, tenant=tenant)), step
            for ticket_id in ("t1", "t2", "t6", "t7"):
                assert (patched.payloads_where(COLLECTION, "ticket_ids", ticket_id)
                        == rebuilding.payloads_where(COLLECTION, "ticket_ids", ticket_id))
        assert statuses["patched"] == statuses["rebuilding"]
        assert statuses["patched"][:5] == ["added", "unchanged", "updated", "updated",
                                           "unchanged"]
        [hit] = search_cases(patched, "charged twice", k=5, tenant="acme")[:1]
        assert hit.ticket_ids == ["t1", "t2"]
        # built once (first case) and once more after delete_case's filtered delete
        assert rebuilds == [COLLECTION, COLLECTION]
        assert patched.count(COLLECTION) == rebuilding.count(COLLECTION)
    finally:
        close_stores()


def test_fifty_upserts_and_searches_scroll_nothing(store, monkeypatch):
    """After the first build, a write and the next search never rescan the collection."""
    case(store, "w0", "The export of our data to CSV times out")
    search_cases(store, "export", k=3, tenant="acme")
    rebuilds = count_rebuilds(store, monkeypatch)
    rng = random.Random(3)
    for i in range(1, 51):
        text = f"Ticket {i}: " + " ".join(rng.choices(WORDS, k=10))
        assert case(store, f"w{i}", text, intent=rng.choice(INTENTS),
                    tenant=rng.choice(TENANTS)) in ("added", "updated")
        assert search_cases(store, text, k=3, tenant="acme") is not None
        if i % 10 == 0:
            store.delete_ids(COLLECTION, [point_id(f"case:w{i - 5}", 0)])
    assert rebuilds == []
    ref = rebuilt(store)
    assert_same_snapshot(store._lexical_index(COLLECTION), ref._lexical_index(COLLECTION))
    for tenant in TENANTS:
        assert (search_cases(store, "export data", k=5, tenant=tenant)
                == search_cases(ref, "export data", k=5, tenant=tenant))


def test_readers_never_see_a_half_applied_write(store):
    """Searches on threads while one thread rewrites and deletes points.

    Each write gives a point a new version: text, payload and vector all derive from it, so a
    hit whose cosine does not match the vector of its payload's version, or a snapshot whose
    parts disagree, would be a reader seeing a mix of two snapshots.
    """
    n_docs = 40  # all within one dense candidate pool: every hit's cosine comes from a snapshot

    def vector(doc: int, version: int) -> np.ndarray:
        return unit(np.random.default_rng(doc * 1000 + version).normal(size=384))

    def chunk(doc: int, version: int) -> Chunk:
        return Chunk(doc_id=f"d{doc}", chunk=0, text=f"version{version} refund charge {doc}",
                     tenant=TENANTS[doc % 3], extra={"version": version})

    store.ensure_collection(C)
    store.upsert_chunks(C, [chunk(d, 0) for d in range(n_docs)],
                        vectors=np.stack([vector(d, 0) for d in range(n_docs)]))
    store.search(C, "refund", k=3, query_vector=vector(0, 0))
    done = threading.Event()
    errors: list[BaseException] = []
    searches = [0]

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not done.is_set():
                snap = store._lexical_index(C)
                assert (len(snap.ids) == len(snap.payloads) == snap.vectors.shape[0]
                        == snap.index.size == len(snap.index.tenants) == snap.points)
                assert snap.ids == sorted(snap.ids)
                for pid, payload, tenant in zip(snap.ids, snap.payloads, snap.index.tenants,
                                                strict=True):
                    assert point_id(payload["doc_id"], 0) == pid
                    assert tenant == (payload.get("tenant") or "")
                query = vector(rng.randrange(n_docs), rng.randrange(30))
                tenant = rng.choice(TENANTS)
                for hit in store.search(C, f"version{rng.randrange(30)} refund", k=5,
                                        query_vector=query, tenant=tenant,
                                        tenant_filter=True):
                    doc, version = int(hit.doc_id[1:]), hit.payload["version"]
                    assert hit.text.startswith(f"version{version} ")
                    assert hit.payload.get("tenant") == tenant
                    expected = float(np.dot(vector(doc, version), query))
                    assert abs(hit.dense_score - expected) < 1e-5, (hit, expected)
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
                store.delete_ids(C, [point_id(f"d{doc}", 0)])
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
    mine = store._lexical_index(C)
    assert_same_snapshot(mine, rebuilt(store)._lexical_index(C))
    assert {p["doc_id"]: p["version"] for p in mine.payloads} == {
        f"d{d}": v for d, v in version.items()}
