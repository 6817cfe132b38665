"""Resolved cases: the learning loop's memory, and the confidence step's known solutions.

A case is a ticket text (already redacted by the caller, redacted again here defensively) with
the reply that resolved it, its intent, tenant and time. One point per case, id derived from
the tenant and the ticket id, so a re-run of the learn step updates rather than adds, and two
tenants' tickets with one id are two cases. A new ticket that is a near-duplicate (cosine >=
`NEAR_DUPLICATE`) of a case of the same tenant and intent refreshes that case instead of adding
another, so the collection does not fill with copies; cases of other tenants are never looked
at. Learning is one lookup by id, one filtered lookup on an indexed field, one search and one
upsert: nothing reads the whole collection.

Tenants are walls: a search for tenant A sees only A's cases; a search without a tenant sees
only cases stored without one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from retrieval.backends import ANY_TENANT, AnyTenant
from retrieval.points import Chunk, embedding_text, point_id
from retrieval.store import KnowledgeStore
from supportgraph.text.pii import scrub

log = logging.getLogger(__name__)

COLLECTION = "resolved_cases"
NEAR_DUPLICATE = 0.95
MAX_TICKET_IDS = 50


@dataclass(frozen=True)
class CaseHit:
    """A similar resolved case; `score` is the cosine similarity of query and case text."""

    ticket_id: str
    text: str
    reply: str
    intent: str
    tenant: str | None
    resolved_at: str
    source: str
    score: float
    rank_score: float = 0.0
    ticket_ids: list[str] = field(default_factory=list)


def _redact(text: str) -> str:
    """Run the project's PII redaction; the caller should have done it, this is a safety net."""
    return scrub(text)


def _doc_id(ticket_id: str) -> str:
    return f"case:{ticket_id}"


def upsert_case(
    store: KnowledgeStore,
    *,
    ticket_id: str,
    text: str,
    reply: str,
    intent: str,
    tenant: str | None,
    resolved_at: str,
    source: str,
) -> Literal["added", "updated", "unchanged"]:
    """Store a resolved case; returns what happened to the collection.

    `unchanged`: this ticket is already stored with the same text, reply, intent and tenant
    (a re-run). `updated`: this ticket's case changed, or a near-duplicate case of the same
    tenant and intent was refreshed with this ticket. `added`: a new case point.
    """
    ticket_id = str(ticket_id)
    text, reply = _redact(text), _redact(reply)
    store.ensure_collection(COLLECTION)
    own = point_id(_doc_id(ticket_id), 0, tenant)
    current = store.payload_of(COLLECTION, own)
    if current is None:
        current = _case_holding(store, ticket_id, tenant)
    if current is not None:
        same = (current.get("text"), current.get("reply"), current.get("intent"),
                current.get("tenant")) == (text, reply, intent, tenant)
        if same:
            return "unchanged"
        _write(store, current["doc_id"], text, reply, intent, tenant, resolved_at, source,
               ticket_id, list(current.get("ticket_ids") or []))
        return "updated"
    vector = store.embedder.encode([embedding_text("", text)])
    nearest = store.search(COLLECTION, text, k=1, query_vector=vector[0], tenant=tenant,
                           tenant_filter=True, match={"intent": intent}, mode="dense")
    if nearest and nearest[0].dense_score >= NEAR_DUPLICATE:
        payload = nearest[0].payload
        _write(store, payload["doc_id"], text, reply, intent, tenant, resolved_at, source,
               ticket_id, list(payload.get("ticket_ids") or []), vector)
        return "updated"
    _write(store, _doc_id(ticket_id), text, reply, intent, tenant, resolved_at, source,
           ticket_id, [], vector)
    return "added"


def _case_holding(
    store: KnowledgeStore, ticket_id: str, tenant: str | None
) -> dict[str, Any] | None:
    """Find the case of this tenant that absorbed this ticket as a near-duplicate, if any."""
    rows = store.payloads_where(COLLECTION, "ticket_ids", str(ticket_id), tenant=tenant,
                                limit=1)
    return rows[0] if rows else None


def _write(
    store: KnowledgeStore,
    doc_id: str,
    text: str,
    reply: str,
    intent: str,
    tenant: str | None,
    resolved_at: str,
    source: str,
    ticket_id: str,
    ticket_ids: list[str],
    vector: np.ndarray | None = None,
) -> None:
    ids = [t for t in ticket_ids if t != ticket_id] + [ticket_id]
    chunk = Chunk(
        doc_id=doc_id, chunk=0, text=text, title="", source=source, tenant=tenant,
        extra={"kind": "case", "ticket_id": ticket_id, "ticket_ids": ids[-MAX_TICKET_IDS:],
               "intent": intent, "reply": reply, "resolved_at": resolved_at},
    )
    store.upsert_chunks(COLLECTION, [chunk], vectors=vector)


def search_cases(
    store: KnowledgeStore,
    query: str,
    *,
    k: int,
    tenant: str | None,
    query_vector: np.ndarray | None = None,
) -> list[CaseHit]:
    """Return the `k` most similar cases of `tenant` (None: tenant-less cases), best first.

    No collection yet means no cases, not an outage; an unreachable store still raises
    RetrievalUnavailable.
    """
    if not store.exists(COLLECTION):
        return []
    hits = store.search(COLLECTION, query, k=k, tenant=tenant, tenant_filter=True,
                        query_vector=query_vector)
    cases = [
        CaseHit(
            ticket_id=str(h.payload.get("ticket_id", "")),
            text=h.text,
            reply=str(h.payload.get("reply", "")),
            intent=str(h.payload.get("intent", "")),
            tenant=h.payload.get("tenant"),
            resolved_at=str(h.payload.get("resolved_at", "")),
            source=str(h.payload.get("source", "")),
            score=float(h.dense_score),
            rank_score=float(h.score),
            ticket_ids=list(h.payload.get("ticket_ids") or []),
        )
        for h in hits
    ]
    cases.sort(key=lambda c: c.score, reverse=True)
    return cases


def delete_case(
    store: KnowledgeStore, ticket_id: str, tenant: str | None | AnyTenant = ANY_TENANT
) -> bool:
    """Remove the case holding `ticket_id` (also one it was merged into); True if removed.

    `tenant`: only that tenant's case (None: a case without tenant); default: any tenant's.
    """
    if not store.exists(COLLECTION):
        return False
    return store.delete_where(COLLECTION, {"ticket_ids": str(ticket_id)}, tenant=tenant) > 0


__all__ = ["COLLECTION", "CaseHit", "delete_case", "search_cases", "upsert_case"]
