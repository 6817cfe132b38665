"""Server keys, the intent model (train-intents, classify) and the eval command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from supportgraph.app.cli.common import EXIT_FAILED, EXIT_OK, BadInput, context


def cmd_keys(args: argparse.Namespace) -> int:
    """API keys of the LangGraph server: add (shown once), list, revoke."""
    from supportgraph.app.keys import KeyCommandError, add_key, list_keys, revoke_key
    from supportgraph.app.services import services_for

    db = services_for(context(args).settings).db
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
    from supportgraph.app.services import shared_weights
    from supportgraph.models.encoders import Encoders
    from supportgraph.models.intent import TrainingDataError, train_from_files

    for path in (args.data, args.routes, *([args.oos_data] if args.oos_data else [])):
        if not Path(path).is_file():
            raise BadInput(f"no such file: {path}")
    try:
        report = train_from_files(Path(args.data), Path(args.routes), Path(args.out),
                                  encoders=Encoders(shared_weights()),
                                  oos_data=Path(args.oos_data) if args.oos_data else None)
    except TrainingDataError as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(report, indent=2, default=str))
    return EXIT_OK


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify a JSONL file of texts with a trained model directory."""
    from supportgraph.app.services import shared_weights
    from supportgraph.models.encoders import Encoders
    from supportgraph.models.intent import classify_file

    if not Path(args.input).is_file():
        raise BadInput(f"no such file: {args.input}")
    try:
        counts = classify_file(Path(args.model), Path(args.input), Path(args.output),
                               encoders=Encoders(shared_weights()))
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
