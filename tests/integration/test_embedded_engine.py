"""The embedded engine as processes see it: crashes, a second process, an old home.

Children are real processes started with the repo on their path; SIGKILL is sent while they
write in a loop, so it lands inside a write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from retrieval.cases import COLLECTION, search_cases, upsert_case
from retrieval.store import RetrievalUnavailable, open_store

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import sys
import numpy as np
from pathlib import Path
from retrieval.store import Chunk, open_store
from retrieval.cases import upsert_case
from supportgraph.models.encoders import Encoders

home, what = Path(sys.argv[1]), sys.argv[2]
store = open_store(home=home, embedder=Encoders().embedder)
store.ensure_collection("kb")
rng = np.random.default_rng(1)
print("ready", flush=True)
for i in range(100_000):
    if what == "ingest":
        chunks = [Chunk(doc_id=f"doc{i}", chunk=c, text=f"passage {i} {c} refund", tenant="acme")
                  for c in range(20)]
        vectors = rng.normal(size=(20, 384)).astype(np.float32)
        store.upsert_chunks("kb", chunks, vectors=vectors / np.linalg.norm(vectors, axis=1,
                                                                          keepdims=True))
    else:
        upsert_case(store, ticket_id=f"t{i}", text=f"case {i}: " + " ".join(
            f"w{x}" for x in rng.integers(0, 5000, 12)), reply="done", intent=f"i{i % 7}",
            tenant=("acme", "globex")[i % 2], resolved_at="now", source="auto")
    print(f"ok {i}", flush=True)
"""


def child(home: Path, what: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(home), what], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def committed_after_kill(proc: subprocess.Popen, after: int) -> list[int]:
    """Let `proc` report `after` finished writes, SIGKILL it mid-loop; the finished ones."""
    done: list[int] = []
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:
            if line.startswith("ok "):
                done.append(int(line.split()[1]))
                if len(done) >= after:
                    break
            assert time.monotonic() < deadline, "child too slow"
        time.sleep(0.05)  # well inside the next write
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("ok ")]
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    return done


@pytest.mark.parametrize("what", ["ingest", "learn"])
def test_sigkill_during_a_write_loses_nothing_committed(tmp_path, what, embedder):
    home = tmp_path / "home"
    done = committed_after_kill(child(home, what), 6)
    # the lock died with the process; the log replays
    store = open_store(home=home, embedder=embedder)
    try:
        if what == "ingest":
            assert store.count("kb") >= 20 * len(done)
            for i in done:
                hits = store.search("kb", f"passage {i}", k=20, tenant="acme",
                                    match={"doc_id": f"doc{i}"}, mode="lexical")
                assert len(hits) == 20
        else:
            assert store.count(COLLECTION) >= len(done)
            stored = {t for _, p in store.scroll_payloads(COLLECTION)
                      for t in p.get("ticket_ids") or []}
            assert {f"t{i}" for i in done} <= stored
        # and it takes writes again
        assert upsert_case(store, ticket_id="after", text="after the crash", reply="ok",
                           intent="x", tenant="acme", resolved_at="now", source="auto") == "added"
    finally:
        store.close()


def test_a_second_process_on_one_home_is_told_who_holds_it(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from retrieval.store import open_store\nstore = open_store(home=Path(sys.argv[1]))\n"
         "print('ready', flush=True)\ntime.sleep(60)", str(home)],
        env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        start = time.monotonic()
        with pytest.raises(RetrievalUnavailable) as err:
            open_store(home=home)
        assert time.monotonic() - start < 2
        message = str(err.value)
        assert f"pid {holder.pid}" in message and "in use" in message and "\n" not in message
        assert "QDRANT_URL" in message
    finally:
        holder.kill()
        holder.wait()
    store = open_store(home=home)  # free again once the holder is gone
    store.close()


def old_local_mode_home(home: Path, cases: list[dict], kb: list[dict]) -> None:
    """A home as the previous release left it: qdrant-client local mode, old point ids."""
    from qdrant_client import QdrantClient, models

    namespace = uuid.UUID("6f1c3b1e-5d0a-4f5e-9a57-2d8f0c1b7e42")
    client = QdrantClient(path=str(home / "qdrant"))
    rng = np.random.default_rng(0)
    for name, payloads in (("resolved_cases", cases), ("kb_billing", kb)):
        client.create_collection(name, vectors_config={"dense": models.VectorParams(
            size=384, distance=models.Distance.COSINE)})
        if not payloads:
            continue
        client.upsert(name, [models.PointStruct(
            id=str(uuid.uuid5(namespace, f"{p['doc_id']}\x1f{p['chunk']}")),
            vector={"dense": rng.normal(size=384).tolist()}, payload=p) for p in payloads])
    client.create_collection("supportgraph_meta", vectors_config=models.VectorParams(
        size=1, distance=models.Distance.DOT))
    client.upsert("supportgraph_meta", [models.PointStruct(
        id=str(uuid.uuid5(namespace, "meta\x1fdemo_kb:kb_billing")), vector=[1.0],
        payload={"key": "demo_kb:kb_billing", "fingerprint": "abc", "files": 3})])
    client.close()


def test_an_old_local_mode_home_is_migrated_on_first_open_and_loses_no_case(tmp_path, embedder):
    home = tmp_path / "home"
    cases = [{"doc_id": f"case:t{i}", "chunk": 0, "n_chunks": 1, "title": "", "source": "auto",
              "text": f"old case {i} about refunds", "hash": "h", "kind": "case",
              "ticket_id": f"t{i}", "ticket_ids": [f"t{i}"], "intent": "refund",
              "reply": f"reply {i}", "resolved_at": "2026-01-01",
              **({"tenant": ("acme", "globex")[i % 3]} if i % 3 < 2 else {})}
             for i in range(30)]
    kb = [{"doc_id": "billing/refunds.md#refunds", "chunk": c, "n_chunks": 2,
           "title": "Refunds", "source": "billing/refunds.md", "text": f"refund part {c}",
           "hash": "h"} for c in range(2)]
    old_local_mode_home(home, cases, kb)
    store = open_store(home=home, embedder=embedder)
    try:
        assert store.count(COLLECTION) == 30 and store.count("kb_billing") == 2
        assert store.get_meta("demo_kb:kb_billing")["fingerprint"] == "abc"
        marker = store.get_meta("migrated_from_local_mode")
        assert marker["points"] == {"resolved_cases": 30, "kb_billing": 2}
        for tenant, expected in (("acme", 10), ("globex", 10), (None, 10)):
            found = search_cases(store, "old case about refunds", k=50, tenant=tenant)
            assert len(found) == expected and all(c.tenant == tenant for c in found)
        # the new id scheme: a re-run of an old ticket's learn step finds its case
        old = cases[0]
        assert upsert_case(store, ticket_id="t0", text=old["text"], reply=old["reply"],
                           intent="refund", tenant="acme", resolved_at="now",
                           source="auto") == "unchanged"
        assert store.count(COLLECTION) == 30
        hits = store.search("kb_billing", "refund part", k=5)
        assert {h.chunk for h in hits} == {0, 1}  # BM25 and dense both work on copied points
    finally:
        store.close()
    # second open: nothing copied again (the learned case stays, nothing doubles)
    before = json.dumps(marker, sort_keys=True)
    store = open_store(home=home)
    try:
        assert json.dumps(store.get_meta("migrated_from_local_mode"), sort_keys=True) == before
        assert store.count(COLLECTION) == 30
    finally:
        store.close()
    assert (home / "qdrant" / "meta.json").is_file()  # the old folder is kept as the backup


def test_a_migration_cut_short_runs_again_and_is_idempotent(tmp_path):
    from retrieval.migrate import migrate_local_mode

    home = tmp_path / "home"
    cases = [{"doc_id": f"case:t{i}", "chunk": 0, "text": f"case {i}", "tenant": "acme",
              "ticket_ids": [f"t{i}"]} for i in range(12)]
    old_local_mode_home(home, cases, [])
    store = open_store(home=home)
    try:
        # as if killed before the marker was written: the copy runs again, same ids
        path = store.backend.root / "meta.json"
        data = json.loads(path.read_text())
        del data["migrated_from_local_mode"]
        path.write_text(json.dumps(data))
        assert migrate_local_mode(store, home / "qdrant") == {"resolved_cases": 12,
                                                               "kb_billing": 0}
        assert store.count(COLLECTION) == 12
        assert migrate_local_mode(store, home / "qdrant") is None  # recorded now
    finally:
        store.close()


def test_an_old_server_collection_is_upgraded_behind_its_name_and_loses_no_case(
    tmp_path, caplog, embedder
):
    """`supportgraph migrate`'s work: BM25 and tenant ids for an older release's collections.

    qdrant-client's local mode stands in for the server (same aliases and Query API).
    """
    from qdrant_client import QdrantClient

    from retrieval.migrate import upgrade_server_collections
    from retrieval.store import open_client_store

    server = tmp_path / "server"
    server.mkdir()
    cases = [{"doc_id": f"case:t{i}", "chunk": 0, "n_chunks": 1, "title": "", "source": "auto",
              "text": f"old case {i} about refunds", "hash": "h", "kind": "case",
              "ticket_id": f"t{i}", "ticket_ids": [f"t{i}"], "intent": "refund",
              "reply": f"reply {i}", "resolved_at": "2026-01-01",
              "tenant": ("acme", "globex")[i % 2]} for i in range(20)]
    kb = [{"doc_id": "billing/refunds.md#refunds", "chunk": c, "n_chunks": 2,
           "title": "Refunds", "source": "billing/refunds.md", "text": f"refund part {c}",
           "hash": "h"} for c in range(2)]
    old_local_mode_home(server, cases, kb)  # same layout an old server held
    (server / "qdrant").rename(server / "data")
    store = open_client_store(QdrantClient(path=str(server / "data")), location="old-server",
                              server=False, embedder=embedder)
    try:
        assert store.search("kb_billing", "refund part", k=5, mode="lexical") == []  # no BM25
        assert "until `supportgraph migrate`" in caplog.text
        assert upgrade_server_collections(store) == {"resolved_cases": 20, "kb_billing": 2}
        assert store.collections() == ["kb_billing", "resolved_cases"]  # the names callers use
        assert store.count(COLLECTION) == 20 and store.count("kb_billing") == 2
        assert {h.chunk for h in store.search("kb_billing", "refund part", k=5,
                                              mode="lexical")} == {0, 1}
        for tenant in ("acme", "globex"):
            found = search_cases(store, "old case about refunds", k=50, tenant=tenant)
            assert len(found) == 10 and all(c.tenant == tenant for c in found)
        # today's ids: an old ticket's learn step finds its case instead of adding a twin
        assert upsert_case(store, ticket_id="t0", text=cases[0]["text"], reply="reply 0",
                           intent="refund", tenant="acme", resolved_at="now",
                           source="auto") == "unchanged"
        assert store.count(COLLECTION) == 20
        assert upgrade_server_collections(store) == {}  # re-running finds nothing to do
        store.delete_collection("kb_billing")  # an upgraded collection drops with its alias
        assert store.collections() == ["resolved_cases"]
    finally:
        store.close()


def test_migrate_command_on_an_embedded_home_and_on_a_dead_server(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTGRAPH_")
           and k != "QDRANT_URL"}
    env["SUPPORTGRAPH_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-m", "supportgraph", "migrate"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "embedded home migrates itself" in done.stdout
    env["QDRANT_URL"] = "http://127.0.0.1:9"  # nothing listens there
    dead = subprocess.run([sys.executable, "-m", "supportgraph", "migrate"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert dead.returncode != 0 and "Traceback" not in dead.stderr
    assert len(dead.stderr.strip().splitlines()) == 1 and "qdrant" in dead.stderr.lower()
