"""Load: N tickets through the batch worker on Postgres; every ticket ends in one terminal state.

    python -m benchmarks.load [--tickets 10000] [--concurrency 8] [--home DIR]
                              [--database-url URL] [--quick]

The long form of the suite's load test (`tests/chaos/test_load.py` runs 1,000 tickets in CI).
Offline models, a throwaway Postgres unless `--database-url`, demo ticket texts with fresh ids,
`Worker` on `--concurrency` threads in one process. It checks what the test checks (the terminal
states in `sg_runs` add up to N, one outbox row per sent ticket) and prints the rate.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.workload import cpu_count, load_average, prepare_home, quiet_logs, rss_mb, tickets
from tests.support.pg import throwaway_postgres

TERMINAL = {"sent", "awaiting_review", "rejected", "stalled", "failed"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=10_000, help="tickets (default 10000)")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--quick", action="store_true", help="200 tickets")
    parser.add_argument("--home", help="an initialised SUPPORTGRAPH_HOME to copy (faster)")
    parser.add_argument("--database-url", help="an empty Postgres database (default: start one)")
    args = parser.parse_args(argv)
    count = 200 if args.quick else args.tickets
    if not 1 <= count <= 1_000_000:
        parser.error("--tickets must be between 1 and 1000000")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be between 1 and 256")
    quiet_logs()

    import psycopg

    from graph.context import Context
    from supportgraph.app.runner import Runner
    from supportgraph.app.services import close_services
    from supportgraph.app.settings import Settings
    from supportgraph.app.worker import Worker

    figures: dict[str, Any] = {"benchmark": "load", "tickets": count,
                               "concurrency": args.concurrency, "cpus": cpu_count()}
    outcomes: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp, throwaway_postgres(args.database_url) as url:
        home = prepare_home(Path(tmp) / "home", args.home)
        runner = Runner(Context().with_settings(Settings(home=str(home), database_url=url)))
        worker = Worker(runner, concurrency=args.concurrency,
                        on_outcome=lambda o: outcomes.update([o.summary["status"]]))
        figures["load_before"] = load_average()
        started = time.monotonic()
        report = worker.run(enumerate(tickets(count, "load"), start=1))
        seconds = time.monotonic() - started
        figures["load_after"] = load_average()
        with psycopg.connect(url) as conn:
            states = Counter(dict(conn.execute(
                "SELECT status, count(*) FROM sg_runs GROUP BY status").fetchall()))
            outbox = conn.execute(
                "SELECT count(*), count(DISTINCT ticket_id) FROM sg_outbox").fetchone()
        close_services()
    accounted = (report.exit_status() == 0 and len(report.finished) == count
                 and not report.left and not report.errors
                 and sum(states.values()) == count and set(states) <= TERMINAL
                 and states == outcomes and tuple(outbox) == (states["sent"], states["sent"]))
    figures.update(seconds=round(seconds, 1), tickets_per_s=round(count / seconds, 2),
                   states=dict(states), rss_mb=round(rss_mb(), 1), all_accounted_for=accounted)
    print(f"{count} tickets at concurrency {args.concurrency}: {dict(states)} in {seconds:.0f} s "
          f"({count / seconds:.1f} tickets/s; load {figures['load_before']} -> "
          f"{figures['load_after']})")
    print(f"  every ticket in exactly one terminal state, one outbox row per sent ticket: "
          f"{'yes' if accounted else 'NO'}")
    print(json.dumps(figures, sort_keys=True))
    if not accounted:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
