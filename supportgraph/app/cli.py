"""The `supportgraph` command line.

Exit status: 0 on success, 1 when a command ran but could not do what was asked (for example a
review that was already decided), 2 on bad input with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
TENANT_HELP = "the ticket's tenant (needed when several tenants have this ticket id)"


class BadInput(Exception):
    """Input the command cannot use; reported as one line, exit status 2."""


def _context(args: argparse.Namespace) -> Any:
    from graph.context import Context

    overrides = {}
    for name in ("intent_model_dir",):
        if getattr(args, name, None):
            overrides[name] = getattr(args, name)
    return Context(**overrides)


def _print_summary(outcome: Any, as_json: bool, runner: Any = None,
                   with_reply: bool = False) -> None:
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
    tenant = _tenant_of(outcome.thread_id, summary["ticket_id"])
    show = f"supportgraph show {summary['ticket_id']}" + (f" --tenant {tenant}" if tenant else "")
    if summary["status"] == "awaiting_review":
        print(f"  waiting for review: {summary.get('review_reason')}; thread {outcome.thread_id}")
        print(f"  resume with: {_resume_hint(runner, outcome.thread_id)}")
    if summary["status"] == "failed":
        print(f"  error: {summary.get('error')}")
    if with_reply and runner is not None:
        reply, kind = _reply_text(runner, outcome.thread_id)
        if reply:
            print(f"\n--- {kind} ---\n{reply}\n")
        print(f"  details: {show}")


def _tenant_of(thread_id: str, ticket_id: str) -> str:
    """The tenant part of a ticket's thread id (`ticket:TENANT:ID`), "" for none."""
    middle = thread_id.removeprefix("ticket:").removesuffix(f":{ticket_id}")
    return "" if middle == thread_id.removeprefix("ticket:") else middle


def _resume_hint(runner: Any, thread_id: str) -> str:
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


def _reply_text(runner: Any, thread_id: str) -> tuple[str | None, str]:
    """The reply as sent (outbox), else the draft waiting for review."""
    row = runner.db.fetchone("SELECT reply FROM sg_outbox WHERE thread_id = :t",
                             {"t": thread_id})
    if row:
        return row["reply"], "reply"
    values = runner.graph.get_state({"configurable": {"thread_id": thread_id}}).values or {}
    drafts = values.get("drafts") or []
    return (drafts[-1]["text"], "draft (not sent)") if drafts else (None, "")


def cmd_run(args: argparse.Namespace) -> int:
    """Run one ticket (--text / --eml) or a JSONL file of tickets (--input)."""
    from supportgraph.app.runner import Runner, ThreadBusy
    from supportgraph.text.mail import email_parts, parse_eml, reply_address
    from supportgraph.text.screening import with_hidden_attacks
    from supportgraph.text.tickets import parse_chat

    recipient = None
    sources = [s for s in (args.text is not None, args.eml, args.input) if s]
    if len(sources) != 1:
        raise BadInput("give exactly one of --text, --eml or --input")
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise BadInput(f"no such file: {path}")
        return _run_file(path, args)
    if args.eml:
        path = Path(args.eml)
        if not path.is_file():
            raise BadInput(f"no such file: {path}")
        raw = path.read_bytes()
        ticket = parse_eml(raw, ticket_id=args.id)
        ticket["body"] = with_hidden_attacks(ticket["body"], email_parts(raw))
        ticket["tenant"] = args.tenant
        ticket["customer_id"] = args.customer_id
        recipient = args.customer_id or reply_address(raw)
    else:
        ticket = {"id": args.id or _new_id(), "channel": args.channel, "body": args.text,
                  "subject": args.subject or "", "tenant": args.tenant,
                  "customer_id": args.customer_id}
    ticket = _ticket_input(ticket)
    parse_chat(ticket)  # reject bad input before opening any database or model
    runner = Runner(_context(args))
    try:
        outcome = runner.run(ticket, recipient=recipient)
    except ThreadBusy as exc:
        print(f"supportgraph: busy: {exc}; try again when that run ends", file=sys.stderr)
        return EXIT_FAILED
    _print_summary(outcome, args.json, runner, with_reply=not args.quiet)
    return EXIT_OK


def _run_file(path: Path, args: argparse.Namespace) -> int:
    """The batch worker (app/worker.py): concurrent runs, graceful stop on SIGTERM/SIGINT."""
    import os

    from supportgraph.app.runner import Runner
    from supportgraph.app.worker import MAX_CONCURRENCY, Worker
    from supportgraph.text.tickets import TicketError, read_jsonl

    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise BadInput(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if not 0 <= args.drain_seconds <= 86400:
        raise BadInput("--drain-seconds must be between 0 and 86400")
    worker = Worker(Runner(_context(args)), concurrency=args.concurrency,
                    drain_seconds=args.drain_seconds,
                    on_outcome=lambda outcome: _print_summary(outcome, args.json))
    items = ((n, item if isinstance(item, TicketError) else _ticket_input(item))
             for n, item in read_jsonl(path))
    with worker.signals():
        report = worker.run(items)
    for line_no, reason in report.bad_lines:
        print(f"{path}:{line_no}: skipped: {reason}", file=sys.stderr)
    print(report.line(), file=sys.stderr)
    _deliver_after_batch(worker.runner, report)
    sys.stdout.flush()
    sys.stderr.flush()
    if report.abandoned:  # runs past the drain bound: leave them at their last checkpoint
        os._exit(report.exit_status())
    return report.exit_status()


def _deliver_after_batch(runner: Any, report: Any) -> None:
    """The batch worker sends what it put in the outbox when a transport is configured."""
    from supportgraph.app.delivery import deliver_due
    from supportgraph.app.settings import DeliverySettings

    settings = DeliverySettings()
    if settings.configured and report.exit_status() != 3:  # not when told to stop
        print(f"deliver: {deliver_due(runner.db, settings).line()}", file=sys.stderr)


def _ticket_input(ticket: dict) -> dict:
    return {k: ticket.get(k) for k in ("id", "channel", "subject", "body", "customer_id",
                                       "tenant") if ticket.get(k) is not None}


def _tenant(value: str) -> str:
    """A `--tenant` value: the same rule as a ticket's `tenant` field."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise argparse.ArgumentTypeError("a tenant is 1-64 characters of A-Z a-z 0-9 _ . -")
    return value


def _new_id() -> str:
    import uuid

    return f"t-{uuid.uuid4().hex[:12]}"


def _age(iso: str) -> str:
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def cmd_review(args: argparse.Namespace) -> int:
    """The review queue: list, show, accept, edit, respond, reject."""
    from nodes.human_review import InvalidResume
    from supportgraph.app.runner import AlreadyDecided, NotFound, Runner, ThreadBusy

    if args.action == "sweep" and args.server is not None:
        return _sweep_server(args)
    if args.action in ("accept", "edit", "respond", "reject"):
        _check_reviewer(args.reviewer)
        if args.action == "edit" and not (args.reply or "").strip() and not args.reply_file:
            raise BadInput("review edit needs the new reply: --reply TEXT or --reply-file PATH")
    runner = Runner(_context(args))
    if args.action == "sweep":
        now = None
        if args.now:
            try:
                now = datetime.fromisoformat(args.now)
            except ValueError:
                raise BadInput(f"--now {args.now!r} is not an ISO 8601 time") from None
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
        result = runner.sweep(now)
        print(json.dumps(result) if args.json else
              f"escalated {len(result['escalated'])}, stalled {len(result['stalled'])}, "
              f"resolved outside {len(result['resolved_outside'])}")
        return EXIT_OK
    if args.action == "list":
        only = " AND tenant = :tenant" if args.tenant is not None else ""
        rows = runner.db.fetchall(
            "SELECT thread_id, ticket_id, tenant, reason, queue, status, requested_at, "
            f"deadline_at FROM sg_reviews WHERE status IN ('waiting', 'escalated'){only} "
            "ORDER BY requested_at", {"tenant": args.tenant})
        now_iso = datetime.now(UTC).isoformat()
        if args.json:
            for row in rows:
                row["sla"] = "overdue" if row["deadline_at"] < now_iso else "ok"
                print(json.dumps(row))
            return EXIT_OK
        if not rows:
            print("no tickets waiting for review")
        for row in rows:
            sla = "OVERDUE" if row["deadline_at"] < now_iso else "ok"
            print(f"{row['thread_id']}\ttenant {row['tenant']}\tage {_age(row['requested_at'])}"
                  f"\t{row['queue']}\tsla {sla}\t{row['reason']}")
        return EXIT_OK
    try:
        thread_id = runner.resolve_thread(args.ref, args.tenant)
        if args.action == "show":
            payload = runner.pending_review(thread_id)
            notes = runner.review_notes(thread_id)
            passages = _cited_passages(runner, thread_id, payload)
            if args.json:
                print(json.dumps({**payload, "notes": notes, "cited_passages": passages},
                                 ensure_ascii=False, indent=2))
            else:
                _print_payload(thread_id, payload, notes, passages)
            return EXIT_OK
        response = _response_from_args(args)
        outcome = runner.decide(thread_id, response)
    except InvalidResume as exc:
        if args.action == "accept":
            raise BadInput(f"{args.ref} has no draft to accept; write the reply: supportgraph "
                           f"review edit {args.ref} --reply TEXT --reviewer NAME") from None
        raise BadInput(str(exc)) from None
    except NotFound as exc:
        print(f"supportgraph: {exc}; see `supportgraph show {args.ref}`", file=sys.stderr)
        return EXIT_FAILED
    except AlreadyDecided as exc:
        print(f"supportgraph: already decided: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ThreadBusy as exc:
        print(f"supportgraph: busy: {exc}; try again when that run ends", file=sys.stderr)
        return EXIT_FAILED
    _print_summary(outcome, args.json, runner)
    return EXIT_OK


def _sweep_server(args: argparse.Namespace) -> int:
    """Threads that live in a LangGraph server: find reviews closed there without a decision."""
    import httpx
    from langgraph_sdk import get_sync_client

    from supportgraph.app.inbox.backend import sweep_resolved_on_server
    from supportgraph.app.services import run_services
    from supportgraph.app.settings import langgraph_api_key

    if not args.server.startswith(("http://", "https://")):
        raise BadInput(f"--server {args.server!r} is not an http(s) URL")
    db = run_services(_context(args)).db
    client = get_sync_client(url=args.server, api_key=langgraph_api_key())
    try:
        resolved = sweep_resolved_on_server(db, client, datetime.now(UTC).isoformat())
    except httpx.HTTPError as exc:
        print(f"supportgraph: the server at {args.server} did not answer: {exc}",
              file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps({"resolved_outside": resolved}) if args.json
          else f"resolved outside {len(resolved)}")
    return EXIT_OK


def _response_from_args(args: argparse.Namespace) -> dict:
    reviewer = args.reviewer
    if args.action == "accept":
        return {"type": "accept", "args": None, "reviewer": reviewer}
    if args.action == "edit":
        reply = args.reply
        if args.reply_file:
            try:
                reply = Path(args.reply_file).read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise BadInput(f"cannot read --reply-file {args.reply_file}: "
                               f"{exc.strerror or exc}") from None
        return {"type": "edit", "args": {"reply": reply or ""}, "reviewer": reviewer}
    if args.action == "respond":
        return {"type": "response", "args": args.note or "", "reviewer": reviewer}
    return {"type": "ignore", "args": args.reason or "rejected by reviewer", "reviewer": reviewer}


def _check_reviewer(name: str | None) -> None:
    """Decisions through the CLI name who took them (recorded as `approved_by`)."""
    if not name or not name.strip() or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise BadInput("name the reviewer: --reviewer NAME (up to 200 printable characters)")


def _cited_passages(runner: Any, thread_id: str, payload: dict) -> list[dict]:
    """The passages the draft cites as [n], with their text (the reviewer checks them)."""
    import re

    values = runner.graph.get_state({"configurable": {"thread_id": thread_id}}).values or {}
    passages = values.get("passages") or []
    reply = payload["action_request"]["args"].get("reply") or ""
    cited = sorted({int(n) for n in re.findall(r"\[(\d{1,3})\]", reply)})
    return [{"n": n, "doc_id": passages[n - 1].get("doc_id"),
             "title": passages[n - 1].get("title"), "text": passages[n - 1].get("text")}
            for n in cited if 1 <= n <= len(passages)]


def _print_payload(thread_id: str, payload: dict, notes: list[dict] | None = None,
                   passages: list[dict] | None = None) -> None:
    print(f"thread:  {thread_id}")
    print(payload.get("description") or "")
    reply = (payload["action_request"].get("args") or {}).get("reply")
    print("\n--- draft reply ---\n" + (reply or "(no draft)"))
    for passage in passages or []:
        print(f"\n--- cited [{passage['n']}] {passage['title']} ---\n"
              f"{(passage['text'] or '')[:1200]}")
    for note in notes or []:
        print(f"\nnote from {note.get('reviewer')} at {note.get('at', '')[:19]}: "
              f"{note.get('note')}")


def cmd_audit(args: argparse.Namespace) -> int:
    """Show a ticket's audit trail and run summary."""
    from supportgraph.app.lookup import AmbiguousTicket, ticket_threads
    from supportgraph.app.runner import Runner

    runner = Runner(_context(args))
    tenants = sorted({t for t, _ in ticket_threads(runner.db, args.ticket_id)}
                     | {r["tenant"] or "default" for r in runner.db.fetchall(
                         "SELECT DISTINCT tenant FROM sg_audit WHERE ticket_id = :t",
                         {"t": args.ticket_id})})
    if args.tenant is not None:
        tenants = [t for t in tenants if t == args.tenant]
    if len(tenants) > 1:
        raise AmbiguousTicket(args.ticket_id, tenants)
    if not tenants:
        of = f" of tenant {args.tenant}" if args.tenant is not None else ""
        print(f"supportgraph: no audit records for ticket {args.ticket_id[:200]!r}{of}",
              file=sys.stderr)
        return EXIT_FAILED
    scope = {"t": args.ticket_id, "tenant": tenants[0]}
    rows = runner.db.fetchall(
        "SELECT * FROM sg_audit WHERE ticket_id = :t AND tenant = :tenant ORDER BY started_at",
        scope)
    runs = runner.db.fetchall(
        "SELECT thread_id, status, summary FROM sg_runs WHERE ticket_id = :t "
        "AND tenant = :tenant ORDER BY updated_at", scope)
    summaries = [json.loads(r["summary"]) for r in runs]
    if args.json:
        for row in rows:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
        print(json.dumps({"ticket_id": args.ticket_id, "tenant": tenants[0], "events": rows,
                          "runs": summaries},
                         ensure_ascii=False, indent=2))
        return EXIT_OK
    for row in rows:
        detail = json.loads(row["detail"]) if row["detail"] else {}
        brief = ", ".join(f"{k}={v}" for k, v in detail.items()
                          if k not in ("models", "signals", "reasons"))[:160]
        print(f"{row['started_at'][:23]}  {row['step']:<13} {row['outcome']:<11} "
              f"{row['duration_ms']:>8.1f} ms  ${row['cost_usd']:.4f}  {brief}")
        if row["failure"]:
            print(f"{'':27}failure: {row['failure']}")
    for summary in summaries:
        print(f"\nrun {summary['thread_id']}: {summary['status']}  route {summary.get('route')}  "
              f"intent {summary.get('intent')}  confidence {summary.get('confidence')}  "
              f"cost ${summary['cost_total']:.4f}  {summary['total_duration_ms']:.0f} ms  "
              f"model calls {summary['model_calls']}  retries {summary['retries']}")
        if summary.get("review_reason"):
            print(f"  review reason: {summary['review_reason']}")
        for failure in summary.get("failures") or []:
            print(f"  failure: {failure}")
    return EXIT_OK


def _time_range(args: argparse.Namespace) -> Any:
    """The `--since`/`--until` range of a command; bad dates are bad input."""
    from supportgraph.app.timerange import RangeError, parse_range

    try:
        return parse_range(args.since, args.until)
    except RangeError as exc:
        raise BadInput(str(exc)) from None


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Write recorded tickets with gold fields (an eval dataset) for a date range."""
    from supportgraph.app.audit_export import export
    from supportgraph.app.runner import Runner

    span = _time_range(args)
    out = Path(args.out)
    if out.is_dir() or not out.name:
        raise BadInput(f"--out {args.out!r} must be a file path")
    try:  # fail before loading anything
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror or exc}") from None
    counts = export(Runner(_context(args)), span, out)
    print(f"wrote {counts['written']} tickets to {out} (skipped {counts['skipped']} "
          "without a ticket or an intent)")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """Tickets by state, escalation rate, cost per ticket and day, step latencies."""
    from supportgraph.app.services import services_for
    from supportgraph.app.stats import compute_stats, format_stats

    span = _time_range(args)
    stats = compute_stats(services_for(_context(args).settings).db, span)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return EXIT_OK


def cmd_recover(args: argparse.Namespace) -> int:
    """Finish runs left behind by a dead worker."""
    from supportgraph.app.runner import Runner

    outcomes = Runner(_context(args)).recover()
    for outcome in outcomes:
        _print_summary(outcome, args.json)
    if not args.json:
        print(f"recovered {len(outcomes)} thread(s)")
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest markdown/text files or JSONL records into a collection."""
    from retrieval import sentence_cache
    from retrieval.backends import check_name
    from retrieval.cases import COLLECTION as CASES_COLLECTION
    from retrieval.ingest import ingest_paths
    from supportgraph.app.services import run_services

    try:
        check_name(args.collection)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BadInput(f"no such file or folder: {', '.join(missing)}")
    ctx = _context(args)
    store = run_services(ctx).store
    report = ingest_paths(store, args.collection, paths, progress=True)
    if report.chunks and args.collection != CASES_COLLECTION:
        sentence_cache.build(store, ctx.home_path, [args.collection])
    print(f"{args.collection}: {report.documents} documents, {report.chunks} chunks "
          f"in {report.seconds:.1f} s; skipped {len(report.skipped)}")
    if report.chunks and args.collection.startswith("kb_"):
        model = run_services(ctx).refit_answerability()
        if model is not None:
            print(f"answerability: term profile of {model.report['sections']} sections "
                  f"stored with the fit")
    for path, reason in report.skipped:
        print(f"  skipped {path}: {reason}")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    """Upgrade a Qdrant server's collections made by an older release (a deploy step)."""
    from retrieval.migrate import upgrade_server_collections
    from supportgraph.app.services import run_services

    ctx = _context(args)
    if not ctx.settings.qdrant_url:
        print("nothing to migrate: an embedded home migrates itself when it is opened")
        return EXIT_OK
    upgraded = upgrade_server_collections(run_services(ctx).store)
    for name, points in upgraded.items():
        print(f"{name}: {points} points copied with BM25 vectors; {name} now names "
              f"{name}.bm25")
    if not upgraded:
        print(f"every collection at {ctx.settings.qdrant_url} is up to date")
    return EXIT_OK


def cmd_retrieve(args: argparse.Namespace) -> int:
    """Answer a JSONL file of queries with the K best distinct documents each."""
    from retrieval.backends import check_name
    from retrieval.ingest import retrieve_file
    from supportgraph.app.services import run_services

    try:
        check_name(args.collection)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if not Path(args.input).is_file():
        raise BadInput(f"no such file: {args.input}")
    if args.k < 1 or args.k > 100:
        raise BadInput("--k must be between 1 and 100")
    store = run_services(_context(args)).store
    counts = retrieve_file(store, args.collection, Path(args.input), Path(args.output), k=args.k)
    print(json.dumps(counts))
    return EXIT_BAD_INPUT if counts.get("errors") else EXIT_OK


def cmd_cases(args: argparse.Namespace) -> int:
    """Remove a resolved case (for example one learned from a wrong answer) by ticket id."""
    from retrieval.cases import COLLECTION, delete_case
    from supportgraph.app.lookup import AmbiguousTicket
    from supportgraph.app.services import run_services

    store = run_services(_context(args)).store
    holding = (store.payloads_where(COLLECTION, "ticket_ids", str(args.ticket_id))
               if store.exists(COLLECTION) else [])
    tenants = sorted({p.get("tenant") or "default" for p in holding})
    if args.tenant is not None:
        tenants = [t for t in tenants if t == args.tenant]
    if len(tenants) > 1:
        raise AmbiguousTicket(args.ticket_id, tenants)
    removed = bool(tenants) and delete_case(
        store, args.ticket_id, None if tenants[0] == "default" else tenants[0])
    scope = f" of tenant {args.tenant}" if args.tenant is not None else ""
    if not removed:
        print(f"supportgraph: no resolved case holds ticket {args.ticket_id[:200]}{scope}; "
              "list them with `supportgraph cases list`", file=sys.stderr)
        return EXIT_FAILED
    print(f"removed the case of ticket {args.ticket_id} (tenant {tenants[0]})")
    return EXIT_OK


def _cases_of(args: argparse.Namespace) -> list[dict]:
    """Resolved cases, of one tenant when `--tenant` is given (`default`: stored without one)."""
    from retrieval.cases import COLLECTION
    from supportgraph.app.services import run_services

    store = run_services(_context(args)).store
    if not store.exists(COLLECTION):
        return []
    cases = [payload for _, payload in store.scroll_payloads(COLLECTION)]
    if args.tenant is not None:
        cases = [c for c in cases if (c.get("tenant") or "default") == args.tenant]
    return sorted(cases, key=lambda c: str(c.get("resolved_at") or ""), reverse=True)


def cmd_cases_list(args: argparse.Namespace) -> int:
    """List resolved cases, newest first (one tenant with --tenant)."""
    if not 1 <= args.limit <= 10_000:
        raise BadInput("--limit must be between 1 and 10000")
    cases = _cases_of(args)[:args.limit]
    for case in cases:
        if args.json:
            print(json.dumps({k: case.get(k) for k in ("ticket_id", "tenant", "intent",
                                                        "resolved_at", "ticket_ids")}))
        else:
            print(f"{case.get('ticket_id')}\ttenant {case.get('tenant') or 'default'}\t"
                  f"{case.get('intent')}\t{str(case.get('resolved_at') or '')[:19]}\t"
                  f"{_one_line(case.get('text'), 60)}")
    if not cases and not args.json:
        print("no resolved cases" + (f" for tenant {args.tenant}" if args.tenant else ""))
    return EXIT_OK


def cmd_cases_show(args: argparse.Namespace) -> int:
    """Show the resolved case holding a ticket (the text and the reply that resolved it)."""
    from supportgraph.app.lookup import AmbiguousTicket

    ticket_id = args.ticket_id.strip()
    found = [c for c in _cases_of(args)
             if ticket_id in [str(t) for t in c.get("ticket_ids") or []]]
    tenants = sorted({c.get("tenant") or "default" for c in found})
    if len(tenants) > 1:
        raise AmbiguousTicket(ticket_id, tenants)
    if not found:
        print(f"supportgraph: no resolved case holds ticket {ticket_id}"
              + (f" for tenant {args.tenant}" if args.tenant is not None else "")
              + "; list them with `supportgraph cases list`", file=sys.stderr)
        return EXIT_FAILED
    case = found[0]
    if args.json:
        print(json.dumps({k: case.get(k) for k in ("ticket_id", "tenant", "intent", "text",
                                                    "reply", "resolved_at", "ticket_ids")},
                         ensure_ascii=False, indent=2))
        return EXIT_OK
    print(f"case of ticket {case.get('ticket_id')} (tenant {case.get('tenant') or 'default'}, "
          f"intent {case.get('intent')}, resolved {str(case.get('resolved_at'))[:19]})")
    print(f"tickets: {', '.join(map(str, case.get('ticket_ids') or []))}")
    print(f"\n--- customer wrote ---\n{case.get('text')}\n\n--- reply ---\n{case.get('reply')}")
    return EXIT_OK


def _one_line(text: Any, width: int) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= width else flat[:width - 1] + "..."


def cmd_show(args: argparse.Namespace) -> int:
    """What a ticket's customer got: status, reply, recipient, sources, review, delivery."""
    from supportgraph.app.lookup import TicketLookupError, resolve_ticket
    from supportgraph.app.runner import Runner
    from supportgraph.app.show import format_view, ticket_view

    runner = Runner(_context(args))
    try:
        tenant, thread_id = resolve_ticket(runner.db, args.ticket_id, args.tenant)
    except TicketLookupError as exc:
        raise BadInput(str(exc)) from None
    view = ticket_view(runner, tenant, thread_id)
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        print(format_view(view))
    return EXIT_OK


def cmd_deliver(args: argparse.Namespace) -> int:
    """Send pending outbox rows (SMTP / signed webhook), with retries; see app/delivery.py."""
    import signal
    import time

    from supportgraph.app.delivery import deliver_due
    from supportgraph.app.services import services_for
    from supportgraph.app.settings import DeliverySettings

    if not 0.1 <= args.interval <= 3600:
        raise BadInput("--interval must be between 0.1 and 3600 seconds")
    settings = DeliverySettings()
    if not settings.configured:
        raise BadInput("no transport: set SUPPORTGRAPH_SMTP_URL (and SUPPORTGRAPH_SMTP_FROM) "
                       "or SUPPORTGRAPH_WEBHOOK_URL (and SUPPORTGRAPH_WEBHOOK_SECRET)")
    db = services_for(_context(args).settings).db
    stop: list[int] = []
    if not args.once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.append(signum))
    dead = 0
    while True:
        report = deliver_due(db, settings)
        dead += report.dead
        if args.json:
            print(json.dumps(report.as_dict()), flush=True)
        elif args.once or report.delivered or report.dead or report.retrying:
            print(report.line(), flush=True)
            for error in report.errors:
                print(f"  {error}", file=sys.stderr)
        if args.once or stop:
            break
        deadline = time.monotonic() + args.interval
        while not stop and time.monotonic() < deadline:
            time.sleep(0.1)
    return EXIT_FAILED if args.once and dead else EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    """API keys of the LangGraph server: add (shown once), list, revoke."""
    from supportgraph.app.keys import KeyCommandError, add_key, list_keys, revoke_key
    from supportgraph.app.services import services_for

    db = services_for(_context(args).settings).db
    if args.action == "add":
        try:
            created = add_key(db, args.tenant, args.role, args.name)
        except KeyCommandError as exc:
            raise BadInput(str(exc)) from None
        if args.json:
            print(json.dumps(created))
        else:
            print(f"key {created['name']} (tenant {created['tenant']}, role {created['role']}): "
                  f"{created['key']}")
            print("  shown once: only its hash is stored. Send it as the x-api-key header.")
        return EXIT_OK
    if args.action == "list":
        rows = list_keys(db)
        if args.json:
            for row in rows:
                print(json.dumps(row))
        elif not rows:
            print("no API keys (add one with: supportgraph keys add --tenant T --role service)")
        for row in [] if args.json else rows:
            state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
            print(f"{row['name']}\ttenant {row['tenant']}\trole {row['role']}\t"
                  f"created {row['created_at']}\tlast used {row['last_used_at'] or 'never'}"
                  f"\t{state}")
        return EXIT_OK
    if revoke_key(db, args.name):
        print(f"revoked key {args.name}")
        return EXIT_OK
    print(f"supportgraph: no active key named {args.name!r}", file=sys.stderr)
    return EXIT_FAILED


def cmd_train_intents(args: argparse.Namespace) -> int:
    """Train an intent model directory from labelled examples and a routes file."""
    from supportgraph.models.intent import TrainingDataError, train_from_files

    for path in (args.data, args.routes, *([args.oos_data] if args.oos_data else [])):
        if not Path(path).is_file():
            raise BadInput(f"no such file: {path}")
    try:
        report = train_from_files(Path(args.data), Path(args.routes), Path(args.out),
                                  oos_data=Path(args.oos_data) if args.oos_data else None)
    except TrainingDataError as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(report, indent=2, default=str))
    return EXIT_OK


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify a JSONL file of texts with a trained model directory."""
    from supportgraph.models.intent import classify_file

    if not Path(args.input).is_file():
        raise BadInput(f"no such file: {args.input}")
    try:
        counts = classify_file(Path(args.model), Path(args.input), Path(args.output))
    except (FileNotFoundError, ValueError) as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(counts))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    """Replay an eval dataset in an isolated home and report (see evals/cli.py)."""
    from evals.cli import EvalInputError, run_command

    try:
        return run_command(args)
    except EvalInputError as exc:  # one line: the reason, then the first bad rows
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        more = f" (+{len(lines) - 4} more)" if len(lines) > 4 else ""
        raise BadInput("; ".join(lines[:4]) + more) from None


def cmd_init(args: argparse.Namespace) -> int:
    """Prepare local state: the demo intent model and KB, or (`--no-demo`) an empty home.

    Either way the answerability fit is stored with the term profile of the home's KB.
    """
    from supportgraph.app.services import NO_DEMO_MARKER, services_for

    ctx = _context(args)
    marker = ctx.home_path / NO_DEMO_MARKER
    if args.no_demo:
        ctx.home_path.mkdir(parents=True, exist_ok=True)
        marker.write_text("made by `supportgraph init --no-demo`: no demo KB or intent model\n",
                          encoding="utf-8")
    services = services_for(ctx.settings)
    res = services.for_run(ctx)
    res.db.migrate()
    res.pii_salt  # noqa: B018 - creates the home's salt file (0600) if there is none
    services.prepare(ctx)  # the demo intent model and KB (nothing in a --no-demo home)
    if res.routing == "intent":
        res.intent_model.predict(["warm-up"])
    if res.demo_enabled:
        res.demo_kb_ready()
    model = res.refit_answerability() if args.no_demo else res.answerability
    kb = ", ".join(res.kb_collections()) or "empty (add one: supportgraph ingest --collection "
    kb = kb if model is not None else kb + "kb_<route> FILES)"
    print(f"ready: {ctx.home_path.resolve()} ("
          f"{'postgres' if ctx.settings.database_url else 'sqlite'}, "
          f"qdrant {'server' if ctx.settings.qdrant_url else 'local'}, routing {res.routing}); "
          f"knowledge base: {kb}")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Reduce closed tickets' checkpoint history to their final checkpoint."""
    from supportgraph.app.prune import PruneError, parse_before, prune_closed
    from supportgraph.app.runner import Runner

    try:
        before = parse_before(args.before) if args.before is not None else None
    except PruneError as exc:
        raise BadInput(str(exc)) from None
    report = prune_closed(Runner(_context(args)), before=before, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
        return EXIT_OK
    verb = "would prune" if report.dry_run else "pruned"
    about = "about " if report.dry_run else ""
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())) or "none"
    print(f"{verb} {report.pruned} of {report.candidates} closed thread(s) "
          f"({report.already_minimal} already minimal; left alone: {skipped}); checkpoint "
          f"rows {report.rows_before} -> {about}{report.rows_after}, "
          f"{report.bytes_before / 1e3:.1f} KB -> {about}{report.bytes_after / 1e3:.1f} KB")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """The review inbox on its own, resuming threads with the Runner on the shared database."""
    import uvicorn

    from supportgraph.app.inbox.backend import RunnerBackend
    from supportgraph.app.inbox.identity import KeyStore
    from supportgraph.app.inbox.web import create_app
    from supportgraph.app.runner import Runner
    from supportgraph.app.settings import inbox_settings

    if not 0 < args.port < 65536:
        raise BadInput(f"--port {args.port} is not a TCP port (1-65535)")
    runner = Runner(_context(args))
    settings = inbox_settings(runner.db, runner.ctx.settings, runner.ctx.pii_salt)
    if not (settings.keys.by_hash if isinstance(settings.keys, KeyStore)
            else settings.keys.has_reviewers()):
        raise BadInput("no reviewer key: add one with `supportgraph keys add --tenant T "
                       "--role reviewer`")
    app = create_app(lambda: RunnerBackend(runner), settings)
    print(f"review inbox on http://{args.host}:{args.port}/inbox", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line on stderr and exit status 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        """Print `supportgraph: MESSAGE (see ... --help)` and exit 2 (argparse prints usage)."""
        self.exit(2, f"supportgraph: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = _OneLineParser(prog="supportgraph", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step as JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="answer a ticket end to end")
    run.add_argument("--text", help="the ticket body (a chat message)")
    run.add_argument("--eml", help="an RFC 822 email file")
    run.add_argument("--input", help="a JSONL file of tickets")
    run.add_argument("--id", help="ticket id (default: generated)")
    run.add_argument("--subject", default="")
    run.add_argument("--channel", default="chat", help="chat or email (for --text)")
    run.add_argument("--tenant", type=_tenant, help="the ticket's tenant (default: default)")
    run.add_argument("--customer-id")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    run.add_argument("--quiet", action="store_true", help="only the summary line, no reply")
    run.add_argument("--intent-model-dir", help="a model dir from train-intents")
    run.add_argument("--concurrency", type=int, default=1,
                     help="tickets in flight at once (with --input)")
    run.add_argument("--drain-seconds", type=float, default=30.0,
                     help="on SIGTERM/SIGINT, how long runs in flight may finish (with --input)")
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="the review inbox web app (without a LangGraph server)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    review = sub.add_parser("review", help="the human review queue")
    review_sub = review.add_subparsers(dest="action", required=True)
    for action in ("list", "show", "accept", "edit", "respond", "reject", "sweep"):
        p = review_sub.add_parser(action)
        if action == "sweep":
            p.add_argument("--now", help="evaluate SLAs as of this ISO time (default: now)")
            p.add_argument("--server", help="a LangGraph server URL whose threads to check for "
                           "reviews closed there without a decision (Agent Inbox's "
                           "'Mark as Resolved')")
        elif action != "list":
            p.add_argument("ref", help="thread id or ticket id")
        if action != "sweep":
            p.add_argument("--tenant", type=_tenant,
                           help="the ticket's tenant (needed when several have this id; "
                                "with list: only this tenant's)")
        p.add_argument("--json", action="store_true")
        if action not in ("list", "show", "sweep"):
            p.add_argument("--reviewer", help="who decides (required; recorded as approved_by)")
        if action == "edit":
            p.add_argument("--reply", help="the new reply text")
            p.add_argument("--reply-file", help="read the new reply from a file")
        if action == "respond":
            p.add_argument("--note", required=True)
        if action == "reject":
            p.add_argument("--reason")
        p.set_defaults(func=cmd_review)

    audit = sub.add_parser("audit", help="audit trail of a ticket")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    show = audit_sub.add_parser("show")
    show.add_argument("ticket_id")
    show.add_argument("--tenant", type=_tenant, help=TENANT_HELP)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_audit)
    export = audit_sub.add_parser("export", help="recorded tickets as an eval dataset (JSONL)")
    export.add_argument("--since", required=True, help="YYYY-MM-DD or ISO time (UTC)")
    export.add_argument("--until", help="YYYY-MM-DD (whole day included) or ISO time")
    export.add_argument("--out", required=True, help="the JSONL file to write")
    export.set_defaults(func=cmd_audit_export)

    stats = sub.add_parser("stats", help="tickets, escalations, cost and latency over dates")
    stats.add_argument("--since", help="YYYY-MM-DD or ISO time (UTC)")
    stats.add_argument("--until", help="YYYY-MM-DD (whole day included) or ISO time")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)

    recover = sub.add_parser("recover", help="finish runs a dead worker left behind")
    recover.add_argument("--json", action="store_true")
    recover.set_defaults(func=cmd_recover)

    ingest = sub.add_parser("ingest", help="add documents to a collection")
    ingest.add_argument("--collection", required=True)
    ingest.add_argument("paths", nargs="+")
    ingest.set_defaults(func=cmd_ingest)

    migrate = sub.add_parser("migrate", help="upgrade an older release's collections on a "
                                             "Qdrant server (run with workers stopped)")
    migrate.set_defaults(func=cmd_migrate)
    retrieve = sub.add_parser("retrieve", help="retrieve the K best documents per query")
    retrieve.add_argument("--collection", required=True)
    retrieve.add_argument("--input", required=True)
    retrieve.add_argument("--output", required=True)
    retrieve.add_argument("--k", type=int, default=5)
    retrieve.set_defaults(func=cmd_retrieve)

    cases = sub.add_parser("cases", help="the resolved-cases collection")
    cases_sub = cases.add_subparsers(dest="action", required=True)
    remove = cases_sub.add_parser("remove", help="remove the case of a ticket")
    remove.add_argument("ticket_id")
    remove.add_argument("--tenant", type=_tenant, help=TENANT_HELP)
    remove.set_defaults(func=cmd_cases)
    cases_list = cases_sub.add_parser("list", help="resolved cases, newest first")
    cases_list.add_argument("--tenant", type=_tenant, help="only this tenant's cases")
    cases_list.add_argument("--limit", type=int, default=50)
    cases_list.add_argument("--json", action="store_true")
    cases_list.set_defaults(func=cmd_cases_list)
    cases_show = cases_sub.add_parser("show", help="the case holding a ticket")
    cases_show.add_argument("ticket_id")
    cases_show.add_argument("--tenant", type=_tenant,
                            help="the ticket's tenant (when several have it)")
    cases_show.add_argument("--json", action="store_true")
    cases_show.set_defaults(func=cmd_cases_show)

    show_ticket = sub.add_parser("show", help="a ticket's reply, review and delivery")
    show_ticket.add_argument("ticket_id")
    show_ticket.add_argument("--tenant", type=_tenant,
                             help="the ticket's tenant (when several have it)")
    show_ticket.add_argument("--json", action="store_true")
    show_ticket.set_defaults(func=cmd_show)

    deliver = sub.add_parser("deliver", help="send pending replies (SMTP or webhook)")
    deliver.add_argument("--once", action="store_true", help="send what is due, then exit")
    deliver.add_argument("--interval", type=float, default=5.0,
                         help="seconds between passes (without --once)")
    deliver.add_argument("--json", action="store_true", help="one JSON report per pass")
    deliver.set_defaults(func=cmd_deliver)

    keys = sub.add_parser("keys", help="API keys of the LangGraph server (tenant and role)")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    add = keys_sub.add_parser("add", help="create a key (printed once; only its hash is kept)")
    add.add_argument("--tenant", type=_tenant, required=True)
    add.add_argument("--role", required=True, choices=("service", "reviewer", "admin"))
    add.add_argument("--name", help="a unique name (default: TENANT-ROLE-random)")
    add.add_argument("--json", action="store_true",
                     help='print {"name", "tenant", "role", "key"}')
    listing = keys_sub.add_parser("list", help="name, tenant, role, created, last used")
    listing.add_argument("--json", action="store_true")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    for p in (add, listing, revoke):
        p.set_defaults(func=cmd_keys)

    train = sub.add_parser("train-intents", help="train an intent classifier")
    train.add_argument("--data", required=True)
    train.add_argument("--routes", required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--oos-data", help="out-of-scope examples (JSONL 'text', CSV or lines): "
                       "the out-of-scope threshold is cross-validated on them")
    train.set_defaults(func=cmd_train_intents)

    classify = sub.add_parser("classify", help="classify texts with a trained model")
    classify.add_argument("--model", required=True)
    classify.add_argument("--input", required=True)
    classify.add_argument("--output", required=True)
    classify.set_defaults(func=cmd_classify)

    init = sub.add_parser("init", help="prepare the demo model and knowledge base")
    init.add_argument("--no-demo", action="store_true",
                      help="an empty home: add your docs with `ingest --collection kb_<route>`")
    init.set_defaults(func=cmd_init)

    prune = sub.add_parser("prune", help="cut closed tickets' checkpoints to the final one")
    prune.add_argument("--before", help="only tickets closed before this ISO date/time (UTC)")
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.add_argument("--json", action="store_true", help="print the report as JSON")
    prune.set_defaults(func=cmd_prune)

    from evals.cli import add_arguments as eval_arguments

    evaluate = sub.add_parser("eval", help="replay recorded tickets and report the metrics")
    eval_arguments(evaluate)
    evaluate.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `supportgraph` command."""
    from graph.persistence import CheckpointKeyError
    from supportgraph.app.lookup import AmbiguousTicket
    from supportgraph.app.observability import configure_logging, configure_tracing
    from supportgraph.app.services import closing_new_services
    from supportgraph.app.settings import SettingsError, apply_library_defaults
    from supportgraph.text.tickets import TicketError

    apply_library_defaults(quiet=True)  # before any model loads
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.verbose)
        configure_tracing()
        with closing_new_services():  # the command's composition root: pools, Qdrant, models
            return args.func(args)
    except (BadInput, TicketError, SettingsError, CheckpointKeyError, AmbiguousTicket) as exc:
        print(f"supportgraph: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("supportgraph: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # the last guard: one line, never a traceback on the terminal
        if args.verbose:
            import traceback

            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"supportgraph: {args.command} failed: {type(exc).__name__}: {first}; "
              "run again with -v for details, and check the database and Qdrant settings",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
