"""Audit: close the run with its summary row (every step already wrote its own row)."""

from __future__ import annotations

from graph.instrument import Step, node
from graph.state import State
from graph.summary import build_summary, record_summary


@node("audit")
def audit(state: State, step: Step) -> dict:
    """Record the final summary; a run that reaches here without an end state has failed."""
    status = state.get("status")
    update: dict = {}
    if status not in ("sent", "rejected", "stalled", "failed"):
        status = "failed"
        update = {"status": status, "error": state.get("error") or "run ended without a decision"}
    if status in ("rejected", "stalled", "sent"):
        step.res.db.execute(
            "UPDATE sg_reviews SET status = :status WHERE thread_id = :thread_id "
            "AND status <> :status",
            {"status": "closed" if status == "sent" else status, "thread_id": step.thread_id})
    summary = build_summary({**state, **update}, thread_id=step.thread_id, status=status)
    # The audit step's own timing is not known yet; it is tiny and recorded in its audit row.
    record_summary(step.res.db, summary, step.tenant)
    step.detail.update(status=status)
    return update
