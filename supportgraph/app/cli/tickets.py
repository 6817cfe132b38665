"""Commands that run tickets and deliver replies: run, recover, show, deliver."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from supportgraph.app.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    BadInput,
    context,
    new_id,
    print_summary,
    ticket_input,
)


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
        ticket = {"id": args.id or new_id(), "channel": args.channel, "body": args.text,
                  "subject": args.subject or "", "tenant": args.tenant,
                  "customer_id": args.customer_id}
    ticket = ticket_input(ticket)
    parse_chat(ticket)  # reject bad input before opening any database or model
    runner = Runner(context(args))
    try:
        outcome = runner.run(ticket, recipient=recipient)
    except ThreadBusy as exc:
        print(f"supportgraph: busy: {exc}; try again when that run ends", file=sys.stderr)
        return EXIT_FAILED
    print_summary(outcome, args.json, runner, with_reply=not args.quiet)
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
    worker = Worker(Runner(context(args)), concurrency=args.concurrency,
                    drain_seconds=args.drain_seconds,
                    on_outcome=lambda outcome: print_summary(outcome, args.json))
    items = ((n, item if isinstance(item, TicketError) else ticket_input(item))
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


def cmd_recover(args: argparse.Namespace) -> int:
    """Finish runs left behind by a dead worker."""
    from supportgraph.app.runner import Runner

    outcomes = Runner(context(args)).recover()
    for outcome in outcomes:
        print_summary(outcome, args.json)
    if not args.json:
        print(f"recovered {len(outcomes)} thread(s)")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """What a ticket's customer got: status, reply, recipient, sources, review, delivery."""
    from supportgraph.app.lookup import TicketLookupError, resolve_ticket
    from supportgraph.app.runner import Runner
    from supportgraph.app.show import format_view, ticket_view

    runner = Runner(context(args))
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
    db = services_for(context(args).settings).db
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
