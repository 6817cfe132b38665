import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from retrieval.cases import COLLECTION, delete_case, search_cases, upsert_case
from retrieval.ingest import ensure_demo_kb, ingest_paths, retrieve_file
from retrieval.store import (
    RetrievalUnavailable,
    StoreRegistry,
    open_client_store,
    open_store,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval"


@pytest.fixture(params=["embedded", "client"])
def store(request, tmp_path, embedder):
    """Both engines: qdrant-edge in the home, and qdrant-client (local mode standing in for a
    server: same Query API, same request shapes)."""
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


@pytest.fixture
def kb(tmp_path):
    target = tmp_path / "kb"
    shutil.copytree(DATA / "kb", target)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_registry_shares_a_store_per_location_until_its_last_user_leaves(tmp_path):
    registry = StoreRegistry()
    store = registry.open(home=tmp_path / "home")
    other = registry.open(home=tmp_path / "other")
    try:
        assert registry.open(home=tmp_path / "home") is store  # a second root, same home
        assert other is not store
        # an embedded home admits one engine, even within a process: a raw open is refused
        with pytest.raises(RetrievalUnavailable, match="in use by pid"):
            open_store(home=tmp_path / "home")
        registry.release(store)  # one user left: still open for it
        assert store.collections() == []
        registry.release(store)  # the last one: closed, and the home is free again
        again = open_store(home=tmp_path / "home")
        again.close()
    finally:
        registry.close_all()


def test_ingest_is_idempotent(store, kb):
    first = ingest_paths(store, "kb", [kb, DATA / "records.jsonl"])
    assert first.skipped == []
    assert first.documents == 12  # 8 markdown sections with text + 1 text file + 3 records
    assert first.written == first.chunks
    count = store.count("kb")
    assert count == first.chunks
    second = ingest_paths(store, "kb", [kb, DATA / "records.jsonl"])
    assert second.written == 0
    assert store.count("kb") == count
    ids = {h.doc_id for h in store.search("kb", "refund annual plan", k=20)}
    assert "kb/billing/refunds.md#annual-plans" in ids
    assert {"auth-401", "auth-403", "42"} <= ids | {
        h.doc_id for h in store.search("kb", "401 403 pagination cursor", k=20)}


def test_shrunk_document_loses_stale_chunks(store, tmp_path):
    doc = tmp_path / "long.md"
    doc.write_text("# Long\n\n" + " ".join(f"word{i}" for i in range(600)) + "\n")
    assert ingest_paths(store, "kb", [doc]).chunks >= 4
    doc.write_text("# Long\n\nshort now\n")
    report = ingest_paths(store, "kb", [doc])
    assert report.chunks == 1
    assert store.count("kb") == 1


def test_bad_files_are_reported_and_the_rest_ingested(store, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\n\nRetry failed payments from Billing.\n")
    (folder / "empty.md").write_text("")
    (folder / "blank.txt").write_text("  \n\n")
    (folder / "binary.txt").write_bytes(b"\x89PNG\x00\x00\x01binary")
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (folder / "huge.txt").write_bytes(b"a" * (5 * 1024 * 1024 + 1))
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / "records.jsonl").write_text(
        '{"id": "ok", "text": "Upgrades apply immediately."}\n'
        "{not json\n"
        '{"id": "no-text"}\n'
        '["a list"]\n'
        '{"id": "ok2", "text": "Downgrades apply at period end.", "title": "Downgrades"}\n'
    )
    report = ingest_paths(store, "kb", [folder])
    reasons = {Path(p).name + ": " + r for p, r in report.skipped}
    assert "empty.md: empty" in reasons
    assert "blank.txt: empty" in reasons
    assert any(r.startswith("binary.txt: binary") for r in reasons)
    assert any(r.startswith("latin1.txt: not UTF-8") for r in reasons)
    assert any(r.startswith("huge.txt: too large") for r in reasons)
    assert any(r.startswith("image.png: unsupported") for r in reasons)
    assert any(r.startswith("records.jsonl: malformed JSONL line 2") for r in reasons)
    assert any(r.startswith("records.jsonl: malformed JSONL line 3") for r in reasons)
    assert any(r.startswith("records.jsonl: malformed JSONL line 4") for r in reasons)
    assert report.documents == 3  # good.md + ok + ok2
    assert store.count("kb") == 3


def test_retrieve_file_contract(store, kb, tmp_path):
    ingest_paths(store, "kb", [kb, DATA / "records.jsonl"])
    out = tmp_path / "hits.jsonl"
    summary = retrieve_file(store, "kb", DATA / "queries.jsonl", out, k=3)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["q1", "q2", None, "q4", "q5"]
    assert summary["queries"] == 5 and summary["answered"] == 3
    assert [e["id"] for e in summary["errors"]] == [None, "q4"]
    for line in (lines[0], lines[1], lines[4]):
        assert len(line["hits"]) == 3
        assert len({h["doc_id"] for h in line["hits"]}) == 3
        for hit in line["hits"]:
            assert set(hit) == {"doc_id", "score", "title", "text"}
        scores = [h["score"] for h in line["hits"]]
        assert scores == sorted(scores, reverse=True)
    assert lines[0]["hits"][0]["doc_id"] == "kb/billing/refunds.md#annual-plans"
    assert lines[1]["hits"][0]["doc_id"] == "kb/technical/webhooks.md#verifying-signatures"
    assert lines[4]["hits"][0]["doc_id"] == "auth-401"
    assert "error" in lines[2] and lines[2]["hits"] == []


def test_hits_carry_fields_and_cosine(store, kb):
    ingest_paths(store, "kb", [kb])
    hits = store.best_documents("kb", "Relaypoint-Signature HMAC header", k=2)
    top = hits[0]
    assert top.doc_id == "kb/technical/webhooks.md#verifying-signatures"
    assert top.title == "Webhooks > Verifying signatures"
    assert "HMAC-SHA256" in top.text
    assert top.collection == "kb" and 0.2 < top.dense_score <= 1.0
    assert top.score >= hits[1].score


def test_missing_collection_is_retrieval_unavailable(store):
    with pytest.raises(RetrievalUnavailable, match="does not exist"):
        store.search("kb_nothing", "refund", k=3)
    with pytest.raises(RetrievalUnavailable):
        store.count("kb_nothing")
    assert search_cases(store, "anything", k=3, tenant=None) == []


def test_unreachable_server_fails_fast(tmp_path, embedder):
    url = f"http://127.0.0.1:{free_port()}"
    remote = open_store(home=tmp_path, url=url, timeout=2.0, embedder=embedder)
    try:
        for call in (
            lambda: remote.search("kb_billing", "refund", k=3),
            lambda: remote.ensure_collection("kb_billing"),
            lambda: upsert_case(remote, ticket_id="t", text="x", reply="y", intent="i",
                                tenant=None, resolved_at="now", source="auto"),
            lambda: search_cases(remote, "x", k=3, tenant=None),
        ):
            start = time.monotonic()
            with pytest.raises(RetrievalUnavailable) as err:
                call()
            assert time.monotonic() - start < 5
            assert url in str(err.value) and "\n" not in str(err.value)
    finally:
        remote.close()


def case(store, ticket_id, text, *, tenant="acme", intent="refund_request", reply="Refunded."):
    return upsert_case(store, ticket_id=ticket_id, text=text, reply=reply, intent=intent,
                       tenant=tenant, resolved_at="2026-11-25T12:00:00Z", source="auto")


def test_cases_added_unchanged_updated_and_near_duplicates(store):
    text = "I was charged twice for the Growth plan this month, please refund one charge"
    assert case(store, "t1", text) == "added"
    assert case(store, "t1", text) == "unchanged"
    assert case(store, "t1", text, reply="Refunded in 5-10 business days.") == "updated"
    assert store.count(COLLECTION) == 1
    # near-duplicate of the same tenant and intent refreshes the existing case
    assert case(store, "t2", text + ".") == "updated"
    assert store.count(COLLECTION) == 1
    [hit] = search_cases(store, "charged twice", k=5, tenant="acme")
    assert hit.ticket_id == "t2" and hit.ticket_ids == ["t1", "t2"]
    # same text, different intent or tenant: separate cases
    assert case(store, "t3", text, intent="payment_failed") == "added"
    assert case(store, "t4", text, tenant="globex") == "added"
    assert case(store, "t5", "How do I verify webhook signatures?", intent="webhooks") == "added"
    assert store.count(COLLECTION) == 4


def test_tenant_isolation(store):
    case(store, "a1", "Our invoices are missing the VAT ID", tenant="acme")
    case(store, "b1", "Our invoices are missing the VAT ID number", tenant="globex")
    case(store, "n1", "Invoices are missing the VAT ID for us", tenant=None)
    for tenant, expected in (("acme", {"a1"}), ("globex", {"b1"}), (None, {"n1"}),
                             ("initech", set())):
        hits = search_cases(store, "VAT ID missing on invoice", k=10, tenant=tenant)
        assert {h.ticket_id for h in hits} == expected
        assert all(h.tenant == tenant for h in hits)


def test_case_payload_has_no_pii(store):
    case(store, "p1", "Charge on card 4242 4242 4242 4242, mail me at jane.doe@example.com",
         reply="We wrote to jane.doe@example.com")
    [(_, payload)] = store.scroll_payloads(COLLECTION)
    blob = json.dumps(payload)
    assert "jane.doe@example.com" not in blob
    assert "4242 4242 4242 4242" not in blob


def test_delete_case_by_ticket_id(store):
    case(store, "d1", "Please cancel my subscription at the end of the period",
         intent="cancellation")
    case(store, "d2", "Where do I download invoices?", intent="invoice_request")
    assert delete_case(store, "d1") is True
    assert delete_case(store, "d1") is False
    assert {h.ticket_id for h in search_cases(store, "cancel", k=5, tenant="acme")} == {"d2"}


def test_ensure_demo_kb_is_idempotent_and_tracks_changes(store, kb):
    first = ensure_demo_kb(store, root=kb)
    assert first["kb_billing"]["status"] == "ingested"
    assert first["kb_technical"]["documents"] == 2  # only *.md are part of the demo KB
    billing = store.count("kb_billing")
    start = time.perf_counter()
    again = ensure_demo_kb(store, root=kb)
    assert again == {"kb_billing": {"status": "unchanged"},
                     "kb_technical": {"status": "unchanged"}}
    assert time.perf_counter() - start < 1.0
    (kb / "billing" / "invoices.md").unlink()
    changed = ensure_demo_kb(store, root=kb)
    assert changed["kb_billing"]["deleted"] == 2
    assert changed["kb_technical"]["status"] == "unchanged"
    assert store.count("kb_billing") == billing - 2
    hits = store.best_documents("kb_billing", "refund", k=5)
    assert all(h.doc_id.startswith("billing/refunds.md#") for h in hits)


def test_concurrent_searches_share_one_local_client(store, kb):
    ingest_paths(store, "kb", [kb])
    errors: list[BaseException] = []
    tops: list[str] = []

    def worker() -> None:
        try:
            tops.append(store.best_documents("kb", "webhook retries", k=1)[0].doc_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(tops) == {"kb/technical/webhooks.md#retries"}


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_every_search_stays_inside_its_tenant(store, mode):
    """Hybrid, dense and BM25 searches, with and without an intent match, see one tenant."""
    import numpy as np

    from retrieval.store import Chunk

    rng = np.random.default_rng(7)
    tenants = [None, "acme", "globex"]
    chunks = [Chunk(doc_id=f"d{i}", chunk=0, text=f"refund invoice passage {i}",
                    tenant=tenants[i % 3], extra={"intent": ("refund", "invoice")[i % 2]})
              for i in range(90)]
    vectors = rng.normal(size=(90, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.ensure_collection("iso")
    store.upsert_chunks("iso", chunks, vectors=vectors)
    for tenant in [*tenants, "nobody"]:
        for match in (None, {"intent": "refund"}):
            hits = store.search("iso", "refund invoice passage", k=50, tenant=tenant,
                                tenant_filter=True, query_vector=vectors[0], match=match,
                                mode=mode)
            assert all(h.payload.get("tenant") == tenant for h in hits)
            expected = 0 if tenant == "nobody" else (15 if match else 30)
            assert len(hits) == expected
            assert all(h.payload["intent"] == "refund" for h in hits if match)
    # without a tenant filter every tenant's points compete
    hits = store.search("iso", "refund", k=90, query_vector=vectors[0], mode=mode)
    assert {h.payload.get("tenant") for h in hits} == set(tenants)
    # the same ticket id in two tenants is two points
    assert len({c.tenant for c in chunks if c.doc_id == "d0"}) == 1
    store.upsert_chunks("iso", [Chunk(doc_id="d0", chunk=0, text="other tenant", tenant="acme")],
                        vectors=vectors[:1])
    assert store.count("iso") == 91


def test_a_search_finds_a_write_at_once(store):
    """Learn, then search at once: the new case is found (no index rebuild in between)."""
    for i in range(30):
        case(store, f"bulk{i}", f"Question number {i} about seats and plans", intent=f"i{i % 5}")
    assert case(store, "new", "The Relaypoint webhook signature check fails with 401",
                intent="webhooks") == "added"
    [hit] = search_cases(store, "webhook signature fails 401", k=1, tenant="acme")
    assert hit.ticket_id == "new" and hit.score > 0.6


def test_one_ticket_id_in_two_tenants_is_two_cases(store):
    """Tenant is part of a case's point id, and dedup never merges across tenants."""
    text = "Our SSO login loops back to the sign-in page"
    assert case(store, "t-1", text, tenant="acme", intent="login") == "added"
    assert case(store, "t-1", text, tenant="globex", intent="login") == "added"
    assert case(store, "t-2", text + "!", tenant="globex", intent="login") == "updated"
    assert store.count(COLLECTION) == 2
    [acme] = search_cases(store, "SSO login loop", k=5, tenant="acme")
    [globex] = search_cases(store, "SSO login loop", k=5, tenant="globex")
    assert acme.ticket_ids == ["t-1"] and globex.ticket_ids == ["t-1", "t-2"]
    # a re-run of acme's learn step finds acme's own case, not globex's
    assert case(store, "t-1", text, tenant="acme", intent="login") == "unchanged"
    assert case(store, "t-2", text + "!", tenant="acme", intent="login") == "updated"
    assert delete_case(store, "t-1", tenant="globex") is True
    assert [c.ticket_ids for c in search_cases(store, "SSO", k=5, tenant="acme")] == [
        ["t-1", "t-2"]]
    assert search_cases(store, "SSO", k=5, tenant="globex") == []


def test_hostile_collection_names_are_refused(store):
    for name in ("../escape", "", "a/b", "x" * 300, "..", ".hidden"):
        with pytest.raises(ValueError, match="invalid collection name"):
            store.ensure_collection(name)


def test_a_server_collection_of_an_older_release_still_answers(tmp_path, caplog, embedder):
    """No BM25 sparse vectors in it: searches and learning go on, dense only, with a warning."""
    import numpy as np
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "server"))
    client.create_collection(COLLECTION, vectors_config={"dense": models.VectorParams(
        size=384, distance=models.Distance.COSINE)})
    remote = open_client_store(client, location="old-server", server=False, embedder=embedder)
    try:
        assert case(remote, "o1", "Refund the duplicate charge on my invoice") == "added"
        [hit] = search_cases(remote, "duplicate charge refund", k=3, tenant="acme")
        assert hit.ticket_id == "o1" and hit.score > 0.7
        assert "searching it dense only" in caplog.text
        rng = np.random.default_rng(0)
        assert remote.search(COLLECTION, "refund", k=3, mode="lexical",
                             query_vector=rng.normal(size=384)) == []
    finally:
        remote.close()
