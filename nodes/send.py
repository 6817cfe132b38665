"""Send: deliver the reply exactly once, into the outbox table.

The outbox row is keyed by tenant and ticket id: a step that re-runs after a crash, a repeated
resume, or the same ticket on a second thread cannot deliver twice. A delivery worker (or the
optional webhook) reads the outbox; the workflow's job ends at a durable, single row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graph.instrument import Step, node, now_iso
from graph.state import State
from supportgraph.text.pii import redact


def reply_of(state: State) -> str:
    """The reply being delivered: the reviewer's (accepted or edited) or the latest draft."""
    return state.get("final_reply") or state["drafts"][-1]["text"]


def delivery_key(ticket: Mapping[str, Any]) -> str:
    """The idempotency key of a reply: one delivery per (tenant, ticket id)."""
    return f"{ticket.get('tenant') or ''}:{ticket['id']}"


@node("send")
def send(state: State, step: Step) -> dict:
    """Put the final reply in the outbox once; later runs find it already there."""
    ticket = state["normalized"]
    reply = reply_of(state)
    review = state.get("review") or {}
    inserted = step.res.db.execute(
        """INSERT INTO sg_outbox (delivery_key, tenant, ticket_id, thread_id, channel,
               customer_id, reply, approved_by, created_at)
           VALUES (:key, :tenant, :ticket_id, :thread_id, :channel, :customer_id, :reply,
               :approved_by, :now)
           ON CONFLICT (delivery_key) DO NOTHING""",
        {"key": delivery_key(ticket), "tenant": step.tenant, "ticket_id": ticket["id"],
         "thread_id": step.thread_id,
         "channel": ticket["channel"], "customer_id": ticket.get("customer_id"),
         "reply": redact(reply, salt=step.ctx.pii_salt),
         "approved_by": review.get("reviewer") if review.get("type") in ("accept", "edit")
         else "auto", "now": now_iso()})
    step.detail.update(delivered=bool(inserted), duplicate=not inserted)
    return {"final_reply": reply, "status": "sent"}
