"""What happened: audit trails, exports, stats, and pruning old checkpoints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from supportgraph.app.cli.common import EXIT_FAILED, EXIT_OK, BadInput, context, time_range


def cmd_audit(args: argparse.Namespace) -> int:
    """Show a ticket's audit trail and run summary."""
    from supportgraph.app.lookup import AmbiguousTicket, ticket_threads
    from supportgraph.app.runner import Runner

    runner = Runner(context(args))
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


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Write recorded tickets with gold fields (an eval dataset) for a date range."""
    from supportgraph.app.audit_export import export
    from supportgraph.app.runner import Runner

    span = time_range(args)
    out = Path(args.out)
    if out.is_dir() or not out.name:
        raise BadInput(f"--out {args.out!r} must be a file path")
    try:  # fail before loading anything
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror or exc}") from None
    counts = export(Runner(context(args)), span, out)
    print(f"wrote {counts['written']} tickets to {out} (skipped {counts['skipped']} "
          "without a ticket or an intent)")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """Tickets by state, escalation rate, cost per ticket and day, step latencies."""
    from supportgraph.app.services import services_for
    from supportgraph.app.stats import compute_stats, format_stats

    span = time_range(args)
    stats = compute_stats(services_for(context(args).settings).db, span)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Reduce closed tickets' checkpoint history to their final checkpoint."""
    from supportgraph.app.prune import PruneError, parse_before, prune_closed
    from supportgraph.app.runner import Runner

    try:
        before = parse_before(args.before) if args.before is not None else None
    except PruneError as exc:
        raise BadInput(str(exc)) from None
    report = prune_closed(Runner(context(args)), before=before, dry_run=args.dry_run)
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
