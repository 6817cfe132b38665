"""Learn: add the resolved case to `resolved_cases`, so the next similar ticket does better.

Only replies we trust are learned from: delivered with confidence at or above the threshold,
or approved (accepted or edited) by a human. It runs beside `send`, on the routes that deliver
(`graph.routing.DELIVER`), and learns the same reply `send` puts in the outbox. Text is
redacted before it reaches Qdrant, and the point id comes from the ticket id, so a re-run
updates instead of adding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graph.instrument import Step, node, now_iso
from graph.state import State
from nodes.send import reply_of
from supportgraph.text.pii import redact


def trusted(state: State, threshold: float) -> str | None:
    """Why this resolution may be learned from (`auto` or `human`), or None.

    Called beside `send` (same superstep), so the status is not `sent` yet; a rejected,
    stalled or failed ticket is never learned from.
    """
    if state.get("status") in ("rejected", "stalled", "failed") or state.get("error"):
        return None
    if (state.get("review") or {}).get("type") in ("accept", "edit"):
        return "human"
    confidence: Mapping[str, Any] = state.get("confidence") or {}
    if confidence.get("score", 0.0) >= threshold:
        return "auto"
    return None


@node("learn")
def learn(state: State, step: Step) -> dict:
    """Upsert the case; a failure here is recorded but never un-sends the ticket."""
    from retrieval.cases import upsert_case
    from retrieval.store import RetrievalUnavailable

    source = trusted(state, step.ctx.confidence_threshold)
    if not step.ctx.learn_enabled or source is None:
        step.detail.update(learned=False, why="disabled" if source else "not trusted")
        return {}
    ticket = state["normalized"]
    salt = step.ctx.pii_salt
    try:
        outcome = upsert_case(
            step.res.store, ticket_id=ticket["id"], text=redact(state["query"], salt=salt),
            reply=redact(reply_of(state), salt=salt), intent=state["intent"]["intent"],
            tenant=ticket.get("tenant"), resolved_at=now_iso(), source=source)
    except RetrievalUnavailable as exc:
        return {"failures": [f"learn: retrieval_unavailable: {exc}"]}
    step.detail.update(learned=True, outcome=outcome, source=source)
    return {}
