"""Checkpoint storage per resolved ticket, before and after `supportgraph prune`.

    python -m benchmarks.storage [--quick] [--tickets N] [--home DIR] [--database-url URL]

Runs demo tickets (fresh ids) on Postgres (a throwaway server unless `--database-url`) and on
SQLite, then measures the checkpoint tables' rows and stored bytes of the closed tickets'
threads (Postgres: `pg_column_size` of each row of `checkpoints`, `checkpoint_writes`,
`checkpoint_blobs`; SQLite: the lengths of every column of `checkpoints` and `writes`), prunes
closed tickets to one compact final checkpoint, and measures again. Tickets waiting for review
are run too and must come out of the prune untouched (the same rows and bytes in every
checkpoint table). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.workload import load_average, prepare_home, quiet_logs, tickets
from tests.support.pg import throwaway_postgres

TARGET_BEFORE_KB, TARGET_AFTER_KB = 50.0, 10.0


def measure(home: Path, url: str, n: int) -> dict[str, Any]:
    """Run `n` tickets on one database, prune, and return per-closed-ticket figures."""
    from graph.context import Context
    from supportgraph.app.prune import checkpoint_usage, prune_closed
    from supportgraph.app.runner import Runner
    from supportgraph.app.settings import Settings

    runner = Runner(Context().with_settings(Settings(home=str(home), database_url=url)))
    for ticket in tickets(n, f"st-{runner.db.dialect}"):
        runner.run(ticket)
    closed = runner.db.fetchone(
        "SELECT count(*) AS n FROM sg_runs WHERE status IN ('sent', 'rejected', 'stalled', "
        "'failed')")["n"]
    waiting = runner.db.fetchall("SELECT thread_id FROM sg_reviews WHERE status = 'waiting'")
    waiting_ids = [r["thread_id"] for r in waiting]
    waiting_usage = _usage_of(runner, waiting_ids)
    before = checkpoint_usage(runner.db, closed_only=True)
    report = prune_closed(runner)
    after = checkpoint_usage(runner.db, closed_only=True)
    untouched = _usage_of(runner, waiting_ids) == waiting_usage
    per = max(int(closed), 1)
    return {
        "tickets": n, "closed": int(closed), "waiting": len(waiting),
        "waiting_untouched": untouched, "pruned": report.pruned, "compacted": report.compacted,
        "rows_per_ticket_before": round(before["rows"] / per, 2),
        "kb_per_ticket_before": round(before["bytes"] / per / 1000, 2),
        "rows_per_ticket_after": round(after["rows"] / per, 2),
        "kb_per_ticket_after": round(after["bytes"] / per / 1000, 2),
        "detail_before": before, "detail_after": after,
    }


def _usage_of(runner: Any, thread_ids: list[str]) -> dict[str, dict[str, int]]:
    """Rows and bytes per checkpoint table of each thread (a rewrite changes the bytes)."""
    from supportgraph.app.prune import checkpoint_usage

    return {t: checkpoint_usage(runner.db, thread_ids=[t]) for t in thread_ids}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few tickets")
    parser.add_argument("--tickets", type=int, help="tickets per database (default 100)")
    parser.add_argument("--home", help="an initialised SUPPORTGRAPH_HOME to copy (faster)")
    parser.add_argument("--database-url", help="an empty Postgres database (default: start one)")
    args = parser.parse_args(argv)
    n = args.tickets or (12 if args.quick else 100)
    if args.tickets is not None and args.tickets < 1:
        parser.error("--tickets must be >= 1")
    quiet_logs()

    from supportgraph.app.services import close_services

    load_before = load_average()
    figures: dict[str, Any] = {"benchmark": "storage", "quick": args.quick,
                               "target_kb_before": TARGET_BEFORE_KB,
                               "target_kb_after": TARGET_AFTER_KB}
    with tempfile.TemporaryDirectory() as tmp, throwaway_postgres(args.database_url) as url:
        home = prepare_home(Path(tmp) / "home", args.home)
        for dialect, db_url in (("postgres", url), ("sqlite", "")):
            result = measure(home, db_url, n)
            for key, value in result.items():
                figures[f"{dialect}_{key}"] = value
            close_services()
    figures.update(load_before=load_before, load_after=load_average())
    missed = [f"{d} {what}" for d in ("postgres", "sqlite") for what, ok in (
        ("before", figures[f"{d}_kb_per_ticket_before"] <= TARGET_BEFORE_KB),
        ("after", figures[f"{d}_kb_per_ticket_after"] <= TARGET_AFTER_KB),
        ("waiting touched", figures[f"{d}_waiting_untouched"])) if not ok]
    figures["meets_target"] = not missed
    figures["missed"] = missed

    print(f"checkpoint storage per closed ticket ({n} tickets per database; load "
          f"{figures['load_before']} -> {figures['load_after']})")
    for d in ("postgres", "sqlite"):
        print(f"  {d:8s} before prune: {figures[f'{d}_rows_per_ticket_before']:.1f} rows, "
              f"{figures[f'{d}_kb_per_ticket_before']:.1f} KB; after: "
              f"{figures[f'{d}_rows_per_ticket_after']:.1f} rows, "
              f"{figures[f'{d}_kb_per_ticket_after']:.1f} KB "
              f"({figures[f'{d}_closed']} closed, {figures[f'{d}_waiting']} waiting, "
              f"waiting untouched: {figures[f'{d}_waiting_untouched']})")
    print(f"  targets <= {TARGET_BEFORE_KB:.0f} KB before, <= {TARGET_AFTER_KB:.0f} KB after: "
          f"{'met' if not missed else 'MISSED (' + ', '.join(missed) + ')'}")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
