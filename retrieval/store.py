"""Qdrant-backed knowledge store: one class for local mode and for a Qdrant server.

Why one class: the workflow must behave the same on a laptop (`$SUPPORTGRAPH_HOME/qdrant`)
and in production (`QDRANT_URL`), so every read and write goes through the same methods and
only the client constructor differs.

Search is hybrid: dense cosine from Qdrant plus BM25 over the stored payloads
(`retrieval.lexical`), fused by a convex combination of min-max scaled scores (reciprocal rank
fusion is available too; see `fuse_scores` and `benchmarks/retrieval.py` for the measurement).
Point ids are UUIDv5 of (doc_id, chunk index), so ingesting the same content twice changes
nothing, and unchanged chunks are not even re-embedded (a content hash sits in the payload).

Failures of the backing store (server down, collection missing, folder locked by another
process) surface as `RetrievalUnavailable` with a one-line reason, within the timeout.
"""

from __future__ import annotations

import atexit
import bisect
import hashlib
import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models

from models.embeddings import DIMENSIONS, MODEL_NAME, Embedder, get_embedder
from retrieval.lexical import LexicalIndex

log = logging.getLogger(__name__)

DENSE = "dense"
META_COLLECTION = "supportgraph_meta"
POINT_NAMESPACE = uuid.UUID("6f1c3b1e-5d0a-4f5e-9a57-2d8f0c1b7e42")
RRF_K = 60
DEFAULT_FUSION = "convex"
_T = TypeVar("_T")
SearchMode = Literal["hybrid", "dense", "lexical"]
Fusion = Literal["convex", "rrf"]


class RetrievalUnavailable(RuntimeError):
    """The knowledge store cannot answer (unreachable, missing collection, locked folder).

    The workflow turns this into a human hand-off with reason `retrieval_unavailable`, never
    into an answer drafted from nothing.
    """


@dataclass(frozen=True)
class Chunk:
    """One passage to store: a slice of a source document, addressed by (doc_id, chunk)."""

    doc_id: str
    chunk: int
    text: str
    title: str = ""
    source: str = ""
    tenant: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """Top-level payload fields beyond the standard ones (e.g. a case's intent)."""


@dataclass(frozen=True)
class Hit:
    """A retrieved passage.

    `score` ranks hits within one search (reciprocal rank fusion, not comparable across
    queries); `dense_score` is the cosine similarity of query and passage, an absolute
    relevance signal for thresholds.
    """

    doc_id: str
    chunk_id: str
    title: str
    text: str
    score: float
    collection: str
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk: int = 0
    dense_score: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict, repr=False)


def point_id(doc_id: str, chunk: int | str) -> str:
    """Deterministic point id, so re-ingesting the same passage overwrites, never duplicates."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{doc_id}\x1f{chunk}"))


def embedding_text(title: str, text: str) -> str:
    """Return what the dense model sees: the heading gives a short passage its topic."""
    title = title.strip()
    if not title or text.lstrip().lower().startswith(title.lower()):
        return text
    return f"{title}\n{text}"


def content_hash(chunk: Chunk, n_chunks: int = 1) -> str:
    """Hash of everything that determines a point's vector and payload."""
    digest = hashlib.sha256()
    for part in (MODEL_NAME, chunk.doc_id, str(chunk.chunk), str(n_chunks), chunk.title,
                 chunk.text,
                 chunk.source, chunk.tenant or "", repr(sorted(chunk.metadata.items())),
                 repr(sorted(chunk.extra.items()))):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


@dataclass
class _Lexical:
    """A snapshot of one collection: BM25 index, ids, payloads (and local vectors), row for row.

    Rows are sorted by point id (the order of a local scroll). Never mutated once published,
    except for the lazily filled caches: a write makes a new snapshot (`patched`) and swaps it
    in, so a reader holding one sees ids, payloads, vectors and BM25 that agree.
    """

    index: LexicalIndex
    ids: list[str]
    payloads: list[dict[str, Any]]
    generation: int
    built_at: float
    points: int
    vectors: np.ndarray | None = None
    """Local mode only: the dense vectors, row for row, for an exact search in numpy."""
    _by_id: dict[str, dict[str, Any]] | None = None
    _columns: dict[str, np.ndarray] = field(default_factory=dict)

    def column(self, key: str) -> np.ndarray:
        """One payload field of every point, row for row (built on first use)."""
        if key not in self._columns:
            self._columns[key] = _objects([p.get(key) for p in self.payloads])
        return self._columns[key]

    def payload_by_id(self) -> dict[str, dict[str, Any]]:
        """Point id -> payload (built on first use)."""
        if self._by_id is None:
            self._by_id = dict(zip(self.ids, self.payloads, strict=True))
        return self._by_id

    def patched(
        self, stored: dict[str, tuple[dict[str, Any], np.ndarray]], touched: Iterable[str]
    ) -> _Lexical:
        """A new snapshot with the `touched` points as `stored` (a touched id not in it: gone).

        Rows stay sorted by id, so the result is row for row the snapshot a rebuild would make
        (same ties, same BM25 sums). Only the touched points are handled one by one; the other
        rows are list and array copies, and `self` stays as it was for readers still on it.
        """
        gone = sorted({row for pid in {*touched, *stored}
                       if (row := _row(self.ids, pid)) is not None})
        keep = np.ones(len(self.ids), dtype=bool)
        keep[gone] = False
        new_ids = sorted(stored)
        payloads = [stored[pid][0] for pid in new_ids]
        # np.insert positions among the kept rows: before the first larger id
        before = np.array([bisect.bisect_left(self.ids, pid) for pid in new_ids], dtype=np.intp)
        positions = before - np.searchsorted(np.array(gone, dtype=np.intp), before)
        vectors = self.vectors
        if vectors is not None:
            new_vectors = np.array([stored[pid][1] for pid in new_ids], dtype=np.float32)
            vectors = _inserted(vectors, keep, positions,
                                new_vectors.reshape(len(new_ids), vectors.shape[1]))
        ids = _spliced(self.ids, keep, positions, new_ids)
        return _Lexical(
            index=self.index.spliced(
                keep, positions,
                [str(p.get("title", "")) for p in payloads],
                [str(p.get("text", "")) for p in payloads],
                [p.get("tenant") for p in payloads],
            ),
            ids=ids,
            payloads=_spliced(self.payloads, keep, positions, payloads),
            generation=self.generation,
            built_at=self.built_at,
            points=len(ids),
            vectors=vectors,
            _columns={key: _inserted(values, keep, positions,
                                     _objects([p.get(key) for p in payloads]))
                      for key, values in dict(self._columns).items()},
        )


def _row(ids: list[str], pid: str) -> int | None:
    """Row of `pid` in sorted `ids`, or None."""
    row = bisect.bisect_left(ids, pid)
    return row if row < len(ids) and ids[row] == pid else None


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-d object array of `values` (filled one by one: list values must stay lists)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _inserted(
    array: np.ndarray, keep: np.ndarray, positions: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """`array` without the rows where `keep` is False, with `values` inserted before `positions`."""
    kept = array[keep]
    return np.insert(kept, positions, values, axis=0) if len(positions) else kept


def _spliced(
    items: list[_T], keep: np.ndarray, positions: np.ndarray, values: list[_T]
) -> list[_T]:
    """`_inserted` for a list (slices, no per-item Python work for the untouched rows)."""
    kept = list(itertools.compress(items, keep.tolist()))
    out: list[_T] = []
    start = 0
    for position, value in zip(positions.tolist(), values, strict=True):
        out.extend(kept[start:position])
        out.append(value)
        start = position
    out.extend(kept[start:])
    return out


class KnowledgeStore:
    """Collections of embedded passages with hybrid search, local or on a server."""

    def __init__(
        self,
        client: QdrantClient,
        *,
        location: str,
        server: bool,
        embedder: Embedder | None = None,
        lexical_ttl: float = 30.0,
    ) -> None:
        self.client = client
        self.location = location
        self.server = server
        self._embedder = embedder
        self._lexical_ttl = lexical_ttl
        # Local mode keeps numpy arrays and a sqlite handle per collection: not thread-safe.
        # A server client is, and serialising it would only add latency.
        self._lock: threading.RLock | None = None if server else threading.RLock()
        self._meta_lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._known: set[str] = set()
        self._tuned: set[str] = set()
        self._generation: dict[str, int] = {}
        self._lexical: dict[str, _Lexical] = {}
        self._lexical_locks: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------------ plumbing

    @property
    def embedder(self) -> Embedder:
        """The shared embedder (loaded on first use, not when the store opens)."""
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run one client call; any transport or storage failure becomes RetrievalUnavailable."""
        try:
            if self._lock is None:
                return fn()
            with self._lock:
                return fn()
        except RetrievalUnavailable:
            raise
        except Exception as exc:  # the client raises many types; all mean "cannot answer"
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise RetrievalUnavailable(
                f"qdrant at {self.location} failed to {what}: {type(exc).__name__}: {reason}"
            ) from exc

    def _bump(self, collection: str) -> None:
        """Mark the snapshot of `collection` stale: the next search rebuilds it."""
        with self._meta_lock:
            self._generation[collection] = self._generation.get(collection, 0) + 1

    def _snapshot_lock(self, collection: str) -> threading.Lock:
        """The lock that serialises building, patching and swapping one collection's snapshot."""
        with self._meta_lock:
            return self._lexical_locks.setdefault(collection, threading.Lock())

    def _after_write(self, collection: str, ids: Sequence[str]) -> None:
        """Bring the snapshot of `collection` up to date with our write of the points `ids`.

        Local mode patches it from those points as now stored, so the next search does not
        scroll and re-tokenise the whole collection. A server's snapshot is rebuilt instead:
        other processes write there too, and its TTL and point-count checks assume a copy
        made by one scroll.
        """
        if self.server:
            self._bump(collection)
            return
        try:
            self._patch(collection, ids)
        except Exception as exc:  # the write itself went through: never serve a stale copy
            log.warning("could not patch the snapshot of %s, rebuilding it: %s", collection, exc)
            self._bump(collection)

    def _patch(self, collection: str, ids: Sequence[str]) -> None:
        """Replace the current snapshot of `collection` by one with `ids` as stored now.

        The points are read back after the write and under the snapshot lock, so whatever
        order concurrent writers of one point finish in, the last patch sees the last write
        (and a point read back missing was deleted). Reading back also gives the payload and
        vector exactly as a rebuild's scroll would (local mode normalises cosine vectors).
        No snapshot yet, or one due for a rebuild anyway: nothing to do.
        """
        with self._snapshot_lock(collection):
            current = self._lexical.get(collection)
            if current is None or current.generation != self._generation.get(collection, 0):
                return
            stored = self._points_with_vectors(collection, ids)
            self._lexical[collection] = current.patched(stored, ids)

    def close(self) -> None:
        """Release the client (and, in local mode, the folder lock)."""
        self.client.close()

    # ------------------------------------------------------------------ collections

    def exists(self, collection: str) -> bool:
        """Whether `collection` exists (raises RetrievalUnavailable if the store is down)."""
        return self._call("check collection", lambda: self.client.collection_exists(collection))

    def require(self, collection: str) -> None:
        """Fail fast with a clear reason when `collection` is missing."""
        if collection in self._known:
            return
        if not self.exists(collection):
            raise RetrievalUnavailable(
                f"collection {collection!r} does not exist in qdrant at {self.location}"
                " (ingest it first)"
            )
        self._remember(collection)

    def _remember(self, collection: str) -> None:
        with self._meta_lock:
            self._known.add(collection)
        if self._lock is not None:  # local mode only
            with self._lock:
                self._tune_local_storage()

    def _tune_local_storage(self) -> None:
        """Stop local mode from fsyncing once per point.

        qdrant-client's local mode commits every point to its sqlite file separately; with the
        default rollback journal each commit is an fsync (~20 ms here: 50 points/s). WAL with
        synchronous=NORMAL keeps the file consistent after a crash and may lose only the last
        writes on power loss, which re-ingesting (idempotent) restores. Upserts get ~30x faster.
        This reaches into the client's internals, so it is best effort and only logs on failure.
        """
        local = getattr(self.client, "_client", None)
        collections = getattr(local, "collections", None) or {}
        with self._meta_lock:
            for name, collection in collections.items():
                if name in self._tuned:
                    continue
                con = getattr(getattr(collection, "storage", None), "storage", None)
                if con is None:
                    continue
                try:
                    con.execute("PRAGMA journal_mode=WAL")
                    con.execute("PRAGMA synchronous=NORMAL")
                except Exception as exc:  # an older/newer client layout: run untuned
                    log.debug("could not tune local qdrant storage of %s: %s", name, exc)
                self._tuned.add(name)

    def ensure_collection(self, name: str) -> bool:
        """Create `name` with our vector layout if missing; True when it was created."""
        with self._create_lock:  # two threads must not both try to create it
            return self._ensure_collection(name)

    def _ensure_collection(self, name: str) -> bool:
        if self.exists(name):
            self._remember(name)
            return False

        def create() -> None:
            self.client.create_collection(
                name,
                vectors_config={
                    DENSE: models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE)
                },
            )

        self._call("create collection", create)
        if self.server:  # payload indexes only exist on a server (local mode warns)
            for key in ("doc_id", "tenant", "intent", "ticket_ids"):
                self._call(
                    "create payload index",
                    lambda key=key: self.client.create_payload_index(
                        name, key, field_schema=models.PayloadSchemaType.KEYWORD
                    ),
                )
        self._remember(name)
        self._bump(name)
        return True

    def count(self, collection: str) -> int:
        """Exact number of points in `collection`."""
        self.require(collection)
        result = self._call("count", lambda: self.client.count(collection, exact=True))
        return int(result.count)

    # ------------------------------------------------------------------ writes

    def upsert_chunks(
        self,
        collection: str,
        chunks: Sequence[Chunk],
        *,
        batch_size: int = 256,
        vectors: np.ndarray | None = None,
    ) -> int:
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
        for i, chunk in enumerate(chunks):
            pid = point_id(chunk.doc_id, chunk.chunk)
            by_id[pid] = chunk
            if vectors is not None:
                known[pid] = vectors[i]
        counts: dict[str, int] = {}
        for chunk in chunks:
            counts[chunk.doc_id] = max(counts.get(chunk.doc_id, 0), chunk.chunk + 1)
        hashes = {pid: content_hash(c, counts[c.doc_id]) for pid, c in by_id.items()}
        existing = self._stored(collection, list(by_id))
        # the stored first chunk of a document says how many chunks it had: the ids of a
        # shrunk document's tail are known without scanning the collection
        stale = []
        for doc_id, count in counts.items():
            head = existing.get(point_id(doc_id, 0)) or {}
            previous = int(head.get("n_chunks", 0) or 0)
            stale.extend(point_id(doc_id, i) for i in range(count, previous))
        todo = [(pid, c) for pid, c in by_id.items()
                if (existing.get(pid) or {}).get("hash") != hashes[pid]]
        touched = stale + [pid for pid, _ in todo]
        try:
            if stale:
                self._call(
                    "delete stale chunks",
                    lambda: self.client.delete(
                        collection, points_selector=models.PointIdsList(points=stale), wait=True
                    ),
                )
            for start in range(0, len(todo), batch_size):
                part = todo[start : start + batch_size]
                if all(pid in known for pid, _ in part):
                    encoded = np.stack([known[pid] for pid, _ in part])
                else:
                    encoded = self.embedder.encode(
                        [embedding_text(c.title, c.text) for _, c in part])
                points = [
                    models.PointStruct(
                        id=pid, vector={DENSE: vector.tolist()},
                        payload=_payload(c, counts[c.doc_id], hashes[pid]),
                    )
                    for (pid, c), vector in zip(part, encoded, strict=True)
                ]
                self._call(
                    "upsert",
                    lambda points=points: self.client.upsert(collection, points, wait=True),
                )
        except BaseException:
            if touched:  # perhaps partly written: rebuild rather than guess
                self._bump(collection)
            raise
        if touched:
            self._after_write(collection, touched)
        return len(todo)

    def _stored(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Hash and chunk count of those of `ids` that are stored (lookups by id, no scans)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 1024):
            part = list(ids[start : start + 1024])
            points = self._call(
                "retrieve",
                lambda part=part: self.client.retrieve(
                    collection, ids=part, with_payload=["hash", "n_chunks"], with_vectors=False
                ),
            )
            for point in points:
                found[str(point.id)] = dict(point.payload or {})
        return found

    def delete_where(self, collection: str, flt: models.Filter) -> int:
        """Delete the points matching `flt`; returns how many there were."""
        self.require(collection)
        before = self._call(
            "count", lambda: self.client.count(collection, count_filter=flt, exact=True)
        ).count
        if before:
            self._call(
                "delete",
                lambda: self.client.delete(
                    collection, points_selector=models.FilterSelector(filter=flt), wait=True
                ),
            )
            self._bump(collection)
        return int(before)

    def delete_ids(self, collection: str, ids: Sequence[str]) -> int:
        """Delete points by id; returns how many ids were given."""
        if not ids:
            return 0
        try:
            self._call(
                "delete",
                lambda: self.client.delete(
                    collection, points_selector=models.PointIdsList(points=list(ids)), wait=True
                ),
            )
        except BaseException:
            self._bump(collection)
            raise
        self._after_write(collection, list(ids))
        return len(ids)

    def payload_of(self, collection: str, pid: str) -> dict[str, Any] | None:
        """Payload of one point, or None if there is no such point."""
        points = self._call(
            "retrieve",
            lambda: self.client.retrieve(collection, ids=[pid], with_payload=True),
        )
        return dict(points[0].payload or {}) if points else None

    def get_meta(self, key: str) -> dict[str, Any] | None:
        """Bookkeeping value stored under `key` (e.g. a KB fingerprint), or None."""
        if not self.exists(META_COLLECTION):
            return None
        points = self._call(
            "read meta",
            lambda: self.client.retrieve(META_COLLECTION, ids=[point_id("meta", key)],
                                         with_payload=True),
        )
        return dict(points[0].payload or {}) if points else None

    def set_meta(self, key: str, value: dict[str, Any]) -> None:
        """Store a bookkeeping value in a tiny side collection next to the data it describes.

        A server deployment and local mode thus keep it in the same place.
        """
        with self._create_lock:
            if not self.exists(META_COLLECTION):
                self._call(
                    "create meta collection",
                    lambda: self.client.create_collection(
                        META_COLLECTION,
                        vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT),
                    ),
                )
        point = models.PointStruct(id=point_id("meta", key), vector=[1.0],
                                   payload={"key": key, **value})
        self._call("write meta", lambda: self.client.upsert(META_COLLECTION, [point], wait=True))

    # ------------------------------------------------------------------ reads

    def scroll_payloads(
        self, collection: str, flt: models.Filter | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """All (point id, payload) pairs of `collection`, optionally filtered."""
        self.require(collection)
        out: list[tuple[str, dict[str, Any]]] = []
        offset = None
        while True:
            points, offset = self._call(
                "scroll",
                lambda offset=offset: self.client.scroll(
                    collection,
                    scroll_filter=flt,
                    limit=2048,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                ),
            )
            out.extend((str(p.id), dict(p.payload or {})) for p in points)
            if offset is None:
                return out

    def _scroll_with_vectors(
        self, collection: str
    ) -> tuple[list[tuple[str, dict[str, Any]]], np.ndarray]:
        """All (id, payload) pairs of a local collection and their dense vectors, row for row."""
        rows: list[tuple[str, dict[str, Any]]] = []
        vectors: list[Any] = []
        offset = None
        while True:
            points, offset = self._call(
                "scroll",
                lambda offset=offset: self.client.scroll(
                    collection, limit=2048, offset=offset, with_payload=True,
                    with_vectors=[DENSE],
                ),
            )
            for p in points:
                rows.append((str(p.id), dict(p.payload or {})))
                vectors.append(p.vector.get(DENSE) if isinstance(p.vector, dict) else p.vector)
            if offset is None:
                break
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(rows), DIMENSIONS)
        return rows, matrix

    def _points_with_vectors(
        self, collection: str, ids: Sequence[str]
    ) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
        """Payload and dense vector of those of `ids` that are stored (lookups by id)."""
        found: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
        for start in range(0, len(ids), 1024):
            part = list(ids[start : start + 1024])
            points = self._call(
                "retrieve",
                lambda part=part: self.client.retrieve(
                    collection, ids=part, with_payload=True, with_vectors=[DENSE]
                ),
            )
            for p in points:
                vector = p.vector.get(DENSE) if isinstance(p.vector, dict) else p.vector
                found[str(p.id)] = (dict(p.payload or {}), np.asarray(vector, dtype=np.float32))
        return found

    def payloads_where(self, collection: str, key: str, value: str) -> list[dict[str, Any]]:
        """Payloads whose field `key` is `value` or, for a list field, contains it."""
        if self.server:
            flt = models.Filter(must=[models.FieldCondition(
                key=key, match=models.MatchValue(value=value))])
            return [payload for _, payload in self.scroll_payloads(collection, flt)]
        out = []
        for payload in self._lexical_index(collection).payloads:  # in memory: no filter scan
            field_value = payload.get(key)
            if field_value == value or (isinstance(field_value, list) and value in field_value):
                out.append(payload)
        return out

    def _lexical_index(self, collection: str) -> _Lexical:
        """Return the current snapshot (BM25 index, payloads, vectors) of `collection`.

        Built by one scroll on first use, after `delete_where` and, on a server, after any
        write; in local mode our upserts and `delete_ids` patch it instead (`_after_write`).
        On a server other processes may write too, so there it is also rebuilt when the point
        count moved or the index is older than the TTL.
        """
        with self._snapshot_lock(collection):
            current = self._lexical.get(collection)
            generation = self._generation.get(collection, 0)
            if current is not None and current.generation == generation:
                if not self.server:
                    return current
                fresh = time.monotonic() - current.built_at < self._lexical_ttl
                if fresh and self.count(collection) == current.points:
                    return current
            started = time.perf_counter()
            matrix = None
            if self.server:
                rows = self.scroll_payloads(collection)
            else:
                rows, matrix = self._scroll_with_vectors(collection)
            order = sorted(range(len(rows)), key=lambda i: rows[i][0])  # what `patched` keeps
            rows = [rows[i] for i in order]
            if matrix is not None:
                matrix = matrix[order]
            index = LexicalIndex(
                [str(p.get("title", "")) for _, p in rows],
                [str(p.get("text", "")) for _, p in rows],
                [p.get("tenant") for _, p in rows],
            )
            built = _Lexical(
                index=index,
                ids=[pid for pid, _ in rows],
                payloads=[p for _, p in rows],
                generation=generation,
                built_at=time.monotonic(),
                points=len(rows),
                vectors=matrix,
            )
            self._lexical[collection] = built
            log.debug(
                "built BM25 index for %s: %d points in %.2fs",
                collection, len(rows), time.perf_counter() - started,
            )
            return built

    def search(
        self,
        collection: str,
        query: str,
        *,
        k: int,
        tenant: str | None = None,
        query_vector: np.ndarray | None = None,
        tenant_filter: bool = False,
        extra_filter: models.Filter | None = None,
        match: dict[str, str] | None = None,
        mode: SearchMode = "hybrid",
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[Hit]:
        """Best `k` chunks for `query` by hybrid dense + BM25 rank fusion.

        `tenant`: when given (or when `tenant_filter` is set), only points of that tenant
        (None: only points without a tenant) are considered. `match`: only points whose
        payload has these exact values (dense ranking only, like `extra_filter`).
        """
        vectors = None if query_vector is None else np.asarray(query_vector)[None, :]
        return self.search_many(
            collection, [query], k=k, tenant=tenant, query_vectors=vectors,
            tenant_filter=tenant_filter, extra_filter=extra_filter, match=match, mode=mode,
            fusion=fusion,
        )[0]

    def search_many(
        self,
        collection: str,
        queries: Sequence[str],
        *,
        k: int,
        tenant: str | None = None,
        query_vectors: np.ndarray | None = None,
        tenant_filter: bool = False,
        extra_filter: models.Filter | None = None,
        match: dict[str, str] | None = None,
        pool: int | None = None,
        mode: SearchMode = "hybrid",
        fill_cosine: bool = True,
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[list[Hit]]:
        """`search` for several queries: one embedding pass, one batched Qdrant request.

        `mode` "dense" or "lexical" uses one signal only (ablations, benchmarks).
        `fill_cosine`: fetch the real cosine of hits found by BM25 alone from Qdrant (local
        mode always takes it from the in-memory vectors instead, at no cost).
        """
        if k < 1:
            raise ValueError("k must be >= 1")
        if mode not in ("hybrid", "dense", "lexical"):
            raise ValueError(f"unknown search mode {mode!r}")
        if not queries:
            return []
        self.require(collection)
        filter_tenant = tenant_filter or tenant is not None
        flt = _merge_filters(
            tenant_condition(tenant) if filter_tenant else None, extra_filter,
            models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=v))
                                for key, v in match.items()]) if match else None,
        )
        pool = pool or max(50, 5 * k)
        if query_vectors is None:
            query_vectors = self.embedder.encode(list(queries))
        use_lexical = extra_filter is None and not match and mode != "dense"
        # Local mode keeps every vector in memory beside the BM25 index: search it exactly
        # in numpy (see `_exact_dense`); only an arbitrary `extra_filter` needs Qdrant's own.
        local = not self.server and extra_filter is None
        cached = self._lexical_index(collection) if use_lexical or local else None
        lexical = cached if use_lexical else None
        # with a BM25 index at hand its payload copy serves dense hits too: Qdrant then only
        # returns ids and scores (less copying locally, less transfer from a server)
        if cached is not None and cached.vectors is not None:
            dense_lists = _exact_dense(cached, np.asarray(query_vectors, dtype=np.float32),
                                       pool, tenant if filter_tenant else _ANY_TENANT, match)
        else:
            dense_lists = self._qdrant_dense(collection, query_vectors, flt, pool, lexical)
        results = []
        for query, vector, dense in zip(queries, query_vectors, dense_lists, strict=True):
            ranked_dense = dense if mode != "lexical" else []
            sparse_hits: list[tuple[str, float, dict[str, Any]]] = []
            if lexical is not None:
                rows = lexical.index.top(
                    query, pool, tenant=tenant, any_tenant=not filter_tenant
                )
                sparse_hits = [(lexical.ids[r], s, lexical.payloads[r]) for r, s in rows]
            cosine = {pid: score for pid, score, _ in dense}
            hits = self._fuse(collection, ranked_dense, sparse_hits, k, cosine, fusion)
            if cached is not None and cached.vectors is not None:
                hits = _snapshot_cosine(cached, hits, vector)  # free, and the hits' snapshot
            elif fill_cosine:
                hits = self._fill_cosine(collection, hits, vector)
            results.append(hits)
        return results

    def _qdrant_dense(
        self, collection: str, query_vectors: np.ndarray, flt: models.Filter | None, pool: int,
        lexical: _Lexical | None,
    ) -> list[list[tuple[str, float, dict[str, Any]]]]:
        """Dense candidates from Qdrant: (id, cosine, payload) per query, best first."""
        requests = [
            models.QueryRequest(query=vector.tolist(), using=DENSE, filter=flt, limit=pool,
                                with_payload=lexical is None)
            for vector in query_vectors
        ]
        responses = self._call(
            "query", lambda: self.client.query_batch_points(collection, requests=requests)
        )
        payload_of = lexical.payload_by_id() if lexical is not None else {}
        unknown = {str(p.id) for r in responses for p in r.points
                   if lexical is not None and str(p.id) not in payload_of}
        if unknown:  # written by another process since the index was built
            payload_of = {**payload_of, **self._payloads(collection, sorted(unknown))}
        return [
            [(str(p.id), float(p.score),
              dict(p.payload or {}) if lexical is None else payload_of.get(str(p.id), {}))
             for p in response.points]
            for response in responses
        ]

    def _payloads(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Payloads of some points by id (missing points are left out)."""
        points = self._call(
            "retrieve",
            lambda: self.client.retrieve(collection, ids=list(ids), with_payload=True),
        )
        return {str(p.id): dict(p.payload or {}) for p in points}

    def _fuse(
        self,
        collection: str,
        dense: list[tuple[str, float, dict[str, Any]]],
        lexical: list[tuple[str, float, dict[str, Any]]],
        k: int,
        cosine: dict[str, float],
        fusion: Fusion,
    ) -> list[Hit]:
        """Merge the dense and BM25 candidate lists into one ranking (see `fuse_scores`)."""
        payloads: dict[str, dict[str, Any]] = {}
        for ranking in (dense, lexical):
            for pid, _score, payload in ranking:
                payloads.setdefault(pid, payload)
        fused = fuse_scores(
            [[(pid, score) for pid, score, _ in ranking] for ranking in (dense, lexical)],
            fusion,
        )
        order = sorted(fused, key=lambda pid: (-fused[pid], -cosine.get(pid, -1.0), pid))[:k]
        return [_hit(collection, pid, fused[pid], payloads[pid], cosine.get(pid, math.nan))
                for pid in order]

    def _fill_cosine(
        self, collection: str, hits: list[Hit], query_vector: np.ndarray
    ) -> list[Hit]:
        """Give hits found by BM25 alone their real cosine (fetching their stored vectors).

        A hit whose point no longer exists (the in-memory BM25 index of a server collection can
        lag another process's delete) is dropped, so a removed case is never served.
        """
        missing = [h.chunk_id for h in hits if math.isnan(h.dense_score)]
        if not missing:
            return hits
        vectors = self.vectors(collection, missing)
        out = []
        for hit in hits:
            if not math.isnan(hit.dense_score):
                out.append(hit)
                continue
            vector = vectors.get(hit.chunk_id)
            if vector is not None:
                out.append(replace(hit, dense_score=float(np.dot(vector, query_vector))))
        return out

    def best_documents(
        self,
        collection: str,
        query: str,
        *,
        k: int,
        tenant: str | None = None,
        query_vector: np.ndarray | None = None,
        mode: SearchMode = "hybrid",
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[Hit]:
        """Return the `k` best distinct documents, each represented by its best chunk."""
        vectors = None if query_vector is None else np.asarray(query_vector)[None, :]
        return self.best_documents_many(
            collection, [query], k=k, tenant=tenant, query_vectors=vectors, mode=mode,
            fusion=fusion,
        )[0]

    def best_documents_many(
        self,
        collection: str,
        queries: Sequence[str],
        *,
        k: int,
        tenant: str | None = None,
        query_vectors: np.ndarray | None = None,
        mode: SearchMode = "hybrid",
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[list[Hit]]:
        """`best_documents` for several queries in one batch."""
        pool = max(50, 10 * k)
        if query_vectors is None:
            query_vectors = self.embedder.encode(list(queries))
        many = self.search_many(
            collection, queries, k=pool, tenant=tenant, query_vectors=query_vectors, pool=pool,
            mode=mode, fill_cosine=False, fusion=fusion,
        )
        return [
            self._fill_cosine(collection, distinct_documents(hits, k), vector)
            for hits, vector in zip(many, query_vectors, strict=True)
        ]

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Fetch the stored dense vectors of some points (for similarity checks)."""
        points = self._call(
            "retrieve",
            lambda: self.client.retrieve(
                collection, ids=list(ids), with_payload=False, with_vectors=[DENSE]
            ),
        )
        out = {}
        for point in points:
            vector = point.vector.get(DENSE) if isinstance(point.vector, dict) else point.vector
            out[str(point.id)] = np.asarray(vector, dtype=np.float32)
        return out


_ANY_TENANT = object()


def _exact_dense(
    lexical: _Lexical, query_vectors: np.ndarray, pool: int, tenant: Any,
    match: dict[str, str] | None = None,
) -> list[list[tuple[str, float, dict[str, Any]]]]:
    """Exact cosine search over a local collection's vectors, optionally for one tenant.

    Local Qdrant searches exactly too, but evaluates a payload filter point by point in
    Python: at 32 tickets in flight the tenant filter alone was 11% of the process's Python
    time. The vectors already sit in memory next to the BM25 index (patched after every
    write), so one matrix product and a numpy mask give the same candidates (equivalence:
    tests/integration/test_qdrant.py). A Qdrant server does its own filtered search.
    """
    assert lexical.vectors is not None
    if not lexical.ids:
        return [[] for _ in query_vectors]
    scores = query_vectors @ lexical.vectors.T  # (queries, points); stored vectors are unit
    if tenant is not _ANY_TENANT:
        scores[:, lexical.index.tenants != (tenant or "")] = -np.inf
    for key, value in (match or {}).items():
        scores[:, lexical.column(key) != value] = -np.inf
    limit = min(pool, scores.shape[1])
    out = []
    for row in scores:
        top = np.argpartition(-row, limit - 1)[:limit]
        top = top[np.argsort(-row[top], kind="stable")]
        out.append([(lexical.ids[i], float(row[i]), lexical.payloads[i])
                    for i in top if row[i] != -np.inf])
    return out


def _snapshot_cosine(lexical: _Lexical, hits: list[Hit], query_vector: np.ndarray) -> list[Hit]:
    """Give hits found by BM25 alone their cosine from the local snapshot they came from.

    `_fill_cosine` would read the vectors from Qdrant, which a concurrent write may already
    have changed: payload and cosine of one hit must come from the same snapshot.
    """
    assert lexical.vectors is not None
    out = []
    for hit in hits:
        row = _row(lexical.ids, hit.chunk_id) if math.isnan(hit.dense_score) else None
        if row is not None:
            hit = replace(hit, dense_score=float(np.dot(lexical.vectors[row], query_vector)))
        out.append(hit)
    return out


def fuse_scores(
    rankings: Sequence[Sequence[tuple[str, float]]], fusion: Fusion = DEFAULT_FUSION
) -> dict[str, float]:
    """Combine ranked (id, score) lists into one score per id, higher is better.

    "convex" (default): each list's scores are min-max scaled to [0, 1] over its candidates
    and the scaled scores are averaged with equal weights (an id missing from a list gets 0
    there). Unlike RRF it keeps how far ahead a candidate is, not just its rank, which is what
    lets a decisive BM25 match on a setting's exact name win. Equal weights, no tuning.
    "rrf": reciprocal rank fusion, the sum of 1/(RRF_K + rank).
    """
    fused: dict[str, float] = {}
    lists = [list(r) for r in rankings if r]
    for ranking in lists:
        if fusion == "rrf":
            for rank, (pid, _score) in enumerate(ranking, start=1):
                fused[pid] = fused.get(pid, 0.0) + 1.0 / (RRF_K + rank)
            continue
        scores = [score for _, score in ranking]
        low, high = min(scores), max(scores)
        for pid, score in ranking:
            scaled = (score - low) / (high - low) if high > low else 1.0
            fused[pid] = fused.get(pid, 0.0) + scaled / len(rankings)
    return fused


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


def tenant_condition(tenant: str | None) -> models.Filter:
    """Points of exactly this tenant; None means points that have no tenant at all."""
    if tenant is None:
        return models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(
            key="tenant"))])
    return models.Filter(
        must=[models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant))]
    )


def _merge_filters(*filters: models.Filter | None) -> models.Filter | None:
    parts = [f for f in filters if f is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return models.Filter(must=list(parts))


def _payload(chunk: Chunk, n_chunks: int, digest: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "doc_id": chunk.doc_id,
        "title": chunk.title,
        "source": chunk.source,
        "chunk": chunk.chunk,
        "n_chunks": n_chunks,
        "text": chunk.text,
        "hash": digest,
    }
    if chunk.tenant is not None:
        payload["tenant"] = chunk.tenant
    if chunk.metadata:
        payload["metadata"] = dict(chunk.metadata)
    payload.update(chunk.extra)
    return payload


def _hit(
    collection: str, pid: str, score: float, payload: dict[str, Any], dense_score: float
) -> Hit:
    return Hit(
        doc_id=str(payload.get("doc_id", pid)),
        chunk_id=pid,
        title=str(payload.get("title", "")),
        text=str(payload.get("text", "")),
        score=score,
        collection=collection,
        metadata=dict(payload.get("metadata") or {}),
        chunk=int(payload.get("chunk", 0)),
        dense_score=dense_score,
        payload=dict(payload),
    )


_stores: dict[tuple[str, ...], KnowledgeStore] = {}
_stores_lock = threading.Lock()
_atexit_registered = False


def open_store(
    *,
    home: Path,
    url: str | None = None,
    api_key: str | None = None,
    timeout: float = 3.0,
) -> KnowledgeStore:
    """Return the process-wide store for `url`, or else for the local folder `home/qdrant`.

    Qdrant local mode allows one client per folder per process, so stores are cached per
    location and shared by every thread. Opening does not contact a server; the first call
    that does raises RetrievalUnavailable within about `timeout` seconds if it is down.
    """
    if url:
        key: tuple[str, ...] = ("url", url.rstrip("/"), api_key or "")
    else:
        key = ("path", str((Path(home) / "qdrant").resolve()))
    global _atexit_registered
    with _stores_lock:
        store = _stores.get(key)
        if store is not None:
            return store
        if not _atexit_registered:  # close clients before interpreter teardown breaks them
            atexit.register(close_stores)
            _atexit_registered = True
        if url:
            client = QdrantClient(
                url=url,
                api_key=api_key,
                timeout=max(1, math.ceil(timeout)),
                check_compatibility=False,
            )
            store = KnowledgeStore(client, location=url, server=True)
        else:
            path = Path(key[1])
            try:
                path.mkdir(parents=True, exist_ok=True)
                client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
            except Exception as exc:  # locked by another process, unreadable folder, ...
                raise RetrievalUnavailable(
                    f"cannot open local qdrant at {path}: {type(exc).__name__}: "
                    + " ".join(str(exc).split())[:200]
                ) from exc
            store = KnowledgeStore(client, location=str(path), server=False)
        _stores[key] = store
        return store


def close_stores() -> None:
    """Close every cached store (tests and CLI shutdown; frees local folder locks)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        try:
            store.close()
        except Exception as exc:  # closing is best effort; report, do not mask the caller
            log.warning("closing qdrant store at %s failed: %s", store.location, exc)
