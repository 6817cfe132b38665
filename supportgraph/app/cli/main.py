"""The argument parser and `main`: one line and exit 2 on bad input, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from supportgraph.app.cli.admin import cmd_classify, cmd_eval, cmd_keys, cmd_train_intents
from supportgraph.app.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, TENANT_HELP, BadInput, tenant
from supportgraph.app.cli.knowledge import (
    cmd_cases,
    cmd_cases_list,
    cmd_cases_show,
    cmd_ingest,
    cmd_init,
    cmd_migrate,
    cmd_retrieve,
)
from supportgraph.app.cli.records import cmd_audit, cmd_audit_export, cmd_prune, cmd_stats
from supportgraph.app.cli.review import cmd_review, cmd_serve
from supportgraph.app.cli.tickets import cmd_deliver, cmd_recover, cmd_run, cmd_show


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line on stderr and exit status 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        """Print `supportgraph: MESSAGE (see ... --help)` and exit 2 (argparse prints usage)."""
        self.exit(2, f"supportgraph: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = _OneLineParser(prog="supportgraph", description="The `supportgraph` command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step as JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="answer a ticket end to end")
    run.add_argument("--text", help="the ticket body (a chat message)")
    run.add_argument("--eml", help="an RFC 822 email file")
    run.add_argument("--input", help="a JSONL file of tickets")
    run.add_argument("--id", help="ticket id (default: generated)")
    run.add_argument("--subject", default="")
    run.add_argument("--channel", default="chat", help="chat or email (for --text)")
    run.add_argument("--tenant", type=tenant, help="the ticket's tenant (default: default)")
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
            p.add_argument("--tenant", type=tenant,
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
    show.add_argument("--tenant", type=tenant, help=TENANT_HELP)
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
    remove.add_argument("--tenant", type=tenant, help=TENANT_HELP)
    remove.set_defaults(func=cmd_cases)
    cases_list = cases_sub.add_parser("list", help="resolved cases, newest first")
    cases_list.add_argument("--tenant", type=tenant, help="only this tenant's cases")
    cases_list.add_argument("--limit", type=int, default=50)
    cases_list.add_argument("--json", action="store_true")
    cases_list.set_defaults(func=cmd_cases_list)
    cases_show = cases_sub.add_parser("show", help="the case holding a ticket")
    cases_show.add_argument("ticket_id")
    cases_show.add_argument("--tenant", type=tenant,
                            help="the ticket's tenant (when several have it)")
    cases_show.add_argument("--json", action="store_true")
    cases_show.set_defaults(func=cmd_cases_show)

    show_ticket = sub.add_parser("show", help="a ticket's reply, review and delivery")
    show_ticket.add_argument("ticket_id")
    show_ticket.add_argument("--tenant", type=tenant,
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
    add.add_argument("--tenant", type=tenant, required=True)
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
