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
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """Input the command cannot use; reported as one line, exit status 2."""


def _context(args: argparse.Namespace) -> Any:
    from graph.context import Context

    overrides = {}
    for name in ("intent_model_dir",):
        if getattr(args, name, None):
            overrides[name] = getattr(args, name)
    return Context(**overrides)


def _print_summary(outcome: Any, as_json: bool) -> None:
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
    if summary["status"] == "awaiting_review":
        print(f"  waiting for review: {summary.get('review_reason')}; thread {outcome.thread_id}")
        print(f"  resume with: supportgraph review show {outcome.thread_id}  |  "
              f"supportgraph review accept {outcome.thread_id}")
    if summary["status"] == "failed":
        print(f"  error: {summary.get('error')}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run one ticket (--text / --eml) or a JSONL file of tickets (--input)."""
    from app.runner import Runner, ThreadBusy
    from graph.tickets import parse_chat, parse_eml

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
        ticket = parse_eml(path.read_bytes(), ticket_id=args.id)
        ticket["tenant"] = args.tenant
    else:
        ticket = {"id": args.id or _new_id(), "channel": args.channel, "body": args.text,
                  "subject": args.subject or "", "tenant": args.tenant,
                  "customer_id": args.customer_id}
    ticket = _ticket_input(ticket)
    parse_chat(ticket)  # reject bad input before opening any database or model
    try:
        outcome = Runner(_context(args)).run(ticket)
    except ThreadBusy as exc:
        print(f"supportgraph: busy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _print_summary(outcome, args.json)
    return EXIT_OK


def _run_file(path: Path, args: argparse.Namespace) -> int:
    """The batch worker (app/worker.py): concurrent runs, graceful stop on SIGTERM/SIGINT."""
    import os

    from app.runner import Runner
    from app.worker import MAX_CONCURRENCY, Worker
    from graph.tickets import TicketError, read_jsonl

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
    sys.stdout.flush()
    sys.stderr.flush()
    if report.abandoned:  # runs past the drain bound: leave them at their last checkpoint
        os._exit(report.exit_status())
    return report.exit_status()


def _ticket_input(ticket: dict) -> dict:
    return {k: ticket.get(k) for k in ("id", "channel", "subject", "body", "customer_id",
                                       "tenant") if ticket.get(k) is not None}


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
    from app.runner import AlreadyDecided, NotFound, Runner, ThreadBusy

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
              f"escalated {len(result['escalated'])}, stalled {len(result['stalled'])}")
        return EXIT_OK
    if args.action == "list":
        rows = runner.db.fetchall(
            "SELECT thread_id, ticket_id, reason, queue, status, requested_at, deadline_at "
            "FROM sg_reviews WHERE status IN ('waiting', 'escalated') ORDER BY requested_at")
        now = datetime.now(UTC).isoformat()
        if args.json:
            for row in rows:
                row["sla"] = "overdue" if row["deadline_at"] < now else "ok"
                print(json.dumps(row))
            return EXIT_OK
        if not rows:
            print("no tickets waiting for review")
        for row in rows:
            sla = "OVERDUE" if row["deadline_at"] < now else "ok"
            print(f"{row['thread_id']}\tage {_age(row['requested_at'])}\t{row['queue']}\t"
                  f"sla {sla}\t{row['reason']}")
        return EXIT_OK
    try:
        thread_id = runner.resolve_thread(args.ref)
        if args.action == "show":
            payload = runner.pending_review(thread_id)
            if args.json:
                print(json.dumps(payload, ensure_ascii=False, indent=2))
            else:
                _print_payload(thread_id, payload)
            return EXIT_OK
        response = _response_from_args(args)
        outcome = runner.decide(thread_id, response)
    except NotFound as exc:
        print(f"supportgraph: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except AlreadyDecided as exc:
        print(f"supportgraph: already decided: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ThreadBusy as exc:
        print(f"supportgraph: busy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _print_summary(outcome, args.json)
    return EXIT_OK


def _response_from_args(args: argparse.Namespace) -> dict:
    reviewer = args.reviewer
    if args.action == "accept":
        return {"type": "accept", "args": None, "reviewer": reviewer}
    if args.action == "edit":
        reply = args.reply
        if args.reply_file:
            reply = Path(args.reply_file).read_text(encoding="utf-8", errors="replace")
        return {"type": "edit", "args": {"reply": reply or ""}, "reviewer": reviewer}
    if args.action == "respond":
        return {"type": "response", "args": args.note or "", "reviewer": reviewer}
    return {"type": "ignore", "args": args.reason or "rejected by reviewer", "reviewer": reviewer}


def _print_payload(thread_id: str, payload: dict) -> None:
    req = payload["action_request"]["args"]
    ticket = req.get("ticket") or {}
    print(f"thread:  {thread_id}")
    print(f"reason:  {req.get('reason')}")
    print(f"ticket:  {ticket.get('id')} ({ticket.get('channel')}, tenant {ticket.get('tenant')})")
    if ticket.get("subject"):
        print(f"subject: {ticket['subject']}")
    print("\n--- customer wrote ---\n" + (ticket.get("body") or ""))
    print("\n--- draft reply ---\n" + (req.get("reply") or "(no draft)"))
    scores = {k: (req.get(k) or {}).get("score") for k in ("tone", "confidence")}
    intent = req.get("intent") or {}
    print(f"\nintent {intent.get('intent')} ({intent.get('confidence')}), "
          f"tone {scores['tone']}, confidence {scores['confidence']}, flags {req.get('flags')}")
    for source in req.get("sources") or []:
        print(f"  source: {source['title']} ({source['doc_id']})")


def cmd_audit(args: argparse.Namespace) -> int:
    """Show a ticket's audit trail and run summary."""
    from app.runner import Runner

    runner = Runner(_context(args))
    rows = runner.db.fetchall(
        "SELECT * FROM sg_audit WHERE ticket_id = :t ORDER BY started_at", {"t": args.ticket_id})
    runs = runner.db.fetchall(
        "SELECT thread_id, status, summary FROM sg_runs WHERE ticket_id = :t ORDER BY updated_at",
        {"t": args.ticket_id})
    if not rows and not runs:
        print(f"supportgraph: no audit records for ticket {args.ticket_id!r}", file=sys.stderr)
        return EXIT_FAILED
    summaries = [json.loads(r["summary"]) for r in runs]
    if args.json:
        for row in rows:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
        print(json.dumps({"ticket_id": args.ticket_id, "events": rows, "runs": summaries},
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
    from app.timerange import RangeError, parse_range

    try:
        return parse_range(args.since, args.until)
    except RangeError as exc:
        raise BadInput(str(exc)) from None


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Write recorded tickets with gold fields (an eval dataset) for a date range."""
    from app.audit_export import export
    from app.runner import Runner

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
    from app.stats import compute_stats, format_stats
    from graph.persistence import open_database

    span = _time_range(args)
    ctx = _context(args)
    stats = compute_stats(open_database(ctx.database_url or None, ctx.home_path), span)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return EXIT_OK


def cmd_recover(args: argparse.Namespace) -> int:
    """Finish runs left behind by a dead worker."""
    from app.runner import Runner

    outcomes = Runner(_context(args)).recover()
    for outcome in outcomes:
        _print_summary(outcome, args.json)
    if not args.json:
        print(f"recovered {len(outcomes)} thread(s)")
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest markdown/text files or JSONL records into a collection."""
    from graph.resources import get_resources
    from retrieval import sentence_cache
    from retrieval.cases import COLLECTION as CASES_COLLECTION
    from retrieval.ingest import ingest_paths

    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BadInput(f"no such file or folder: {', '.join(missing)}")
    ctx = _context(args)
    store = get_resources(ctx).store
    report = ingest_paths(store, args.collection, paths, progress=True)
    if report.chunks and args.collection != CASES_COLLECTION:
        sentence_cache.build(store, ctx.home_path, [args.collection])
    print(f"{args.collection}: {report.documents} documents, {report.chunks} chunks "
          f"in {report.seconds:.1f} s; skipped {len(report.skipped)}")
    for path, reason in report.skipped:
        print(f"  skipped {path}: {reason}")
    return EXIT_OK


def cmd_retrieve(args: argparse.Namespace) -> int:
    """Answer a JSONL file of queries with the K best distinct documents each."""
    from graph.resources import get_resources
    from retrieval.ingest import retrieve_file

    if not Path(args.input).is_file():
        raise BadInput(f"no such file: {args.input}")
    if args.k < 1 or args.k > 100:
        raise BadInput("--k must be between 1 and 100")
    store = get_resources(_context(args)).store
    counts = retrieve_file(store, args.collection, Path(args.input), Path(args.output), k=args.k)
    print(json.dumps(counts))
    return EXIT_BAD_INPUT if counts.get("errors") else EXIT_OK


def cmd_cases(args: argparse.Namespace) -> int:
    """Remove a resolved case (for example one learned from a wrong answer) by ticket id."""
    from graph.resources import get_resources
    from retrieval.cases import delete_case

    removed = delete_case(get_resources(_context(args)).store, args.ticket_id)
    print(f"removed the case of ticket {args.ticket_id}" if removed
          else f"no resolved case holds ticket {args.ticket_id}")
    return EXIT_OK if removed else EXIT_FAILED


def cmd_train_intents(args: argparse.Namespace) -> int:
    """Train an intent model directory from labelled examples and a routes file."""
    from models.intent import TrainingDataError, train_from_files

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
    from models.intent import classify_file

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
    except EvalInputError as exc:
        raise BadInput(str(exc)) from None


def cmd_init(args: argparse.Namespace) -> int:
    """Prepare local state: the demo intent model and the demo knowledge base."""
    from graph.resources import get_resources

    ctx = _context(args)
    res = get_resources(ctx)
    res.db.migrate()
    res.intent_model.predict(["warm-up"])
    if ctx.demo_kb:
        res.demo_kb_ready()
    print(f"ready: {ctx.home_path.resolve()} ("
          f"{'postgres' if ctx.database_url else 'sqlite'}, "
          f"qdrant {'server' if ctx.qdrant_url else 'local'})")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Reduce closed tickets' checkpoint history to their final checkpoint."""
    from app.prune import PruneError, parse_before, prune_closed
    from app.runner import Runner

    try:
        before = parse_before(args.before) if args.before is not None else None
    except PruneError as exc:
        raise BadInput(str(exc)) from None
    report = prune_closed(Runner(_context(args)), before=before, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
        return EXIT_OK
    verb = "would prune" if report.dry_run else "pruned"
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())) or "none"
    print(f"{verb} {report.pruned} of {report.candidates} closed thread(s) "
          f"({report.already_minimal} already minimal; left alone: {skipped}); checkpoint "
          f"rows {report.rows_before} -> {report.rows_after}, "
          f"{report.bytes_before / 1e3:.1f} KB -> {report.bytes_after / 1e3:.1f} KB")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="supportgraph", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step as JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="answer a ticket end to end")
    run.add_argument("--text", help="the ticket body (a chat message)")
    run.add_argument("--eml", help="an RFC 822 email file")
    run.add_argument("--input", help="a JSONL file of tickets")
    run.add_argument("--id", help="ticket id (default: generated)")
    run.add_argument("--subject", default="")
    run.add_argument("--channel", default="chat", help="chat or email (for --text)")
    run.add_argument("--tenant")
    run.add_argument("--customer-id")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    run.add_argument("--intent-model-dir", help="a model dir from train-intents")
    run.add_argument("--concurrency", type=int, default=1,
                     help="tickets in flight at once (with --input)")
    run.add_argument("--drain-seconds", type=float, default=30.0,
                     help="on SIGTERM/SIGINT, how long runs in flight may finish (with --input)")
    run.set_defaults(func=cmd_run)

    review = sub.add_parser("review", help="the human review queue")
    review_sub = review.add_subparsers(dest="action", required=True)
    for action in ("list", "show", "accept", "edit", "respond", "reject", "sweep"):
        p = review_sub.add_parser(action)
        if action == "sweep":
            p.add_argument("--now", help="evaluate SLAs as of this ISO time (default: now)")
        elif action != "list":
            p.add_argument("ref", help="thread id or ticket id")
        p.add_argument("--json", action="store_true")
        p.add_argument("--reviewer", default="cli")
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
    remove.set_defaults(func=cmd_cases)

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
    import os

    from app.observability import configure_logging, configure_tracing
    from app.settings import SettingsError
    from graph.persistence import CheckpointKeyError
    from graph.tickets import TicketError

    # Model-loading progress bars are noise on a CLI that prints one line per ticket.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.verbose)
        configure_tracing()
        return args.func(args)
    except (BadInput, TicketError, SettingsError, CheckpointKeyError) as exc:
        print(f"supportgraph: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
