"""Helpers every command shares: the run context, printing a run's summary, small parsers."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


TENANT_HELP = "the ticket's tenant (needed when several tenants have this ticket id)"


class BadInput(Exception):
    """Input the command cannot use; reported as one line, exit status 2."""


def context(args: argparse.Namespace) -> Any:
    """The run's Context from the command's options (settings are read at the edge)."""
    from supportgraph.app.settings import run_context

    overrides = {}
    for name in ("intent_model_dir",):
        if getattr(args, name, None):
            overrides[name] = getattr(args, name)
    return run_context(**overrides)


def print_summary(outcome: Any, as_json: bool, runner: Any = None,
                  with_reply: bool = False) -> None:
    """Print a run's outcome as one JSON line or a short human summary."""
    summary = outcome.summary
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, sort_keys=False))
        return
    line = (f"ticket {summary['ticket_id']}: {summary['status']}"
            f" (route {summary.get('route')}, intent {summary.get('intent')},"
            f" confidence {summary.get('confidence')},"
            f" {summary['total_duration_ms']:.0f} ms, ${summary['cost_total']:.4f})")
    print(line)
    if outcome.note:
        print(f"  note: {outcome.note}")
    tenant = tenant_of(outcome.thread_id, summary["ticket_id"])
    show = f"supportgraph show {summary['ticket_id']}" + (f" --tenant {tenant}" if tenant else "")
    if summary["status"] == "awaiting_review":
        print(f"  waiting for review: {summary.get('review_reason')}; thread {outcome.thread_id}")
        print(f"  resume with: {resume_hint(runner, outcome.thread_id)}")
    if summary["status"] == "failed":
        print(f"  error: {summary.get('error')}")
    if with_reply and runner is not None:
        reply, kind = reply_text(runner, outcome.thread_id)
        if reply:
            print(f"\n--- {kind} ---\n{reply}\n")
        print(f"  details: {show}")


def tenant_of(thread_id: str, ticket_id: str) -> str:
    """The tenant part of a ticket's thread id (`ticket:TENANT:ID`), "" for none."""
    middle = thread_id.removeprefix("ticket:").removesuffix(f":{ticket_id}")
    return "" if middle == thread_id.removeprefix("ticket:") else middle


def resume_hint(runner: Any, thread_id: str) -> str:
    """A command that works for this ticket: accept only when there is a draft to accept."""
    has_draft = True
    if runner is not None:
        values = runner.graph.get_state({"configurable": {"thread_id": thread_id}}).values
        has_draft = bool((values or {}).get("drafts"))
    ref = f"supportgraph review {{}} {thread_id}"
    if has_draft:
        return (f"{ref.format('show')}  |  {ref.format('accept')} --reviewer NAME")
    return (f"{ref.format('show')}  |  {ref.format('edit')} --reply TEXT --reviewer NAME"
            f"  (no draft to accept)")


def reply_text(runner: Any, thread_id: str) -> tuple[str | None, str]:
    """The reply as sent (outbox), else the draft waiting for review."""
    row = runner.db.fetchone("SELECT reply FROM sg_outbox WHERE thread_id = :t",
                             {"t": thread_id})
    if row:
        return row["reply"], "reply"
    values = runner.graph.get_state({"configurable": {"thread_id": thread_id}}).values or {}
    drafts = values.get("drafts") or []
    return (drafts[-1]["text"], "draft (not sent)") if drafts else (None, "")


def ticket_input(ticket: dict) -> dict:
    """The graph input of a parsed ticket: only the fields the graph accepts."""
    return {k: ticket.get(k) for k in ("id", "channel", "subject", "body", "customer_id",
                                       "tenant") if ticket.get(k) is not None}


def tenant(value: str) -> str:
    """A `--tenant` value: the same rule as a ticket's `tenant` field."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise argparse.ArgumentTypeError("a tenant is 1-64 characters of A-Z a-z 0-9 _ . -")
    return value


def new_id() -> str:
    """A fresh ticket id for a ticket given without one."""
    import uuid

    return f"t-{uuid.uuid4().hex[:12]}"


def age(iso: str) -> str:
    """How long ago an ISO timestamp was, for listings (`5m`, `3h`, `2d`)."""
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def time_range(args: argparse.Namespace) -> Any:
    """The `--since`/`--until` range of a command; bad dates are bad input."""
    from supportgraph.app.timerange import RangeError, parse_range

    try:
        return parse_range(args.since, args.until)
    except RangeError as exc:
        raise BadInput(str(exc)) from None


def one_line(text: Any, width: int) -> str:
    """Text flattened to one line and cut to `width` characters."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= width else flat[:width - 1] + "..."
