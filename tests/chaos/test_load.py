"""1,000 tickets through the offline workflow on Postgres: the terminal states add up exactly.

The 10,000-ticket run is a benchmark: `python -m benchmarks.load --tickets 10000`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
from chaos_support import TERMINAL, demo_tickets, rows

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(3600)]

# CI's figure; the long run is `python -m benchmarks.load --tickets 10000`.
TICKETS = int(os.environ.get("SUPPORTGRAPH_CHAOS_LOAD_TICKETS", "1000"))
CONCURRENCY = 8


def test_load_tickets_all_accounted_for(
    demo_home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graph.context import Context
    from supportgraph.app.runner import Runner
    from supportgraph.app.worker import Worker

    monkeypatch.setenv("DATABASE_URL", pg_url)
    tickets = demo_tickets(TICKETS, "load")
    runner = Runner(Context())
    outcomes: Counter = Counter()
    worker = Worker(runner, concurrency=CONCURRENCY,
                    on_outcome=lambda o: outcomes.update([o.summary["status"]]))
    started = time.monotonic()
    report = worker.run(enumerate(tickets, start=1))
    seconds = time.monotonic() - started
    assert report.exit_status() == 0, report.line()
    assert len(report.finished) == TICKETS and not report.left and not report.errors
    assert sum(outcomes.values()) == TICKETS and set(outcomes) <= TERMINAL, outcomes
    states = Counter(dict(rows(pg_url, "SELECT status, count(*) FROM sg_runs GROUP BY status")))
    assert states == outcomes and sum(states.values()) == TICKETS, (states, outcomes)
    assert rows(pg_url, "SELECT count(DISTINCT ticket_id) FROM sg_runs") == [(TICKETS,)]
    sent = rows(pg_url, "SELECT count(*), count(DISTINCT ticket_id) FROM sg_outbox")
    assert sent == [(states["sent"], states["sent"])]
    print(f"\n{TICKETS} tickets at concurrency {CONCURRENCY}: {dict(states)} in {seconds:.0f} s "
          f"({TICKETS / seconds:.1f} tickets/s, load {os.getloadavg()[0]:.1f})")
