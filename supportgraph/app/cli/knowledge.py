"""The knowledge base and resolved cases: init, ingest, migrate, retrieve, cases."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from supportgraph.app.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    BadInput,
    context,
    one_line,
)


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
    ctx = context(args)
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

    ctx = context(args)
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
    store = run_services(context(args)).store
    counts = retrieve_file(store, args.collection, Path(args.input), Path(args.output), k=args.k)
    print(json.dumps(counts))
    return EXIT_BAD_INPUT if counts.get("errors") else EXIT_OK


def cmd_cases(args: argparse.Namespace) -> int:
    """Remove a resolved case (for example one learned from a wrong answer) by ticket id."""
    from retrieval.cases import COLLECTION, delete_case
    from supportgraph.app.lookup import AmbiguousTicket
    from supportgraph.app.services import run_services

    store = run_services(context(args)).store
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

    store = run_services(context(args)).store
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
                  f"{one_line(case.get('text'), 60)}")
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


def cmd_init(args: argparse.Namespace) -> int:
    """Prepare local state: the demo intent model and KB, or (`--no-demo`) an empty home.

    Either way the answerability fit is stored with the term profile of the home's KB.
    """
    from supportgraph.app.services import NO_DEMO_MARKER, services_for

    ctx = context(args)
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
