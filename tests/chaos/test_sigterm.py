"""SIGTERM during a batch: no new tickets, in-flight runs drain within the bound, rest later."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from chaos_support import assert_each_ticket_once, demo_tickets, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DRAIN_BOUND_S = 60.0


def test_sigterm_drains_in_flight_then_a_new_worker_completes_the_batch(
    spawn, pg_url: str, tmp_path: Path
) -> None:
    tickets = demo_tickets(40, "term")
    path = write_jsonl(tmp_path / "tickets.jsonl", tickets)
    run = ("run", "--input", str(path), "--json", "--concurrency", "4")

    # 1. A graceful stop: runs in flight finish, nothing new starts, exit 3 within the bound.
    first = spawn("-v", *run, "--drain-seconds", str(DRAIN_BOUND_S), database_url=pg_url)
    assert first.wait_until(lambda p: len(p.summaries()) >= 3), first.stderr()
    first.popen.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    assert first.finish() == 3, first.stderr()
    assert time.monotonic() - sent_at < DRAIN_BOUND_S
    done_first = {s["ticket_id"] for s in first.summaries()}
    batch = [line for line in first.err if line.startswith("batch:")]
    assert batch and "stopped by SIGTERM" in batch[0], first.stderr()
    assert f"{len(done_first)} finished" in batch[0]
    assert f"{40 - len(done_first)} left (0 abandoned" in batch[0]
    assert all(s["status"] != "processing" for s in first.summaries())

    # 2. A stop with no drain time: runs in flight are abandoned at their last checkpoint.
    second = spawn("-v", *run, "--drain-seconds", "0", database_url=pg_url)
    before = second.steps()
    assert second.wait_until(lambda p: p.steps() >= before + 3), second.stderr()
    second.popen.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    assert second.finish() == 3, second.stderr()
    assert time.monotonic() - sent_at < 10
    assert any("stopped by SIGTERM" in line for line in second.err), second.stderr()

    # 3. A new worker completes the rest; finished tickets are reported, not run again.
    third = spawn(*run, database_url=pg_url)
    assert third.finish() == 0, third.stderr()
    summaries = third.summaries()
    assert sorted(s["ticket_id"] for s in summaries) == sorted(t["id"] for t in tickets)
    states = assert_each_ticket_once(pg_url, {t["id"] for t in tickets})
    assert sum(states.values()) == 40
