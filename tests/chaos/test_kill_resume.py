"""100 tickets; the worker is SIGKILLed at seeded random points; new processes finish it.

The suite kills 10 times (two of them during `recover`), which keeps CI inside its 15 minutes;
`CHAOS_KILLS=20 python -m pytest tests/chaos/test_kill_resume.py` runs the longer version.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from chaos_support import (
    assert_each_ticket_once,
    assert_no_duplicate_cases,
    demo_tickets,
    write_jsonl,
)

# ~KILLS + 2 process starts (each loads the models): minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1800)]

KILLS = int(os.environ.get("CHAOS_KILLS", "10"))
SEED = 20261125


def test_repeated_sigkills_lose_nothing_and_double_nothing(
    spawn, chaos_home: Path, pg_url: str, tmp_path: Path
) -> None:
    tickets = demo_tickets(100, "kill")
    path = write_jsonl(tmp_path / "tickets.jsonl", tickets)
    rng = random.Random(SEED)
    started = time.monotonic()
    completed_before_kill = []
    for kill in range(KILLS):
        if kill % 5 == 4:
            # Every fifth restart is `supportgraph recover` (finishes runs left mid-way),
            # killed too: recovery itself must survive a crash.
            proc = spawn("-v", "recover", "--json", database_url=pg_url)
        else:
            proc = spawn("-v", "run", "--input", str(path), "--json", "--concurrency", "4",
                         database_url=pg_url)
        # A random number of workflow steps into this process's work (up to ~3 tickets).
        target = rng.randint(1, 36)
        reached = proc.wait_until(lambda p, n=target: p.steps() >= n)
        if not reached:  # nothing left to do for this process: it ended by itself
            assert proc.finish() == 0, proc.stderr()
            completed_before_kill.append(None)
            continue
        proc.kill()
        completed_before_kill.append(proc.steps())
    assert sum(n is not None for n in completed_before_kill) >= KILLS - 2, completed_before_kill

    final = spawn("run", "--input", str(path), "--json", "--concurrency", "4",
                  database_url=pg_url)
    assert final.finish() == 0, final.stderr()
    summaries = final.summaries()
    assert sorted(s["ticket_id"] for s in summaries) == sorted(t["id"] for t in tickets)
    again = spawn("recover", database_url=pg_url)
    assert again.finish() == 0, again.stderr()
    assert "recovered 0 thread(s)" in "".join(again.out)

    ids = {t["id"] for t in tickets}
    states = assert_each_ticket_once(pg_url, ids)
    assert sum(states.values()) == 100 and states["sent"] > 0, states
    points = assert_no_duplicate_cases(chaos_home, ids)
    assert 0 < points <= states["sent"]
    print(f"\nchaos kill/resume: {dict(states)}; {points} cases; "
          f"{time.monotonic() - started:.0f} s")


KILL_AFTER_WRITES = """
import os, signal, sys
from supportgraph.app.runner import Runner
from graph.context import Context

runner = Runner(Context())
saver = runner.graph.checkpointer
save_writes = saver.put_writes

def put_writes(config, writes, task_id, task_path=""):
    save_writes(config, writes, task_id, task_path)
    if any(channel == "intent" for channel, _ in writes):
        os.kill(os.getpid(), signal.SIGKILL)  # classify's writes saved, its step not checkpointed

saver.put_writes = put_writes
runner.run({"id": "w-1", "channel": "chat", "body": sys.argv[1]})
raise SystemExit("the kill point was never reached")
"""


def test_killed_after_a_step_saved_its_writes_but_not_its_checkpoint_still_finishes(
    spawn, chaos_home: Path, tmp_path: Path
) -> None:
    import json
    import os
    import signal
    import sqlite3
    import subprocess
    import sys

    body = demo_tickets(1, "w")[0]["body"]
    env = {**os.environ, "SUPPORTGRAPH_HOME": str(chaos_home)}
    child = subprocess.run([sys.executable, "-c", KILL_AFTER_WRITES, body], env=env,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]

    path = write_jsonl(tmp_path / "w.jsonl", [{"id": "w-1", "channel": "chat", "body": body}])
    resumed = spawn("run", "--input", str(path), "--json")
    assert resumed.finish() == 0, resumed.stderr()
    [summary] = resumed.summaries()
    assert summary["status"] in ("sent", "awaiting_review", "rejected", "failed")
    assert summary["intent"], summary  # classify's saved writes were applied, not lost
    with sqlite3.connect(chaos_home / "state.db") as conn:
        steps = [s for (s,) in conn.execute("SELECT step FROM sg_audit WHERE ticket_id = 'w-1'")]
        runs = conn.execute("SELECT status, summary FROM sg_runs").fetchall()
    assert steps.count("classify") == 1, steps  # not run again
    assert [status for status, _ in runs] == [summary["status"]]
    assert json.loads(runs[0][1])["ticket_id"] == "w-1"
