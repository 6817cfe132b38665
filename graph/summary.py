"""The run summary (a contract of `run --json` and `audit show`): one run at a glance."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from graph.instrument import now_iso
from graph.persistence import tenant_key
from graph.state import State

WORKFLOW_ID = "supportgraph.support/1"
_CITATION = re.compile(r"\[(\d{1,3})\]")


def predicted_intent(summary: dict[str, Any]) -> str | None:
    """The classifier's intent in a run summary, or `out_of_scope` when it rejected the ticket."""
    if summary.get("out_of_scope"):
        return "out_of_scope"
    return summary.get("intent")


def build_summary(state: State, *, thread_id: str, status: str) -> dict[str, Any]:
    """Summarise a run from its state; field names are a contract other tools read."""
    # By start time, like the audit timeline (entries written before it was recorded keep
    # their order: the sort is stable).
    usage = sorted(state.get("usage") or [], key=lambda u: u.get("started_at") or "")
    intent: Mapping[str, Any] = state.get("intent") or {}
    confidence: Mapping[str, Any] = state.get("confidence") or {}
    breakdown: list[dict[str, Any]] = [
        {"step": u["step"], "duration_ms": round(u["duration_ms"], 3), "cost": u["cost"],
         "model_calls": u["model_calls"]}
        for u in usage
    ]
    normalized: Mapping[str, Any] = state.get("normalized") or {}
    return {
        "workflow_id": WORKFLOW_ID,
        "thread_id": thread_id,
        "ticket_id": normalized.get("id") or (state.get("ticket") or {}).get("id"),
        "status": status,
        "intent": intent.get("intent"),
        "route": state.get("route"),
        "confidence": confidence.get("score"),
        "intent_confidence": intent.get("confidence"),
        "review_reason": state.get("review_reason"),
        "total_duration_ms": round(sum(u["duration_ms"] for u in usage), 3),
        "model_calls": sum(u["model_calls"] for u in usage),
        "cache_hits": sum(u["cache_hits"] for u in usage),
        "retries": sum(u["retries"] for u in usage),
        "cost_total": round(sum(u["cost"] for u in usage), 8),
        "step_breakdown": breakdown,
        "models_used": sorted({m for u in usage for m in u.get("models", [])}),
        "failures": list(state.get("failures") or []),
        "error": state.get("error"),
        "out_of_scope": intent.get("out_of_scope"),
        "review_decision": (state.get("review") or {}).get("type"),
        "retrieved_doc_ids": [p["doc_id"] for p in state.get("passages") or []],
        "cited_doc_ids": cited_doc_ids(state),
    }


def cited_doc_ids(state: State) -> list[str]:
    """What the last draft cites as [n]: the passage's doc id, or "[n]" if no passage has n.

    Read from the text rather than the draft's validated `citations`, so an eval can see a
    model citing passages it was never given (groundedness).
    """
    drafts = state.get("drafts") or []
    if not drafts:
        return []
    passages = state.get("passages") or []
    numbers = sorted({int(n) for n in _CITATION.findall(drafts[-1]["text"])})
    return [passages[n - 1]["doc_id"] if 1 <= n <= len(passages) else f"[{n}]"
            for n in numbers]


def record_summary(db: Any, summary: dict[str, Any], tenant: str | None) -> None:
    """Upsert the run's summary row (one per thread; re-runs overwrite, never duplicate)."""
    now = now_iso()
    db.execute(
        """INSERT INTO sg_runs (thread_id, ticket_id, tenant, status, summary, created_at,
               updated_at)
           VALUES (:thread_id, :ticket_id, :tenant, :status, :summary, :now, :now)
           ON CONFLICT (thread_id) DO UPDATE SET status = excluded.status,
               summary = excluded.summary, updated_at = excluded.updated_at""",
        {"thread_id": summary["thread_id"], "ticket_id": summary["ticket_id"] or "unknown",
         "tenant": tenant_key(tenant), "status": summary["status"],
         "summary": json.dumps(summary, ensure_ascii=False, sort_keys=True), "now": now},
    )
