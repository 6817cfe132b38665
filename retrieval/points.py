"""What is stored and what comes back: passages, hits, point ids, payloads.

Point ids are UUIDv5 of (tenant, doc_id, chunk index), so ingesting the same content twice
changes nothing, and two tenants' passages (or resolved cases) with the same source or ticket
id are two points, never one overwriting the other. Passages without a tenant keep the id of
(doc_id, chunk) alone, which is what every home stored before tenants were part of the id.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from supportgraph.models.embeddings import MODEL_NAME

DENSE = "dense"
SPARSE = "bm25"
POINT_NAMESPACE = uuid.UUID("6f1c3b1e-5d0a-4f5e-9a57-2d8f0c1b7e42")
TENANT_NAMESPACE = uuid.uuid5(POINT_NAMESPACE, "tenant")
INDEXED_FIELDS = ("tenant", "doc_id", "intent", "ticket_ids")
"""Keyword payload indexes of every collection: the filters searches and lookups use."""


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

    `score` ranks hits within one search (the fusion score, not comparable across queries);
    `dense_score` is the cosine similarity of query and passage, an absolute relevance signal
    for thresholds.
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


def point_id(doc_id: str, chunk: int | str, tenant: str | None = None) -> str:
    """Deterministic point id of one passage of one tenant (None: no tenant).

    Tenant ids hash a JSON list in their own namespace: no choice of ids and separators can
    make one tenant's id another's, or a tenant-less one's.
    """
    if tenant is None:
        return str(uuid.uuid5(POINT_NAMESPACE, f"{doc_id}\x1f{chunk}"))
    return str(uuid.uuid5(TENANT_NAMESPACE, json.dumps([tenant, doc_id, str(chunk)])))


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
                 chunk.text, chunk.source, chunk.tenant or "",
                 repr(sorted(chunk.metadata.items())), repr(sorted(chunk.extra.items()))):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def chunk_payload(chunk: Chunk, n_chunks: int, digest: str) -> dict[str, Any]:
    """The stored payload of a chunk."""
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


def make_hit(
    collection: str, pid: str, score: float, payload: dict[str, Any], dense_score: float
) -> Hit:
    """A Hit from a stored point."""
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
