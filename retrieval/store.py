"""The knowledge store: collections of embedded passages with one-request hybrid search.

One class for the embedded engine (`$SUPPORTGRAPH_HOME/qdrant_edge`, qdrant-edge-py) and a
Qdrant server (`QDRANT_URL`, qdrant-client): every read and write goes through the same methods
and the same request shapes (`retrieval.backends`), only the engine differs.

A search is one Qdrant query: a dense prefetch and a BM25 sparse prefetch (`retrieval.sparse`),
both filtered by tenant/intent on indexed payload fields, fused by Qdrant (DBSF by default, see
`DEFAULT_FUSION`). A write is one upsert (plus one lookup by id to skip unchanged chunks); no
request reads a whole collection, and a query after a write sees it.

Failures of the engine (server down, collection missing, home held by another process) surface
as `RetrievalUnavailable` with a one-line reason, within the timeout.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from retrieval import sparse
from retrieval.backends import (
    ANY_TENANT,
    AnyTenant,
    ClientBackend,
    EdgeBackend,
    Fusion,
    HybridQuery,
    SearchMode,
    StoredPoint,
    Where,
    cosine,
)
from retrieval.points import (
    DENSE,
    Chunk,
    Hit,
    RetrievalUnavailable,
    chunk_payload,
    content_hash,
    embedding_text,
    make_hit,
    point_id,
)
from supportgraph.models.embeddings import Embedder

log = logging.getLogger(__name__)

EMBEDDED_DIR = "qdrant_edge"
DEFAULT_FUSION: Fusion = "dbsf"
"""Measured on benchmarks/retrieval.py (S10 manual, 50 questions and 300 generated ones):
DBSF keeps how far ahead a candidate is (like the min-max convex fusion it replaced); RRF
keeps ranks only. Figures in the module docstring of benchmarks/retrieval.py."""
_T = TypeVar("_T")

__all__ = [
    "ANY_TENANT", "DENSE", "Chunk", "Hit", "KnowledgeStore", "RetrievalUnavailable",
    "StoreRegistry", "content_hash", "distinct_documents", "embedding_text", "open_store",
    "point_id",
]


class KnowledgeStore:
    """Collections of embedded passages with hybrid search, embedded or on a server."""

    def __init__(self, backend: EdgeBackend | ClientBackend, *,
                 embedder: Embedder | None = None, on_close: Callable[[], None] | None = None):
        self.backend = backend
        self.location = backend.location
        self.server = backend.server
        self._embedder = embedder
        self._on_close = on_close
        self._known: set[str] = set()
        self._create_lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        """The embedder its opener gave (the composition root's); its weights load on first use.

        A store opened without one (administration: counts, scrolls, migration) can still read
        and write given vectors; embedding text with it is a programming error.
        """
        if self._embedder is None:
            raise RuntimeError(f"the store at {self.location} was opened without an embedder "
                               "(pass embedder= to open_store)")
        return self._embedder

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run one engine call; any transport or storage failure becomes RetrievalUnavailable."""
        try:
            return fn()
        except (RetrievalUnavailable, ValueError):
            raise
        except Exception as exc:  # the engines raise many types; all mean "cannot answer"
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise RetrievalUnavailable(
                f"qdrant at {self.location} failed to {what}: {type(exc).__name__}: {reason}"
            ) from exc

    def close(self) -> None:
        """Release the engine (and the embedded home's lock)."""
        try:
            self.backend.close()
        finally:
            if self._on_close is not None:
                self._on_close()

    # ------------------------------------------------------------------ collections

    def exists(self, collection: str) -> bool:
        """Whether `collection` exists (raises RetrievalUnavailable if the store is down)."""
        if collection in self._known:
            return True
        return self._call("check collection", lambda: self.backend.exists(collection))

    def collections(self) -> list[str]:
        """Names of every collection in this store."""
        return self._call("list collections", self.backend.names)

    def require(self, collection: str) -> None:
        """Fail fast with a clear reason when `collection` is missing."""
        if not self.exists(collection):
            raise RetrievalUnavailable(
                f"collection {collection!r} does not exist in qdrant at {self.location}"
                " (ingest it first)")
        self._known.add(collection)

    def ensure_collection(self, name: str) -> bool:
        """Create `name` with our vector layout if missing; True when it was created."""
        with self._create_lock:
            if self.exists(name):
                self._known.add(name)
                return False
            self._call("create collection", lambda: self.backend.create(name))
            self._known.add(name)
            return True

    def delete_collection(self, name: str) -> None:
        """Remove a whole collection (evals drop the cases of a copied home)."""
        with self._create_lock:
            self._known.discard(name)
            self._call("delete collection", lambda: self.backend.drop(name))

    def count(self, collection: str, *, tenant: str | None | AnyTenant = ANY_TENANT) -> int:
        """Exact number of points in `collection` (of one tenant when given)."""
        self.require(collection)
        return self._call("count", lambda: self.backend.count(collection, Where(tenant)))

    def optimize(self, collection: str) -> None:
        """Build the embedded collection's index now (after a bulk ingest); a no-op on a server."""
        self.require(collection)
        self._call("optimize", lambda: self.backend.optimize(collection))

    # ------------------------------------------------------------------ writes

    def upsert_chunks(self, collection: str, chunks: Sequence[Chunk], *, batch_size: int = 256,
                      vectors: np.ndarray | None = None) -> int:
        """Store `chunks`; returns how many points were written (unchanged ones are skipped).

        Pass all chunks of a document in one call: a document that got shorter loses its old
        tail chunks (the first chunk's payload records the count), so no stale text remains.
        `vectors`: precomputed embeddings, one per chunk (callers that already embedded).
        """
        if not chunks:
            return 0
        self.require(collection)
        by_id: dict[str, Chunk] = {}
        known: dict[str, np.ndarray] = {}
        counts: dict[tuple[str | None, str], int] = {}
        for i, chunk in enumerate(chunks):
            pid = point_id(chunk.doc_id, chunk.chunk, chunk.tenant)
            by_id[pid] = chunk
            if vectors is not None:
                known[pid] = vectors[i]
            doc = (chunk.tenant, chunk.doc_id)
            counts[doc] = max(counts.get(doc, 0), chunk.chunk + 1)
        hashes = {pid: content_hash(c, counts[(c.tenant, c.doc_id)]) for pid, c in by_id.items()}
        existing = self._stored(collection, list(by_id))
        # the stored first chunk of a document says how many chunks it had: the ids of a
        # shrunk document's tail are known without scanning the collection
        stale = []
        for (tenant, doc_id), count in counts.items():
            head = existing.get(point_id(doc_id, 0, tenant)) or {}
            previous = int(head.get("n_chunks", 0) or 0)
            stale.extend(point_id(doc_id, i, tenant) for i in range(count, previous))
        todo = [(pid, c) for pid, c in by_id.items()
                if (existing.get(pid) or {}).get("hash") != hashes[pid]]
        if stale:
            self._call("delete stale chunks", lambda: self.backend.delete_ids(collection, stale))
        for start in range(0, len(todo), batch_size):
            part = todo[start: start + batch_size]
            if all(pid in known for pid, _ in part):
                encoded = np.stack([known[pid] for pid, _ in part])
            else:
                encoded = self.embedder.encode([embedding_text(c.title, c.text) for _, c in part])
            points = [
                StoredPoint(id=pid, payload=chunk_payload(c, counts[(c.tenant, c.doc_id)],
                                                          hashes[pid]),
                            dense=np.asarray(vector, dtype=np.float32).tolist(),
                            sparse=sparse.document_vector(c.title, c.text))
                for (pid, c), vector in zip(part, encoded, strict=True)
            ]
            self._call("upsert", lambda points=points: self.backend.upsert(collection, points))
        return len(todo)

    def _stored(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Hash and chunk count of those of `ids` that are stored (lookups by id, no scans)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 1024):
            part = list(ids[start: start + 1024])
            for point in self._call("retrieve", lambda part=part: self.backend.retrieve(
                    collection, part, payload=["hash", "n_chunks"])):
                found[point.id] = point.payload
        return found

    def delete_where(self, collection: str, match: dict[str, str], *,
                     tenant: str | None | AnyTenant = ANY_TENANT) -> int:
        """Delete the points whose payload has these values; returns how many there were."""
        self.require(collection)
        where = Where(tenant, tuple(sorted(match.items())))
        before = self._call("count", lambda: self.backend.count(collection, where))
        if before:
            self._call("delete", lambda: self.backend.delete_where(collection, where))
        return int(before)

    def delete_ids(self, collection: str, ids: Sequence[str]) -> int:
        """Delete points by id; returns how many ids were given."""
        if not ids:
            return 0
        self._call("delete", lambda: self.backend.delete_ids(collection, list(ids)))
        return len(ids)

    def payload_of(self, collection: str, pid: str) -> dict[str, Any] | None:
        """Payload of one point, or None if there is no such point."""
        points = self._call("retrieve", lambda: self.backend.retrieve(collection, [pid]))
        return points[0].payload if points else None

    def get_meta(self, key: str) -> dict[str, Any] | None:
        """Bookkeeping value stored under `key` (e.g. a KB fingerprint), or None."""
        return self._call("read meta", lambda: self.backend.get_meta(key))

    def set_meta(self, key: str, value: dict[str, Any]) -> None:
        """Store a bookkeeping value next to the data it describes (same engine, same place)."""
        self._call("write meta", lambda: self.backend.set_meta(key, value))

    # ------------------------------------------------------------------ reads

    def scroll_payloads(self, collection: str, *, tenant: str | None | AnyTenant = ANY_TENANT,
                        match: dict[str, str] | None = None,
                        limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(point id, payload) pairs of `collection`, filtered, at most `limit` of them.

        For administration (the demo KB's stale-document sweep, the sentence cache, tests);
        searches and writes never call it.
        """
        self.require(collection)
        where = Where(tenant, tuple(sorted((match or {}).items())))
        out: list[tuple[str, dict[str, Any]]] = []
        offset = None
        while limit is None or len(out) < limit:
            page = 1024 if limit is None else min(1024, limit - len(out))
            points, offset = self._call("scroll", lambda offset=offset, page=page:
                                        self.backend.scroll(collection, where, limit=page,
                                                            offset=offset))
            out.extend((p.id, p.payload) for p in points)
            if offset is None:
                break
        return out

    def scroll_points(self, collection: str) -> list[tuple[str, dict[str, Any], np.ndarray]]:
        """Every (id, payload, dense vector) of `collection` (benchmarks, migration)."""
        self.require(collection)
        out = []
        offset = None
        while True:
            points, offset = self._call("scroll", lambda offset=offset: self.backend.scroll(
                collection, Where(), limit=1024, offset=offset, vector=True))
            out.extend((p.id, p.payload, np.asarray(p.dense, dtype=np.float32)) for p in points)
            if offset is None:
                return out

    def payloads_where(self, collection: str, key: str, value: str, *,
                       tenant: str | None | AnyTenant = ANY_TENANT,
                       limit: int = 16) -> list[dict[str, Any]]:
        """Payloads whose field `key` is `value` or, for a list field, contains it.

        One filtered request on an indexed field, at most `limit` rows.
        """
        return [p for _, p in self.scroll_payloads(collection, tenant=tenant,
                                                   match={key: value}, limit=limit)]

    def search(
        self,
        collection: str,
        query: str,
        *,
        k: int,
        tenant: str | None = None,
        query_vector: np.ndarray | None = None,
        tenant_filter: bool = False,
        match: dict[str, str] | None = None,
        mode: SearchMode = "hybrid",
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[Hit]:
        """Best `k` chunks for `query` by hybrid dense + BM25 search, fused by Qdrant.

        `tenant`: when given (or when `tenant_filter` is set), only points of that tenant
        (None: only points without a tenant) are considered. `match`: only points whose
        payload has these exact values (both prefetches are filtered).
        """
        vectors = None if query_vector is None else np.asarray(query_vector)[None, :]
        return self.search_many(collection, [query], k=k, tenant=tenant, query_vectors=vectors,
                                tenant_filter=tenant_filter, match=match, mode=mode,
                                fusion=fusion)[0]

    def search_many(
        self,
        collection: str,
        queries: Sequence[str],
        *,
        k: int,
        tenant: str | None = None,
        query_vectors: np.ndarray | None = None,
        tenant_filter: bool = False,
        match: dict[str, str] | None = None,
        pool: int | None = None,
        mode: SearchMode = "hybrid",
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[list[Hit]]:
        """`search` for several queries: one embedding pass, one batched Qdrant request.

        `mode` "dense" or "lexical" uses one signal only (ablations, benchmarks). Every hit
        carries its real cosine (`dense_score`), from the vector returned with it.
        """
        if k < 1:
            raise ValueError("k must be >= 1")
        if mode not in ("hybrid", "dense", "lexical"):
            raise ValueError(f"unknown search mode {mode!r}")
        if fusion not in ("dbsf", "rrf"):
            raise ValueError(f"unknown fusion {fusion!r}")
        if not queries:
            return []
        self.require(collection)
        where = Where(tenant if (tenant_filter or tenant is not None) else ANY_TENANT,
                      tuple(sorted((match or {}).items())))
        pool = pool or max(50, 5 * k)
        if query_vectors is None:
            query_vectors = self.embedder.encode(list(queries))
        vectors = np.asarray(query_vectors, dtype=np.float32)
        requests = [HybridQuery(dense=vector.tolist(), sparse=sparse.query_vector(text),
                                where=where, limit=k, pool=pool, mode=mode, fusion=fusion)
                    for text, vector in zip(queries, vectors, strict=True)]
        answers = self._call("query", lambda: self.backend.query(collection, requests))
        return [[make_hit(collection, p.id, p.score, p.payload, cosine(vector, p.dense))
                 for p in points]
                for points, vector in zip(answers, vectors, strict=True)]

    def best_documents(self, collection: str, query: str, *, k: int, tenant: str | None = None,
                       query_vector: np.ndarray | None = None, mode: SearchMode = "hybrid",
                       fusion: Fusion = DEFAULT_FUSION) -> list[Hit]:
        """Return the `k` best distinct documents, each represented by its best chunk."""
        vectors = None if query_vector is None else np.asarray(query_vector)[None, :]
        return self.best_documents_many(collection, [query], k=k, tenant=tenant,
                                        query_vectors=vectors, mode=mode, fusion=fusion)[0]

    def best_documents_many(self, collection: str, queries: Sequence[str], *, k: int,
                            tenant: str | None = None, query_vectors: np.ndarray | None = None,
                            mode: SearchMode = "hybrid",
                            fusion: Fusion = DEFAULT_FUSION) -> list[list[Hit]]:
        """`best_documents` for several queries in one batch."""
        pool = max(50, 10 * k)
        many = self.search_many(collection, queries, k=pool, tenant=tenant,
                                query_vectors=query_vectors, pool=pool, mode=mode, fusion=fusion)
        return [distinct_documents(hits, k) for hits in many]

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Fetch the stored dense vectors of some points (for similarity checks)."""
        points = self._call("retrieve", lambda: self.backend.retrieve(
            collection, list(ids), payload=False, vector=True))
        return {p.id: np.asarray(p.dense, dtype=np.float32) for p in points}


def distinct_documents(hits: Iterable[Hit], k: int) -> list[Hit]:
    """Keep the first (best) hit of each document, up to `k` documents."""
    seen: set[str] = set()
    out: list[Hit] = []
    for hit in hits:
        if hit.doc_id in seen:
            continue
        seen.add(hit.doc_id)
        out.append(hit)
        if len(out) == k:
            break
    return out


# ---------------------------------------------------------------------- opening


class _HomeLock:
    """An exclusive lock on an embedded home, naming its holder for whoever waits.

    The engine locks its write-ahead log too, but its error ("WouldBlock") names nobody; this
    lock file holds the pid and command line of the process that has the home open.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / ".lock"
        root.mkdir(parents=True, exist_ok=True)
        self.handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.handle, 512, 0).decode("utf-8", "replace").strip()
            os.close(self.handle)
            raise RetrievalUnavailable(
                f"embedded qdrant at {root} is in use by {holder or 'another process'}; "
                "stop it, or point both at one Qdrant server (QDRANT_URL)") from None
        os.ftruncate(self.handle, 0)
        command = " ".join(os.path.basename(a) if i == 0 else a
                           for i, a in enumerate(sys.argv[:4]))[:200]
        os.pwrite(self.handle, f"pid {os.getpid()} ({command})".encode(), 0)

    def release(self) -> None:
        if self.handle >= 0:
            os.close(self.handle)  # closing drops the flock
            self.handle = -1


def open_store(*, home: Path, url: str | None = None, api_key: str | None = None,
               timeout: float = 3.0, embedder: Embedder | None = None) -> KnowledgeStore:
    """Open the store at `url`, or else the embedded home `home/qdrant_edge`.

    Each call opens a new engine; the caller closes it. An embedded home is held by one engine
    at a time (a second open, even in this process, gets RetrievalUnavailable naming the
    holder): a process that opens a home from several places shares one engine through a
    `StoreRegistry`, as the composition root does. A home still holding qdrant-client
    local-mode data (`home/qdrant`) is migrated on first open. Opening does not contact a
    server; the first call that does raises RetrievalUnavailable within about `timeout`
    seconds if it is down.
    """
    if url:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=url, api_key=api_key, timeout=max(1, math.ceil(timeout)),
                              check_compatibility=False)
        return KnowledgeStore(ClientBackend(client, location=url, server=True),
                              embedder=embedder)
    return _open_embedded((Path(home) / EMBEDDED_DIR).resolve(), Path(home), embedder)


class StoreRegistry:
    """Open stores by location, shared by whoever opens the same one, closed with the last user.

    An embedded home admits one engine per process, so two composition roots of one process
    naming the same home (e.g. one database URL each) must share its engine; the process's
    root registry (`supportgraph.app.services`) owns one of these. Counted: `release` closes a
    store only when its last opener gave it back, so closing one root never pulls the engine
    from under another.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, ...], list[Any]] = {}  # key -> [store, users]

    def open(self, *, home: Path, url: str | None = None, api_key: str | None = None,
             timeout: float = 3.0, embedder: Embedder | None = None) -> KnowledgeStore:
        """The store of this location (opened on first use); give it back with `release`.

        The first opener's embedder is the store's (every root's embedder carries the same
        weights, so a vector does not depend on which one made it).
        """
        key: tuple[str, ...] = (("url", url.rstrip("/"), api_key or "") if url
                                else ("path", str((Path(home) / EMBEDDED_DIR).resolve())))
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                entry = self._open[key] = [open_store(home=home, url=url, api_key=api_key,
                                                      timeout=timeout, embedder=embedder), 0]
            entry[1] += 1
            return entry[0]

    def release(self, store: KnowledgeStore) -> None:
        """One opener is done with `store`: close it when it was the last."""
        with self._lock:
            for key, entry in list(self._open.items()):
                if entry[0] is store:
                    entry[1] -= 1
                    if entry[1] > 0:
                        return
                    del self._open[key]
        close_quietly(store)

    def close_all(self) -> None:
        """Close every store (process exit)."""
        with self._lock:
            stores = [entry[0] for entry in self._open.values()]
            self._open.clear()
        for store in stores:
            close_quietly(store)


def _open_embedded(root: Path, home: Path, embedder: Embedder | None) -> KnowledgeStore:
    try:
        lock = _HomeLock(root)
    except OSError as exc:
        raise RetrievalUnavailable(f"cannot open embedded qdrant at {root}: {exc}") from exc
    try:
        store = KnowledgeStore(EdgeBackend(root), embedder=embedder, on_close=lock.release)
        from retrieval.migrate import migrate_local_mode

        migrate_local_mode(store, home / "qdrant")
    except RetrievalUnavailable:
        lock.release()
        raise
    except Exception as exc:
        lock.release()
        raise RetrievalUnavailable(
            f"cannot open embedded qdrant at {root}: {type(exc).__name__}: "
            + " ".join(str(exc).split())[:200]) from exc
    return store


def open_client_store(client: Any, *, location: str, server: bool = True,
                      embedder: Embedder | None = None) -> KnowledgeStore:
    """A store on a given qdrant-client (tests: local mode standing in for a server)."""
    return KnowledgeStore(ClientBackend(client, location=location, server=server),
                          embedder=embedder)


def close_quietly(store: KnowledgeStore) -> None:
    """Close a store; a failure is logged, not raised (closing is best effort)."""
    try:
        store.close()
    except Exception as exc:  # closing is best effort; report, do not mask the caller
        log.warning("closing qdrant store at %s failed: %s", store.location, exc)
