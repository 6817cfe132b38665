"""Chaos-suite helpers: worker processes we can watch and kill, and checks of totals.

Every wait here is on an event (a line a process printed, a process exiting), never a sleep.
Local Qdrant allows one process per folder, so processes sharing a home run one after another.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg

DEMO_TICKETS = Path(__file__).resolve().parents[2] / "evals" / "datasets" / "demo_tickets.jsonl"
TERMINAL = {"sent", "awaiting_review", "rejected", "stalled", "failed"}


def demo_tickets(n: int, prefix: str) -> list[dict]:
    """`n` tickets with fresh ids, cycling through the recorded demo ticket texts."""
    demo = [json.loads(line) for line in DEMO_TICKETS.read_text(encoding="utf-8").splitlines()]
    return [{"id": f"{prefix}-{i:05d}", "channel": "chat", "body": demo[i % len(demo)]["body"],
             "tenant": demo[i % len(demo)].get("tenant")} for i in range(n)]


def write_jsonl(path: Path, tickets: list[dict]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in tickets), encoding="utf-8")
    return path


class Proc:
    """A `supportgraph` subprocess whose output lines are collected as they arrive."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen([sys.executable, "-m", "supportgraph", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s, d), daemon=True)
                         for s, d in ((self.popen.stdout, self.out),
                                      (self.popen.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, sink: list[str]) -> None:
        for line in stream:
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        with self._cond:
            sink.append("")  # EOF marker: wakes waiters when the process ends
            self._cond.notify_all()

    def steps(self) -> int:
        """Workflow steps completed so far (from `-v` step events)."""
        return sum('"event": "step"' in line for line in list(self.err))

    def summaries(self) -> list[dict]:
        """Run summaries printed so far (`--json`)."""
        return [json.loads(line) for line in list(self.out) if line.startswith("{")]

    def wait_until(self, predicate: Callable[[Proc], bool], timeout: float = 300) -> bool:
        """Block until `predicate` holds or the process has ended; True if it holds."""
        def ready() -> bool:
            return predicate(self) or ("" in self.out and "" in self.err)

        with self._cond:
            self._cond.wait_for(ready, timeout)
        return predicate(self)

    def finish(self, timeout: float = 600) -> int:
        """Wait for the exit status (and all output)."""
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def kill(self) -> None:
        """SIGKILL, then reap (a dead worker must not linger as a zombie holding a pid)."""
        self.popen.kill()
        self.finish()

    def stderr(self) -> str:
        return "".join(self.err)[-4000:]


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def assert_each_ticket_once(url: str, ticket_ids: set[str]) -> Counter:
    """Every ticket in exactly one terminal state, sent at most once, audited to the end once.

    Returns the count of tickets per terminal state.
    """
    runs = rows(url, "SELECT ticket_id, status, summary FROM sg_runs")
    seen = Counter(t for t, _, _ in runs)
    assert seen == Counter(ticket_ids), (
        f"lost: {sorted(ticket_ids - set(seen))[:20]}; "
        f"doubled or unknown: {[(t, n) for t, n in seen.items() if n > 1 or t not in ticket_ids]}"
        f"; {rows(url, 'SELECT thread_id, status FROM sg_runs ORDER BY updated_at DESC LIMIT 5')}")
    states = Counter(status for _, status, _ in runs)
    assert set(states) <= TERMINAL, states
    for _, _, summary in runs:
        failures = " ".join(json.loads(summary).get("failures") or [])
        assert "OperationalError" not in failures and "PoolTimeout" not in failures, failures
    outbox = rows(url, "SELECT ticket_id, count(*) FROM sg_outbox GROUP BY ticket_id")
    assert all(n == 1 for _, n in outbox), "a reply was sent twice"
    assert {t for t, _ in outbox} == {t for t, s, _ in runs if s == "sent"}
    finals = rows(url, "SELECT ticket_id, count(*) FROM sg_audit WHERE step = 'audit' "
                       "GROUP BY ticket_id")
    assert all(n == 1 for _, n in finals), "a final audit row was written twice"
    assert {t for t, _ in finals} == {t for t, s, _ in runs if s != "awaiting_review"}
    assert rows(url, "SELECT count(*) FROM sg_leases") == [(0,)], "a lease was left behind"
    return states


def assert_no_duplicate_cases(home: Path, ticket_ids: set[str]) -> int:
    """Each ticket is held by at most one point of `resolved_cases`; returns the point count."""
    from retrieval.store import open_store

    store = open_store(home=home)
    try:
        rows = store.scroll_payloads("resolved_cases")
    finally:
        store.close()
    points = [payload for _, payload in rows]
    holders = Counter(t for p in points for t in p.get("ticket_ids") or [])
    assert all(n == 1 for n in holders.values()), "a ticket is in two resolved cases"
    assert set(holders) <= ticket_ids
    assert len({pid for pid, _ in rows}) == len(rows)
    return len(points)
