"""The two engines behind the store, speaking one request shape.

`EdgeBackend` runs Qdrant's engine in process (`qdrant-edge-py`): one shard per collection
under `$SUPPORTGRAPH_HOME/qdrant_edge/`. `ClientBackend` talks to a Qdrant server
(`QDRANT_URL`) through `qdrant-client`; given a folder instead of a URL it runs qdrant-client's
local mode, which implements the same Query API and stands in for a server in tests.

Both receive the same neutral requests (`Where`, `HybridQuery`, `StoredPoint`) and build the
same Qdrant request from them: a dense prefetch and a BM25 sparse prefetch (IDF modifier), each
with the tenant/intent filter on indexed payload fields, fused inside Qdrant. Neither keeps a
copy of any collection: a search or a write is one request, never a scroll.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from retrieval.points import DENSE, INDEXED_FIELDS, SPARSE
from supportgraph.models.embeddings import DIMENSIONS

log = logging.getLogger(__name__)

Fusion = Literal["dbsf", "rrf"]
SearchMode = Literal["hybrid", "dense", "lexical"]
RRF_K = 60
META_COLLECTION = "supportgraph_meta"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str) -> str:
    """A collection name that is safe as a folder name and a URL path part."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(
            f"invalid collection name {str(name)[:80]!r}: use 1-128 letters, digits, '_', '-'"
            " or '.', starting with a letter or digit")
    return name


class AnyTenant:
    """Sentinel: no tenant condition at all (admin lookups, benchmarks)."""


ANY_TENANT = AnyTenant()


@dataclass(frozen=True)
class Where:
    """Which points: one tenant's (None: without a tenant; ANY_TENANT: all) with these values.

    A list field matches when it contains the value.
    """

    tenant: str | None | AnyTenant = ANY_TENANT
    match: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HybridQuery:
    """One search: dense and/or sparse candidates (`pool` each) fused into `limit` hits."""

    dense: list[float]
    sparse: tuple[list[int], list[float]]
    where: Where
    limit: int
    pool: int
    mode: SearchMode = "hybrid"
    fusion: Fusion = "dbsf"


@dataclass
class StoredPoint:
    """A point to write, or one read back (vector None when not asked for)."""

    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None
    sparse: tuple[list[int], list[float]] | None = None
    score: float = 0.0


@dataclass
class _Shard:
    handle: Any


class EdgeBackend:
    """Qdrant's engine in process: one EdgeShard per collection folder, thread-safe.

    Index builds (`optimize`) run only when asked (`supportgraph ingest` does, after a bulk
    load), never in the background: qdrant-edge-py 0.9 holds the GIL for the whole build
    (measured: 20,000 points, 206 s on the loaded 2-core machine, during which another
    Python thread of the process got no time at all). Unindexed points are searched exactly,
    and with the tenant filter that stays fast (benchmarks/retrieval_scale.py).
    """

    server = False

    def __init__(self, root: Path) -> None:
        import qdrant_edge

        self.q = qdrant_edge
        self.root = root
        self.location = str(root)
        self._shards: dict[str, _Shard] = {}
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def _config(self) -> Any:
        q = self.q
        return q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(size=DIMENSIONS, distance=q.Distance.Cosine)},
            sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
        )

    def _shard(self, name: str) -> _Shard:
        with self._lock:
            shard = self._shards.get(name)
            if shard is None:
                path = self._path(name)
                if not (path / "edge_config.json").is_file():
                    raise KeyError(name)
                shard = self._shards[name] = _Shard(self.q.EdgeShard.load(str(path)))
            return shard

    def exists(self, name: str) -> bool:
        """Whether the collection exists."""
        return name in self._shards or (self._path(name) / "edge_config.json").is_file()

    def names(self) -> list[str]:
        """Every collection of this home."""
        return sorted(p.parent.name for p in self.root.glob("*/edge_config.json"))

    def create(self, name: str) -> None:
        """Create the collection: dense + BM25 sparse (IDF) vectors, keyword payload indexes."""
        q = self.q
        with self._lock:
            path = self._path(name)
            if (path / "edge_config.json").is_file():
                return
            handle = q.EdgeShard.create(str(path), self._config())
            for key in INDEXED_FIELDS:
                schema = (q.KeywordIndexParams(is_tenant=True) if key == "tenant"
                          else q.PayloadSchemaType.Keyword)
                handle.update(q.UpdateOperation.create_field_index(key, schema))
            handle.flush()
            self._shards[name] = _Shard(handle)

    def drop(self, name: str) -> None:
        """Remove the collection and its points."""
        import shutil

        with self._lock:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.handle.close()
            shutil.rmtree(self._path(name), ignore_errors=True)

    def _filter(self, where: Where) -> Any:
        q = self.q
        must: list[Any] = []
        if where.tenant is None:
            must.append(q.IsEmptyCondition(key="tenant"))
        elif not isinstance(where.tenant, AnyTenant):
            must.append(q.FieldCondition(key="tenant", match=q.MatchValue(where.tenant)))
        must.extend(q.FieldCondition(key=k, match=q.MatchValue(v)) for k, v in where.match)
        return q.Filter(must=must) if must else None

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        """Write points (insert or replace by id)."""
        q = self.q
        shard = self._shard(name)
        structs = []
        for p in points:
            vector: dict[str, Any] = {DENSE: list(p.dense or [])}
            if p.sparse and p.sparse[0]:
                vector[SPARSE] = q.SparseVector(list(p.sparse[0]), list(p.sparse[1]))
            structs.append(q.Point(p.id, vector, p.payload))
        shard.handle.update(q.UpdateOperation.upsert_points(structs))

    def optimize(self, name: str) -> None:
        """Build the index of everything written so far (blocking)."""
        self._shard(name).handle.optimize()

    def delete_ids(self, name: str, ids: Sequence[str]) -> None:
        """Delete points by id (missing ids are ignored)."""
        self._shard(name).handle.update(self.q.UpdateOperation.delete_points(list(ids)))

    def delete_where(self, name: str, where: Where) -> None:
        """Delete the points matching `where` (never all of them)."""
        flt = self._filter(where)
        if flt is None:
            raise ValueError("refusing to delete every point of a collection")
        self._shard(name).handle.update(self.q.UpdateOperation.delete_points_by_filter(flt))

    def retrieve(self, name: str, ids: Sequence[str], *, payload: bool | list[str] = True,
                 vector: bool = False) -> list[StoredPoint]:
        """Points by id (missing ones left out)."""
        records = self._shard(name).handle.retrieve(
            list(ids), with_payload=payload, with_vector=[DENSE] if vector else False)
        return [self._stored(r) for r in records]

    def _stored(self, record: Any, score: float = 0.0) -> StoredPoint:
        vectors = record.vector if isinstance(record.vector, dict) else {}
        return StoredPoint(id=str(record.id), payload=dict(record.payload or {}),
                           dense=vectors.get(DENSE), score=score)

    def count(self, name: str, where: Where = Where()) -> int:
        """Exact number of points matching `where`."""
        return int(self._shard(name).handle.count(
            self.q.CountRequest(exact=True, filter=self._filter(where))))

    def scroll(self, name: str, where: Where, *, limit: int, offset: Any = None,
               vector: bool = False) -> tuple[list[StoredPoint], Any]:
        """One page of points matching `where`, and the next page's offset."""
        records, nxt = self._shard(name).handle.scroll(self.q.ScrollRequest(
            offset=offset, limit=limit, filter=self._filter(where), with_payload=True,
            with_vector=[DENSE] if vector else False))
        return [self._stored(r) for r in records], nxt

    def _request(self, query: HybridQuery) -> Any:
        q = self.q
        flt = self._filter(query.where)
        dense = q.Query.Nearest(list(query.dense), using=DENSE)
        sparse = (q.Query.Nearest(q.SparseVector(*query.sparse), using=SPARSE)
                  if query.sparse[0] else None)
        common: dict[str, Any] = {"limit": query.limit, "with_payload": True,
                                  "with_vector": [DENSE]}
        if query.mode == "dense" or (query.mode == "hybrid" and sparse is None):
            return q.QueryRequest(query=dense, filter=flt, **common)
        if query.mode == "lexical":
            return q.QueryRequest(query=sparse, filter=flt, **common)
        fusion = q.Fusion.Dbsf() if query.fusion == "dbsf" else q.Fusion.Rrf(k=RRF_K)
        return q.QueryRequest(
            prefetches=[q.Prefetch(limit=query.pool, query=dense, filter=flt),
                        q.Prefetch(limit=query.pool, query=sparse, filter=flt)],
            query=fusion, **common)

    def query(self, name: str, queries: Sequence[HybridQuery]) -> list[list[StoredPoint]]:
        """Answer each query with one request of one batch."""
        requests: list[Any] = []
        for query in queries:
            if query.mode == "lexical" and not query.sparse[0]:
                requests.append(None)
                continue
            requests.append(self._request(query))
        live = [r for r in requests if r is not None]
        answers = iter(self._shard(name).handle.query_batch(self.q.QueryBatchRequest(live))
                       if live else [])
        return [[] if r is None else [self._stored(p, float(p.score)) for p in next(answers)]
                for r in requests]

    def get_meta(self, key: str) -> dict[str, Any] | None:
        """A bookkeeping value, or None."""
        path = self.root / "meta.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        value = data.get(key)
        return dict(value) if isinstance(value, dict) else None

    def set_meta(self, key: str, value: dict[str, Any]) -> None:
        """Store a bookkeeping value durably."""
        with self._lock:
            path = self.root / "meta.json"
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            data[key] = {"key": key, **value}
            tmp = path.with_name(f".meta.{os.getpid()}.tmp")
            with tmp.open("w", encoding="utf-8") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)

    def close(self) -> None:
        """Release the engine."""
        with self._lock:
            shards = list(self._shards.values())
            self._shards.clear()
        for shard in shards:
            shard.handle.close()


class ClientBackend:
    """A Qdrant server through qdrant-client (or its local mode, given a folder: tests)."""

    def __init__(self, client: Any, *, location: str, server: bool) -> None:
        from qdrant_client import models

        self.m = models
        # qdrant-client's local mode is not thread-safe: serialise it (a server client is)
        self.client = client if server else _Serialized(client)
        self.location = location
        self.server = server
        self._dense_only: dict[str, tuple[bool, float]] = {}

    def exists(self, name: str) -> bool:
        """Whether the collection exists."""
        return bool(self.client.collection_exists(check_name(name)))

    def _aliases(self) -> dict[str, str]:
        """Collection name -> the alias it is known by (upgraded collections)."""
        return {a.collection_name: a.alias_name
                for a in self.client.get_aliases().aliases}

    def names(self) -> list[str]:
        """Every collection, by the name callers use (the bookkeeping one left out)."""
        aliases = self._aliases()
        return sorted(aliases.get(c.name, c.name)
                      for c in self.client.get_collections().collections
                      if c.name != META_COLLECTION)

    def dense_only(self, name: str, *, fresh: bool = False) -> bool:
        """Whether `name` predates BM25 sparse vectors (a server collection of an older release).

        Such a collection keeps answering, dense only, instead of failing every search; a
        warning says so and names `supportgraph migrate`, which upgrades it. The answer is
        looked up again after a minute, so workers pick an upgrade up without a restart.
        """
        known = self._dense_only.get(name)
        if fresh or known is None or (known[0] and time.monotonic() - known[1] > 60):
            info = self.client.get_collection(name)
            old = SPARSE not in (info.config.params.sparse_vectors or {})
            if old and known is None:
                log.warning("collection %s at %s has no %s sparse vectors (made by an older "
                            "release): searching it dense only until `supportgraph migrate` "
                            "upgrades it", name, self.location, SPARSE)
            self._dense_only[name] = known = (old, time.monotonic())
        return known[0]

    def alias(self, name: str, target: str) -> None:
        """Drop collection `name` and make `name` an alias of `target` (after an upgrade)."""
        m = self.m
        if name not in self._aliases().values():
            self.client.delete_collection(name)
        self.client.update_collection_aliases(change_aliases_operations=[
            m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=target,
                                                              alias_name=name))])
        self._dense_only.pop(name, None)

    def create(self, name: str) -> None:
        """Create the collection: dense + BM25 sparse (IDF) vectors, keyword payload indexes."""
        m = self.m
        self.client.create_collection(
            check_name(name),
            vectors_config={DENSE: m.VectorParams(size=DIMENSIONS, distance=m.Distance.COSINE)},
            sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
        )
        if self.server:  # payload indexes only exist on a server (local mode warns)
            for key in INDEXED_FIELDS:
                schema = (m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True)
                          if key == "tenant" else m.PayloadSchemaType.KEYWORD)
                self.client.create_payload_index(name, key, field_schema=schema)

    def drop(self, name: str) -> None:
        """Remove the collection and its points (an upgraded one with its alias)."""
        self._dense_only.pop(name, None)
        real = {alias: real for real, alias in self._aliases().items()}.get(check_name(name))
        if real is not None:
            self.client.update_collection_aliases(change_aliases_operations=[
                self.m.DeleteAliasOperation(delete_alias=self.m.DeleteAlias(alias_name=name))])
        self.client.delete_collection(real or name)

    def _filter(self, where: Where) -> Any:
        m = self.m
        must: list[Any] = []
        if where.tenant is None:
            must.append(m.IsEmptyCondition(is_empty=m.PayloadField(key="tenant")))
        elif not isinstance(where.tenant, AnyTenant):
            must.append(m.FieldCondition(key="tenant", match=m.MatchValue(value=where.tenant)))
        must.extend(m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in where.match)
        return m.Filter(must=must) if must else None

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        """Write points (insert or replace by id)."""
        m = self.m
        structs = []
        dense_only = self.dense_only(name)
        for p in points:
            vector: dict[str, Any] = {DENSE: list(p.dense or [])}
            if p.sparse and p.sparse[0] and not dense_only:
                vector[SPARSE] = m.SparseVector(indices=list(p.sparse[0]),
                                                values=list(p.sparse[1]))
            structs.append(m.PointStruct(id=p.id, vector=vector, payload=p.payload))
        self.client.upsert(name, structs, wait=True)

    def optimize(self, name: str) -> None:
        """A server indexes in the background by itself."""

    def delete_ids(self, name: str, ids: Sequence[str]) -> None:
        """Delete points by id (missing ids are ignored)."""
        self.client.delete(name, points_selector=self.m.PointIdsList(points=list(ids)),
                           wait=True)

    def delete_where(self, name: str, where: Where) -> None:
        """Delete the points matching `where` (never all of them)."""
        flt = self._filter(where)
        if flt is None:
            raise ValueError("refusing to delete every point of a collection")
        self.client.delete(name, points_selector=self.m.FilterSelector(filter=flt), wait=True)

    def retrieve(self, name: str, ids: Sequence[str], *, payload: bool | list[str] = True,
                 vector: bool = False) -> list[StoredPoint]:
        """Points by id (missing ones left out)."""
        points = self.client.retrieve(name, ids=list(ids), with_payload=payload,
                                      with_vectors=[DENSE] if vector else False)
        return [self._stored(p) for p in points]

    def _stored(self, point: Any, score: float = 0.0) -> StoredPoint:
        vectors = point.vector if isinstance(point.vector, dict) else {}
        return StoredPoint(id=str(point.id), payload=dict(point.payload or {}),
                           dense=vectors.get(DENSE), score=score)

    def count(self, name: str, where: Where = Where()) -> int:
        """Exact number of points matching `where`."""
        return int(self.client.count(name, count_filter=self._filter(where), exact=True).count)

    def scroll(self, name: str, where: Where, *, limit: int, offset: Any = None,
               vector: bool = False) -> tuple[list[StoredPoint], Any]:
        """One page of points matching `where`, and the next page's offset."""
        points, nxt = self.client.scroll(name, scroll_filter=self._filter(where), limit=limit,
                                         offset=offset, with_payload=True,
                                         with_vectors=[DENSE] if vector else False)
        return [self._stored(p) for p in points], nxt

    def _request(self, query: HybridQuery) -> Any:
        m = self.m
        flt = self._filter(query.where)
        sparse = (m.SparseVector(indices=query.sparse[0], values=query.sparse[1])
                  if query.sparse[0] else None)
        common: dict[str, Any] = {"limit": query.limit, "with_payload": True,
                                  "with_vector": [DENSE]}
        if query.mode == "dense" or (query.mode == "hybrid" and sparse is None):
            return m.QueryRequest(query=list(query.dense), using=DENSE, filter=flt, **common)
        if query.mode == "lexical":
            return m.QueryRequest(query=sparse, using=SPARSE, filter=flt, **common)
        fusion = (m.FusionQuery(fusion=m.Fusion.DBSF) if query.fusion == "dbsf"
                  else m.RrfQuery(rrf=m.Rrf(k=RRF_K)))
        return m.QueryRequest(
            prefetch=[m.Prefetch(query=list(query.dense), using=DENSE, filter=flt,
                                 limit=query.pool),
                      m.Prefetch(query=sparse, using=SPARSE, filter=flt, limit=query.pool)],
            query=fusion, **common)

    def query(self, name: str, queries: Sequence[HybridQuery]) -> list[list[StoredPoint]]:
        """Answer each query with one request of one batch."""
        if self.dense_only(name):
            queries = [replace(q, sparse=([], [])) for q in queries]
        requests = [None if q.mode == "lexical" and not q.sparse[0] else self._request(q)
                    for q in queries]
        live = [r for r in requests if r is not None]
        answers = iter(self.client.query_batch_points(name, requests=live) if live else [])
        return [[] if r is None else [self._stored(p, float(p.score)) for p in next(answers).points]
                for r in requests]

    def get_meta(self, key: str) -> dict[str, Any] | None:
        """A bookkeeping value, or None."""
        from retrieval.points import point_id

        if not self.client.collection_exists(META_COLLECTION):
            return None
        points = self.client.retrieve(META_COLLECTION, ids=[point_id("meta", key)],
                                      with_payload=True)
        return dict(points[0].payload or {}) if points else None

    def set_meta(self, key: str, value: dict[str, Any]) -> None:
        """Store a bookkeeping value durably."""
        from retrieval.points import point_id

        m = self.m
        if not self.client.collection_exists(META_COLLECTION):
            self.client.create_collection(
                META_COLLECTION, vectors_config=m.VectorParams(size=1, distance=m.Distance.DOT))
        point = m.PointStruct(id=point_id("meta", key), vector=[1.0],
                              payload={"key": key, **value})
        self.client.upsert(META_COLLECTION, [point], wait=True)

    def close(self) -> None:
        """Release the engine."""
        self.client.close()


class _Serialized:
    """Every method call of the wrapped object under one lock."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def cosine(query: np.ndarray, stored: list[float] | None) -> float:
    """Cosine of the query and a stored dense vector (NaN when the vector is missing)."""
    if stored is None:
        return float("nan")
    vector = np.asarray(stored, dtype=np.float32)
    norms = float(np.linalg.norm(vector) * np.linalg.norm(query))
    return float(np.dot(vector, query) / norms) if norms else 0.0
