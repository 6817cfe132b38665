"""Runs tickets through the compiled graph with a durable checkpointer, and resumes them.

A ticket's thread id comes from its tenant and id, so running the same ticket again finds its
thread: a finished ticket is reported, not re-run; a ticket whose worker died mid-run resumes
from its last completed step; a ticket waiting for review stays waiting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from graph.context import Context
from graph.persistence import DEFAULT_TENANT, tenant_key
from graph.state import TERMINAL_STATUSES, State
from graph.summary import build_summary
from nodes.send import delivery_key
from supportgraph.app.delivery import keep_deliverable
from supportgraph.app.leases import ThreadBusy
from supportgraph.app.observability import configure_tracing
from supportgraph.app.services import Services, services_for
from supportgraph.app.settings import checkpoint_aes_key, read_settings
from supportgraph.text.pii import redact, redact_obj
from supportgraph.text.screening import quoted_injection
from supportgraph.text.tickets import parse_chat

log = logging.getLogger(__name__)


class AlreadyDecided(RuntimeError):
    """A review that someone else already decided (or that is not waiting)."""


class NotFound(LookupError):
    """No thread or ticket with that id."""


def thread_id_for(ticket: dict) -> str:
    """The deterministic thread of a ticket: one per (tenant, ticket id).

    Tenant names cannot contain `:`, so no (tenant, id) pair can take another's thread, even
    when an id contains `:`. A ticket without a tenant belongs to `default`.
    """
    return f"ticket:{tenant_key(ticket.get('tenant'))}:{ticket['id']}"


def legacy_thread_id(ticket: dict) -> str | None:
    """The thread older versions gave a ticket without a tenant (`ticket:ID`), if any."""
    return None if ticket.get("tenant") else f"ticket:{ticket['id']}"


@dataclass
class Outcome:
    """What happened to one ticket in this call."""

    summary: dict[str, Any]
    thread_id: str
    note: str = ""


class Runner:
    """The workflow bound to one composition root (database, stores, models).

    `services`: the root to run on; by default the process's root for `ctx`'s settings
    (`supportgraph.app.services.services_for`, closed by `close_services` or at exit). Its
    start-up work (demo intent model and KB) is done here, before the first ticket.
    """

    def __init__(self, ctx: Context, services: Services | None = None) -> None:
        if services is None:
            services = services_for(ctx.settings if ctx.has_settings else read_settings())
        self.services = services
        ctx = services.bind(ctx)  # the deployment's Settings and per-run defaults
        self.res = self.services.for_run(ctx)
        self.ctx = self.res.with_salt(ctx).with_services(self.services)
        self.db = self.services.db
        configure_tracing()
        # One compiled graph per checkpoint key (the serializer depends on it).
        self.graph = self.services.graph(checkpoint_aes_key())
        self.leases = self.services.leases

    def _config(self, thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}}

    def _invoke(self, value: Any, thread_id: str) -> dict[str, Any]:
        self.services.prepare(self.ctx)  # once per root: a dictionary lookup afterwards
        result: dict[str, Any] = self.graph.invoke(value, self._config(thread_id),
                                                   context=self.ctx, durability="sync")
        return result

    def run(self, raw_ticket: dict, recipient: str | None = None) -> Outcome:
        """Run (or continue) one ticket; raises `TicketError` (supportgraph.text) on bad input.

        `recipient`: where the reply goes when it is not the ticket's `customer_id` (an
        email's Reply-To or From). It is never stored in clear: see app/delivery.py.
        """
        ticket = parse_chat(raw_ticket)
        if ticket.get("tenant") == DEFAULT_TENANT:
            ticket["tenant"] = None  # one tenant, whether named `default` or not named
        salt = self.ctx.pii_salt
        body = ticket["body"]
        safe = safe_ticket_input(raw_ticket, ticket, salt)
        thread_id = self._thread_of(ticket)
        # Never two interleaved runs on one thread: a second submission gets ThreadBusy.
        with self.leases.hold(thread_id):
            snapshot = self.graph.get_state(self._config(thread_id))
            note, values = "", None
            if snapshot.values and not _pending(snapshot):
                note = "already processed; not run again"
            elif snapshot.values and snapshot.interrupts:
                note = "already waiting for review"
            elif snapshot.values and _pending(snapshot):
                note = "resumed an interrupted run from its last completed step"
                values = self._invoke(None, thread_id)
            else:
                # What delivery must restore, sealed before the redacted ticket is stored.
                keep_deliverable(self.db, checkpoint_aes_key(), delivery_key(ticket),
                                 salt=salt, recipient=recipient or ticket.get("customer_id"),
                                 subject=ticket.get("subject") or None,
                                 texts=(ticket.get("subject") or "", body))
                values = self._invoke({"ticket": safe}, thread_id)
        return Outcome(self.summary(thread_id, values), thread_id, note)

    def _thread_of(self, ticket: dict) -> str:
        """The ticket's thread (one per tenant and id).

        A default-tenant ticket first run by an older version keeps its old thread
        (`ticket:ID`), so it is found, not run again.
        """
        thread_id = thread_id_for(ticket)
        legacy = legacy_thread_id(ticket)
        if legacy and self.db.fetchone(
                "SELECT 1 AS found FROM checkpoints WHERE thread_id = :t LIMIT 1",
                {"t": legacy}) and not self.db.fetchone(
                "SELECT 1 AS found FROM checkpoints WHERE thread_id = :t LIMIT 1",
                {"t": thread_id}):
            return legacy
        return thread_id

    def run_many(self, tickets: Iterable[dict]) -> Iterable[Outcome]:
        """Run tickets one after another (each durable on its own)."""
        for ticket in tickets:
            yield self.run(ticket)

    def summary(self, thread_id: str, values: dict | None = None) -> dict[str, Any]:
        """The run summary of a thread, from the database or built from its state.

        `values`: what an invoke in this process just returned. A run that returned a closed
        status and no interrupt went through `audit`, which stored the summary, so the stored
        row is used without loading the thread's state again (unless the row disagrees, as it
        would if `audit` itself failed).
        """
        row = self.db.fetchone("SELECT status, summary FROM sg_runs WHERE thread_id = :t",
                               {"t": thread_id})
        values = values or {}
        closed = values.get("status")
        if (row and closed in ("sent", "rejected", "stalled", "failed")
                and "__interrupt__" not in values and row["status"] == closed):
            return json.loads(row["summary"])
        snapshot = self.graph.get_state(self._config(thread_id))
        if row and (snapshot.interrupts or not _pending(snapshot)):
            return json.loads(row["summary"])
        if not snapshot.values:
            raise NotFound(f"no run for thread {thread_id}")
        status = snapshot.values.get("status") or "failed"
        if snapshot.interrupts:
            status = "awaiting_review"
        elif _pending(snapshot):
            status = "processing"
        return build_summary(cast(State, snapshot.values), thread_id=thread_id, status=status)

    def resolve_thread(self, ref: str, tenant: str | None = None) -> str:
        """Accept a thread id or a ticket id (of `tenant`; of any, if only one tenant has it).

        Raises NotFound, or `supportgraph.app.lookup.AmbiguousTicket` when several tenants have the
        id.
        """
        from supportgraph.app.lookup import UnknownTicket, resolve_ticket

        try:
            return resolve_ticket(self.db, ref, tenant)[1]
        except UnknownTicket as exc:
            raise NotFound(str(exc)) from None

    def pending_review(self, thread_id: str) -> dict[str, Any]:
        """The interrupt payload a thread is waiting on; NotFound if it is not waiting."""
        snapshot = self.graph.get_state(self._config(thread_id))
        if not snapshot.interrupts:
            raise NotFound(f"thread {thread_id} is not waiting for review")
        return snapshot.interrupts[0].value

    def decide(self, thread_id: str, response: dict[str, Any]) -> Outcome:
        """Apply a reviewer's decision exactly once; the loser of a race gets AlreadyDecided.

        The decision is claimed first, then applied under the thread's lease: if another
        worker holds the thread (ThreadBusy), the recorded decision is applied by
        `recover` (or by that worker's `recover`) later, never twice.
        """
        from nodes.human_review import parse_resume

        snapshot = self.graph.get_state(self._config(thread_id))
        if not snapshot.values:
            raise NotFound(f"no run for thread {thread_id}")
        # Validate before touching anything: a malformed value never reaches the thread.
        decision = parse_resume(response, has_draft=bool(snapshot.values.get("drafts")))
        if decision["type"] == "edit":  # the customer gets the edit as written
            ticket = snapshot.values.get("normalized") or snapshot.values.get("ticket") or {}
            if ticket.get("id"):
                keep_deliverable(self.db, checkpoint_aes_key(), delivery_key(ticket),
                                 salt=self.ctx.pii_salt, texts=(decision["reply"],))
        # A reviewer may quote the customer's PII: redact before it is recorded or checkpointed
        # (the resume value itself is stored by LangGraph).
        response = redact_obj(response, salt=self.ctx.pii_salt)

        if decision["type"] != "response":
            claimed = self.db.execute(
                """UPDATE sg_reviews SET status = 'decided', decision = :decision,
                       decided_by = :reviewer, decided_at = :at
                   WHERE thread_id = :t AND status IN ('waiting', 'escalated')""",
                {"decision": json.dumps(response, ensure_ascii=False),
                 "reviewer": decision.get("reviewer"), "at": decision.get("decided_at"),
                 "t": thread_id})
            if not claimed:
                raise AlreadyDecided(f"thread {thread_id} was already decided "
                                     f"(status: {self._review_status(thread_id)})")
        if not snapshot.interrupts:
            raise AlreadyDecided(f"thread {thread_id} is not waiting for review")
        with self.leases.hold(thread_id):
            if self.graph.get_state(self._config(thread_id)).interrupts:  # not applied meanwhile
                self._invoke(Command(resume=response), thread_id)
                if decision["type"] == "response":
                    self._record_note(thread_id, _ticket_id(snapshot), response, decision)
        return Outcome(self.summary(thread_id), thread_id)

    def sweep(self, now: datetime | None = None) -> dict[str, list[str]]:
        """Apply review SLAs: escalate overdue reviews, stall overdue supervisor reviews.

        Every transition is one conditional UPDATE, so sweeps running at once on several
        machines never escalate or stall the same review twice.
        """
        now = now or datetime.now(UTC)
        stamp = now.isoformat(timespec="microseconds")
        supervisor_deadline = (now + timedelta(hours=self.ctx.supervisor_sla_hours)).isoformat(
            timespec="microseconds")
        escalated = []
        for row in self.db.fetchall(
                "SELECT thread_id, ticket_id, tenant FROM sg_reviews WHERE status = 'waiting' "
                "AND deadline_at < :now ORDER BY requested_at", {"now": stamp}):
            won = self.db.execute(
                """UPDATE sg_reviews SET status = 'escalated', queue = 'supervisor',
                       deadline_at = :deadline
                   WHERE thread_id = :t AND status = 'waiting' AND deadline_at < :now""",
                {"deadline": supervisor_deadline, "t": row["thread_id"], "now": stamp})
            if won:
                escalated.append(row["thread_id"])
                self._audit_event(row, "review_escalated", stamp,
                                  {"queue": "supervisor", "deadline": supervisor_deadline})
        stalled = []
        for row in self.db.fetchall(
                "SELECT thread_id, ticket_id FROM sg_reviews WHERE status = 'escalated' "
                "AND deadline_at < :now ORDER BY requested_at", {"now": stamp}):
            decision = {"type": "stalled", "reviewer": "sla-sweep"}
            won = self.db.execute(
                """UPDATE sg_reviews SET status = 'decided', decision = :decision,
                       decided_by = 'sla-sweep', decided_at = :now
                   WHERE thread_id = :t AND status = 'escalated' AND deadline_at < :now""",
                {"decision": json.dumps(decision), "t": row["thread_id"], "now": stamp})
            if won:
                try:
                    with self.leases.hold(row["thread_id"]):
                        self._invoke(Command(resume=decision), row["thread_id"])
                except ThreadBusy as exc:
                    log.warning("%s; `supportgraph recover` applies the recorded stall", exc)
                    continue
                stalled.append(row["thread_id"])
        resolved = []
        for row in open_reviews(self.db):
            snapshot = self.graph.get_state(self._config(row["thread_id"]))
            if (snapshot.values and not snapshot.interrupts and not _pending(snapshot)
                    and record_resolved_outside(self.db, row, snapshot.metadata, stamp)):
                resolved.append(row["thread_id"])
        return {"escalated": escalated, "stalled": stalled, "resolved_outside": resolved}

    def _audit_event(self, row: dict, step: str, stamp: str, detail: dict) -> None:
        """An audit row for something that happened outside a graph step (idempotent)."""
        self.db.execute(
            """INSERT INTO sg_audit (event_key, tenant, ticket_id, thread_id, step, attempt,
                   started_at, duration_ms, outcome, detail)
               VALUES (:key, :tenant, :ticket_id, :thread_id, :step, 1, :at, 0, 'ok', :detail)
               ON CONFLICT (event_key) DO NOTHING""",
            {"key": f"{row['thread_id']}:{step}", "tenant": tenant_key(row.get("tenant")),
             "ticket_id": row["ticket_id"],
             "thread_id": row["thread_id"], "step": step, "at": stamp,
             "detail": json.dumps(detail)})

    def _record_note(self, thread_id: str, ticket_id: str, response: dict,
                     decision: Mapping[str, Any]) -> None:
        """A reviewer's note (`respond`) as an audit row, so `review show` and `audit` list it."""
        count = self.db.fetchone("SELECT count(*) AS n FROM sg_audit WHERE thread_id = :t "
                                 "AND step = 'review_note'", {"t": thread_id})["n"]
        self.db.execute(
            """INSERT INTO sg_audit (event_key, tenant, ticket_id, thread_id, step, attempt,
                   started_at, duration_ms, outcome, detail)
               VALUES (:key, COALESCE((SELECT r.tenant FROM sg_runs r
                                       WHERE r.thread_id = :thread_id), 'default'),
                       :ticket_id, :thread_id, 'review_note', 1, :at, 0, 'ok', :detail)
               ON CONFLICT (event_key) DO NOTHING""",
            {"key": f"{thread_id}:review_note:{int(count) + 1}", "ticket_id": ticket_id,
             "thread_id": thread_id, "at": _now(),
             "detail": json.dumps({"reviewer": decision.get("reviewer"),
                                   "note": response.get("args")}, ensure_ascii=False)})

    def review_notes(self, thread_id: str) -> list[dict]:
        """The notes reviewers left on a thread (`respond`), oldest first."""
        rows = self.db.fetchall("SELECT started_at, detail FROM sg_audit WHERE thread_id = :t "
                                "AND step = 'review_note' ORDER BY started_at", {"t": thread_id})
        return [{"at": r["started_at"], **json.loads(r["detail"] or "{}")} for r in rows]

    def _review_status(self, thread_id: str) -> str:
        row = self.db.fetchone("SELECT status FROM sg_reviews WHERE thread_id = :t",
                               {"t": thread_id})
        return row["status"] if row else "unknown"

    def recover(self) -> list[Outcome]:
        """Finish every run a dead worker left behind, and apply decided-but-unapplied reviews."""
        outcomes = []
        for thread_id in self._thread_ids():
            if self._recover_action(thread_id) is None:
                continue  # finished or waiting: cheap check without taking the lease
            try:
                with self.leases.hold(thread_id):
                    action = self._recover_action(thread_id)  # again, now that we hold it
                    if action is None:
                        continue
                    self._invoke(action[0], thread_id)
            except ThreadBusy as exc:
                log.info("recover: skipped: %s", exc)
                continue
            outcomes.append(Outcome(self.summary(thread_id), thread_id, action[1]))
        return outcomes

    def _recover_action(self, thread_id: str) -> tuple[Any, str] | None:
        """What recovering a thread needs: (value to invoke with, note), or None."""
        snapshot = self.graph.get_state(self._config(thread_id))
        if snapshot.interrupts:
            row = self.db.fetchone(
                "SELECT decision FROM sg_reviews WHERE thread_id = :t AND status = 'decided'",
                {"t": thread_id})
            if row and row["decision"]:
                return (Command(resume=json.loads(row["decision"])),
                        "applied a recorded review decision")
            return None
        if _pending(snapshot):
            return None, "resumed from its last completed step"
        return None

    def _thread_ids(self) -> list[str]:
        rows = self.db.fetchall("SELECT DISTINCT thread_id FROM checkpoints")
        return sorted(r["thread_id"] for r in rows)


def _ticket_id(snapshot: Any) -> str:
    ticket = snapshot.values.get("normalized") or snapshot.values.get("ticket") or {}
    return str(ticket.get("id") or "")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def safe_ticket_input(raw_ticket: dict, ticket: dict, salt: str) -> dict[str, Any]:
    """The graph input for a parsed ticket, redacted: the input itself is checkpointed.

    An attack hidden in the quoted/stripped part of the body is kept (redacted) so intake
    flags it and the reviewer sees it; other tickets keep only what the customer wrote.
    """
    safe = {k: ticket.get(k) for k in ("id", "channel", "customer_id", "tenant")}
    if safe["customer_id"]:
        safe["customer_id"] = redact(safe["customer_id"], salt=salt)
    body = ticket["body"]
    if quoted_injection(str(raw_ticket.get("body") or ""), body):
        body = raw_ticket["body"]
    safe.update(subject=redact(ticket.get("subject") or "", salt=salt),
                body=redact(body, salt=salt))
    return safe


RESOLVED_OUTSIDE = "resolved outside the workflow"


def open_reviews(db: Any) -> list[dict]:
    """Reviews our tables say are still open (waiting or escalated)."""
    return db.fetchall("SELECT thread_id, ticket_id FROM sg_reviews "
                       "WHERE status IN ('waiting', 'escalated') ORDER BY requested_at")


def record_resolved_outside(db: Any, row: dict, metadata: Mapping[str, Any] | None,
                            stamp: str) -> bool:
    """Close a review whose thread ended without a decision (Agent Inbox "Mark as Resolved").

    That button writes the state as `__end__` with no resume, so no step of ours runs; the
    review is recorded as rejected by whoever wrote that checkpoint (`unknown` when the server
    had no authentication). One conditional UPDATE: two sweeps never record it twice.
    """
    metadata = metadata or {}
    who = str(metadata.get("langgraph_auth_user_id") or metadata.get("user_id")
              or "unknown")[:200]
    decision = {"type": "ignore", "args": RESOLVED_OUTSIDE, "reviewer": who}
    won = db.execute(
        """UPDATE sg_reviews SET status = 'rejected', decision = :decision, decided_by = :who,
               decided_at = :now
           WHERE thread_id = :t AND status IN ('waiting', 'escalated')""",
        {"decision": json.dumps(decision), "who": who, "now": stamp, "t": row["thread_id"]})
    if won:
        db.execute("UPDATE sg_runs SET status = 'rejected', updated_at = :now "
                   "WHERE thread_id = :t AND status = 'awaiting_review'",
                   {"now": stamp, "t": row["thread_id"]})
        db.execute(
            """INSERT INTO sg_audit (event_key, ticket_id, thread_id, step, attempt, started_at,
                   duration_ms, outcome, detail)
               VALUES (:key, :ticket_id, :thread_id, 'review_resolved_outside', 1, :at, 0, 'ok',
                   :detail)
               ON CONFLICT (event_key) DO NOTHING""",
            {"key": f"{row['thread_id']}:review_resolved_outside", "ticket_id": row["ticket_id"],
             "thread_id": row["thread_id"], "at": stamp,
             "detail": json.dumps({"decision": "ignore", "reviewer": who,
                                   "reason": RESOLVED_OUTSIDE})})
    return bool(won)


def _pending(snapshot: Any) -> bool:
    """Whether a thread has steps left to run.

    `snapshot.next` alone is not enough: it leaves out tasks whose writes were saved when the
    worker died before checkpointing their step, and such a thread still has to move on.
    """
    return bool(snapshot.next or snapshot.tasks)


def is_terminal(status: str) -> bool:
    """Whether a status ends a run."""
    return status in TERMINAL_STATUSES
