"""Recorded tickets as an eval dataset: what happened in production becomes the next test set.

One JSONL object per recorded run, in the `run --input` ticket format plus gold fields
derived from what actually happened (the rule is `gold_outcome`), and a `recorded` object with
what the run did. Only redacted text leaves the database: the ticket comes from the thread's
checkpointed state, whose input `Runner.run` (and intake) redacted before it was stored; the
reference answer comes from the outbox copy, redacted by `send`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graph.summary import predicted_intent
from supportgraph.app.timerange import TimeRange

TICKET_FIELDS = ("id", "channel", "subject", "body", "customer_id", "tenant")
GOLD_FIELDS = ("expected_intent", "expected_route", "expected_outcome", "reference_answer")


def gold_outcome(status: str, decision: dict | None) -> str:
    """`sent` when a reply went out that no human changed, else `human`.

    A reply auto-sent, or accepted by a reviewer exactly as drafted, is `sent`: the machine's
    answer was the right one. Edited, rejected, answered with a note only, still waiting,
    stalled or failed tickets are `human`: a person had to (or still has to) act.
    """
    if status != "sent":
        return "human"
    if decision is None or decision.get("type") == "accept":
        return "sent"
    return "human"


def _decision(row: dict | None) -> dict | None:
    if not row or not row.get("decision"):
        return None
    value = json.loads(row["decision"])
    return value if isinstance(value, dict) else None


def exported_records(runner: Any, span: TimeRange) -> Iterator[dict[str, Any]]:
    """Yield one eval record per run created in `span` that has a ticket and an intent.

    Runs that failed before intake or classification (bad input) have nothing to evaluate
    and are skipped; `export` counts them.
    """
    db = runner.db
    params = {"start": span.start or "", "end": span.end or "\uffff"}
    runs = db.fetchall(
        "SELECT thread_id, ticket_id, status, summary, created_at FROM sg_runs "
        "WHERE created_at >= :start AND created_at < :end ORDER BY created_at, thread_id",
        params)
    for run in runs:
        values = runner.graph.get_state(
            {"configurable": {"thread_id": run["thread_id"]}}).values or {}
        ticket = values.get("normalized")
        summary = json.loads(run["summary"])
        if not ticket or not summary.get("intent"):
            yield {"skipped": run["thread_id"]}
            continue
        review = db.fetchone("SELECT reason, status, decision FROM sg_reviews "
                             "WHERE thread_id = :t", {"t": run["thread_id"]})
        outbox = db.fetchone("SELECT reply, approved_by FROM sg_outbox WHERE thread_id = :t",
                             {"t": run["thread_id"]})
        decision = _decision(review)
        record: dict[str, Any] = {k: ticket[k] for k in TICKET_FIELDS if ticket.get(k)}
        record.update(
            # Same convention as the eval: a ticket the classifier rejected is out of scope.
            expected_intent=predicted_intent(summary),
            expected_route=summary.get("route") or "human",
            expected_outcome=gold_outcome(run["status"], decision),
            reference_answer=outbox["reply"] if outbox else "",
            tags=["recorded"],
            recorded={
                "thread_id": run["thread_id"], "status": run["status"],
                "created_at": run["created_at"],
                "review_reason": summary.get("review_reason"),
                "review_decision": decision.get("type") if decision else None,
                "flags": list(values.get("flags") or []),
                "confidence": summary.get("confidence"),
                "intent_confidence": summary.get("intent_confidence"),
                "cost_total": summary.get("cost_total"),
                "total_duration_ms": summary.get("total_duration_ms"),
                "model_calls": summary.get("model_calls"),
                "failures": len(summary.get("failures") or []),
            },
        )
        yield record


def export(runner: Any, span: TimeRange, out: Path) -> dict[str, int]:
    """Write the records of `span` to `out` (JSONL, UTF-8); returns counts."""
    written = skipped = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in exported_records(runner, span):
            if "skipped" in record:
                skipped += 1
                continue
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
    tmp.replace(out)
    return {"written": written, "skipped": skipped}
