"""Moving a home's qdrant-client local-mode data (`home/qdrant`) into the embedded engine.

Runs on the first open of a home that has the old folder and no record of a finished
migration. Every point is copied with its payload and dense vector (no re-embedding), gets its
BM25 sparse vector, and gets the id of today's scheme (tenant in the id: two tenants' cases with
one ticket id stay two cases). Ids are deterministic, so a migration cut short (SIGKILL) is
simply run again on the next open; it is recorded as finished only after every collection was
copied and counted. The old folder is left in place (it is the backup); nothing reads it again.

`upgrade_server_collections` does the same for collections on a Qdrant server made by an older
release (dense vectors only, ids without the tenant): `supportgraph migrate` copies each into
`<name>.bm25` with BM25 vectors and today's ids, checks the count, drops the old collection
and makes `<name>` an alias of the new one, so every worker keeps using the name it knows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval import sparse
from retrieval.backends import META_COLLECTION, StoredPoint, check_name
from retrieval.points import RetrievalUnavailable, point_id

log = logging.getLogger(__name__)

MARKER = "migrated_from_local_mode"


def migrate_local_mode(store: Any, folder: Path) -> dict[str, int] | None:
    """Copy `folder` (local-mode Qdrant) into `store` once; returns points per collection."""
    if not (folder / "meta.json").is_file() or store.get_meta(MARKER) is not None:
        return None
    from qdrant_client import QdrantClient

    try:
        client = QdrantClient(path=str(folder))
    except Exception as exc:  # held by a process still running the old version
        raise RetrievalUnavailable(
            f"cannot migrate local qdrant data at {folder}: {type(exc).__name__}: "
            + " ".join(str(exc).split())[:200]) from exc
    copied: dict[str, int] = {}
    try:
        for description in client.get_collections().collections:
            name = description.name
            if name == META_COLLECTION:
                _copy_meta(store, client)
                continue
            check_name(name)
            copied[name] = _copy(store, client, name)
    finally:
        client.close()
    store.set_meta(MARKER, {"from": str(folder), "at": time.time(), "points": copied})
    log.warning("migrated local qdrant data at %s into %s: %s", folder, store.location, copied)
    return copied


def _copy(store: Any, client: Any, name: str, target: str | None = None) -> int:
    """Copy collection `name` read through `client` into `target` (default: same name)."""
    target = target or name
    store.ensure_collection(target)
    offset = None
    ids: set[str] = set()
    while True:
        points, offset = client.scroll(name, limit=512, offset=offset, with_payload=True,
                                       with_vectors=True)
        batch = []
        for p in points:
            payload = dict(p.payload or {})
            vector = p.vector.get("dense") if isinstance(p.vector, dict) else p.vector
            pid = (point_id(str(payload["doc_id"]), int(payload.get("chunk", 0)),
                            payload.get("tenant"))
                   if "doc_id" in payload else str(p.id))
            batch.append(StoredPoint(
                id=pid, payload=payload,
                dense=np.asarray(vector, dtype=np.float32).tolist(),
                sparse=sparse.document_vector(str(payload.get("title", "")),
                                              str(payload.get("text", "")))))
        if batch:
            store._call("migrate", lambda batch=batch: store.backend.upsert(target, batch))
            ids.update(point.id for point in batch)
        if offset is None:
            break
    stored = store.count(target)
    if stored < len(ids):  # never record a migration that lost a point
        raise RetrievalUnavailable(f"migrating {name}: {len(ids)} points read, {stored} stored")
    return len(ids)


UPGRADED_SUFFIX = ".bm25"


def upgrade_server_collections(store: Any) -> dict[str, int]:
    """Upgrade every dense-only collection of a server store; returns points per collection.

    Run it while no worker writes (a deploy step): a case learned into the old collection
    after its copy was read would not be carried over. Re-running is safe: ids are
    deterministic, a finished collection is no longer dense-only, and an upgrade cut short
    before the swap is simply copied again.
    """
    backend = store.backend
    if not hasattr(backend, "alias"):
        raise ValueError("only a Qdrant server's collections are upgraded this way")
    done: dict[str, int] = {}
    for name in backend.names():
        if name.endswith(UPGRADED_SUFFIX) or not backend.dense_only(name, fresh=True):
            continue
        target = name + UPGRADED_SUFFIX
        check_name(target)
        done[name] = _copy(store, backend.client, name, target)
        backend.alias(name, target)
        log.warning("upgraded collection %s at %s: %d points now in %s (alias %s)",
                    name, store.location, done[name], target, name)
    return done


def _copy_meta(store: Any, client: Any) -> None:
    points, _ = client.scroll(META_COLLECTION, limit=10_000, with_payload=True)
    for p in points:
        payload = dict(p.payload or {})
        key = payload.pop("key", None)
        if isinstance(key, str) and key != MARKER:
            store.set_meta(key, payload)
