"""`supportgraph show`: what the customer got (or will get) for one ticket, in one place.

The JSON keys are a contract other tools read: ticket_id, tenant, status, reply, recipient,
sources, review, delivery {state, attempts, delivered_at}. Text comes from our tables and the
checkpointed state, both redacted: the reply is shown as stored (`[EMAIL:...]` tokens where
the customer received the real value).
"""

from __future__ import annotations

import json
from typing import Any


def ticket_view(runner: Any, tenant: str, thread_id: str) -> dict[str, Any]:
    """Everything `show` prints, for a resolved (tenant, thread)."""
    db = runner.db
    run = db.fetchone("SELECT ticket_id, status, summary FROM sg_runs WHERE thread_id = :t",
                      {"t": thread_id}) or {}
    values = runner.graph.get_state({"configurable": {"thread_id": thread_id}}).values or {}
    ticket = values.get("normalized") or values.get("ticket") or {}
    outbox = db.fetchone("SELECT delivery_key, reply, customer_id, approved_by FROM sg_outbox "
                         "WHERE thread_id = :t", {"t": thread_id})
    drafts = values.get("drafts") or []
    if outbox:
        reply = outbox["reply"]
    else:
        reply = values.get("final_reply") or (drafts[-1]["text"] if drafts else None)
    summary = json.loads(run["summary"]) if run.get("summary") else {}
    prefix = "" if tenant == "default" else tenant  # default-tenant keys are ":ID"
    key = (outbox or {}).get("delivery_key") or f"{prefix}:{ticket.get('id')}"
    sealed = db.fetchone("SELECT 1 AS x FROM sg_vault WHERE delivery_key = :k", {"k": key})
    return {
        "ticket_id": run.get("ticket_id") or ticket.get("id"),
        "tenant": tenant or None,
        "status": run.get("status") or summary.get("status"),
        "reply": reply,
        "reply_state": "sent" if outbox else ("draft" if reply else "none"),
        "recipient": (outbox or {}).get("customer_id") or ticket.get("customer_id"),
        "recipient_sealed": bool(sealed),
        "channel": ticket.get("channel"),
        "sources": [{"doc_id": p.get("doc_id"), "title": p.get("title")}
                    for p in values.get("passages") or []],
        "review": _review(runner, thread_id, outbox),
        "delivery": _delivery(db, outbox),
    }


def _review(runner: Any, thread_id: str, outbox: dict | None) -> dict[str, Any] | None:
    row = runner.db.fetchone("SELECT reason, queue, status, decision, decided_by, decided_at "
                             "FROM sg_reviews WHERE thread_id = :t", {"t": thread_id})
    notes = runner.review_notes(thread_id)
    if not row:
        return {"decision": "auto", "reviewer": None, "note": None, "notes": []} \
            if outbox else None
    decision = json.loads(row["decision"]) if row["decision"] else {}
    note = decision.get("args") if isinstance(decision.get("args"), str) else None
    return {"reason": row["reason"], "queue": row["queue"], "status": row["status"],
            "decision": decision.get("type"), "reviewer": row["decided_by"],
            "decided_at": row["decided_at"], "note": note, "notes": notes}


def _delivery(db: Any, outbox: dict | None) -> dict[str, Any]:
    if not outbox:
        return {"state": "not_sent", "attempts": 0, "delivered_at": None, "last_error": None}
    row = db.fetchone("SELECT state, attempts, delivered_at, last_error, transport "
                      "FROM sg_deliveries WHERE delivery_key = :k",
                      {"k": outbox["delivery_key"]})
    if not row:
        return {"state": "pending", "attempts": 0, "delivered_at": None, "last_error": None}
    return {"state": row["state"], "attempts": int(row["attempts"]),
            "delivered_at": row["delivered_at"], "last_error": row["last_error"],
            "transport": row["transport"]}


def format_view(view: dict[str, Any]) -> str:
    """The view as text for a person."""
    lines = [f"ticket {view['ticket_id']} (tenant {view['tenant'] or 'default'}): "
             f"{view['status']}"]
    sealed = " (the address is sealed until delivery)" if view.get("recipient_sealed") else ""
    lines.append(f"recipient: {view['recipient'] or '(not stored in clear)'}{sealed}")
    review = view["review"]
    if review and review.get("decision") == "auto":
        lines.append("review: none (sent automatically)")
    elif review:
        who = review.get("reviewer") or "-"
        lines.append(f"review: {review.get('decision') or review.get('status')} by {who}"
                     + (f" ({review['reason']})" if review.get("reason") else ""))
        if review.get("note"):
            lines.append(f"  reason/note: {review['note']}")
        for note in review.get("notes") or []:
            lines.append(f"  note from {note.get('reviewer')}: {note.get('note')}")
    delivery = view["delivery"]
    line = f"delivery: {delivery['state']}, {delivery['attempts']} attempt(s)"
    if delivery.get("delivered_at"):
        line += f", delivered {delivery['delivered_at'][:19]}"
    if delivery.get("last_error"):
        line += f"; last error: {delivery['last_error']}"
    lines.append(line)
    for source in view["sources"]:
        lines.append(f"source: {source['title']} ({source['doc_id']})")
    label = {"sent": "reply as sent", "draft": "draft reply (not sent)"}.get(
        view["reply_state"], "reply")
    lines.append(f"\n--- {label} ---\n{view['reply'] or '(no reply)'}")
    return "\n".join(lines)
