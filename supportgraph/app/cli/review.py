"""The human review queue from a terminal (review) and the web inbox (serve)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supportgraph.app.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    BadInput,
    age,
    context,
    print_summary,
)


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
    runner = Runner(context(args))
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
            print(f"{row['thread_id']}\ttenant {row['tenant']}\tage {age(row['requested_at'])}"
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
    print_summary(outcome, args.json, runner)
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
    db = run_services(context(args)).db
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
    runner = Runner(context(args))
    settings = inbox_settings(runner.db, runner.ctx.settings, runner.ctx.pii_salt)
    if not (settings.keys.by_hash if isinstance(settings.keys, KeyStore)
            else settings.keys.has_reviewers()):
        raise BadInput("no reviewer key: add one with `supportgraph keys add --tenant T "
                       "--role reviewer`")
    app = create_app(lambda: RunnerBackend(runner), settings)
    print(f"review inbox on http://{args.host}:{args.port}/inbox", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK
