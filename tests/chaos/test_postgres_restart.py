"""Postgres restarted in the middle of a batch: the pool reconnects, runs retry or resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos_support import assert_each_ticket_once, demo_tickets, rows, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_postgres_restart_mid_batch_loses_and_doubles_nothing(
    spawn, own_pg, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(own_pg.dsn(), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "chaos"')
    url = own_pg.dsn("chaos")
    tickets = demo_tickets(30, "pg")
    path = write_jsonl(tmp_path / "tickets.jsonl", tickets)

    worker = spawn("-v", "run", "--input", str(path), "--json", "--concurrency", "4",
                   database_url=url)
    assert worker.wait_until(lambda p: len(p.summaries()) >= 3), worker.stderr()
    done_before = len(worker.summaries())
    own_pg.restart()  # fast mode: every open connection is cut mid-whatever
    assert worker.finish() == 0, worker.stderr()
    assert done_before < 30, "the batch ended before the restart; it proved nothing"
    summaries = worker.summaries()
    assert sorted(s["ticket_id"] for s in summaries) == sorted(t["id"] for t in tickets)
    states = assert_each_ticket_once(url, {t["id"] for t in tickets})
    assert sum(states.values()) == 30
    # The restart really cut this worker's open connections mid-batch.
    log = own_pg.log_file.read_text(errors="replace")
    assert "terminating connection due to administrator command" in log
    assert rows(url, "SELECT 1") == [(1,)]
