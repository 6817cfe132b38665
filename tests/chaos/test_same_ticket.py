"""The same ticket submitted twice at once: one run proceeds, the other is rejected."""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import pytest
from chaos_support import rows

from graph.context import Context
from graph.persistence import open_database
from supportgraph.app.leases import Leases, ThreadBusy
from supportgraph.app.runner import Runner

ANSWERABLE = "What does a 429 response mean and how long should I wait before retrying?"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_threads_same_ticket_never_interleave(
    demo_home: Path, backend: str, request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "postgres":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("pg_url"))
    runner = Runner(Context())
    busy = 0
    for n in range(4):
        ticket = {"id": f"twice-{n}", "channel": "chat", "body": ANSWERABLE}
        barrier = threading.Barrier(2)
        results: list = []

        def submit(ticket=ticket, barrier=barrier, results=results) -> None:
            barrier.wait()
            try:
                results.append(runner.run(dict(ticket)))
            except ThreadBusy as exc:
                results.append(exc)

        threads = [threading.Thread(target=submit) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        outcomes = [r for r in results if not isinstance(r, ThreadBusy)]
        rejected = [r for r in results if isinstance(r, ThreadBusy)]
        assert len(results) == 2 and outcomes, results
        busy += len(rejected)
        assert all(o.summary["status"] == "sent" for o in outcomes)
        if len(outcomes) == 2:  # the second came after the first had finished
            assert sorted(o.note for o in outcomes)[1] == "already processed; not run again"
        steps = [r["step"] for r in runner.db.fetchall(
            "SELECT step FROM sg_audit WHERE ticket_id = :t", {"t": ticket["id"]})]
        assert steps.count("intake") == 1 and steps.count("send") == 1, steps
        assert runner.db.fetchall("SELECT count(*) AS n FROM sg_outbox WHERE ticket_id = :t",
                                  {"t": ticket["id"]}) == [{"n": 1}]
    assert busy >= 1, "the two submissions never overlapped; the test proved nothing"
    assert runner.db.fetchall("SELECT count(*) AS n FROM sg_leases") == [{"n": 0}]


HOLDER = """
import re
import sys
from supportgraph.app.leases import Leases
from graph.persistence import open_database
from pathlib import Path
db = open_database(sys.argv[1] or None, Path(sys.argv[2]))
Leases(db).acquire(sys.argv[3])
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_another_process_holding_the_ticket_rejects_then_a_dead_holder_is_taken_over(
    spawn, chaos_home: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    import os
    import subprocess

    url = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    thread_id = "ticket:default:dup-1"
    env = {**os.environ, "SUPPORTGRAPH_HOME": str(chaos_home)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(chaos_home), thread_id],
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        blocked = spawn("run", "--text", ANSWERABLE, "--id", "dup-1", database_url=url)
        assert blocked.finish() == 1, blocked.stderr()
        assert "busy" in blocked.stderr() and f"thread {thread_id}" in blocked.stderr()
        assert _count(chaos_home, url, "sg_outbox") == 0
        assert _count(chaos_home, url, "sg_audit") == 0  # not one step ran
    finally:
        holder.kill()  # SIGKILL: its lease stays behind, owned by a dead process
        holder.wait()
    resumed = spawn("run", "--text", ANSWERABLE, "--id", "dup-1", "--json", database_url=url)
    assert resumed.finish() == 0, resumed.stderr()
    assert resumed.summaries()[0]["status"] == "sent"
    assert _count(chaos_home, url, "sg_outbox") == 1
    assert _count(chaos_home, url, "sg_leases") == 0
    recovered = spawn("recover", database_url=url)
    assert recovered.finish() == 0 and "recovered 0 thread(s)" in "".join(recovered.out)


def _count(home: Path, url: str, table: str) -> int:
    if url:
        return rows(url, f"SELECT count(*) FROM {table}")[0][0]
    import sqlite3

    with sqlite3.connect(home / "state.db") as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_lease_rules(tmp_path: Path) -> None:
    db = open_database(None, tmp_path)
    mine, other = Leases(db), Leases(db)
    token = mine.acquire("ticket:a")
    with pytest.raises(ThreadBusy, match="another thread"):
        mine.acquire("ticket:a")  # a second thread of the same process
    with pytest.raises(ThreadBusy, match=re.escape(mine.owner)):
        other.acquire("ticket:a")  # our own pid is alive: not stale
    before = mine.holder("ticket:a")["expires_at"]
    assert mine.renew() == 1 and mine.holder("ticket:a")["expires_at"] >= before
    mine.release("ticket:a", token)
    assert mine.holder("ticket:a") is None

    # A live lease of a process on another machine is respected until it expires.
    far = "elsewhere/pid:[1]:4242:cafe"
    db.execute("INSERT INTO sg_leases VALUES ('ticket:b', :o, 't1', 'x', :exp)",
               {"o": far, "exp": time.time() + 60})
    with pytest.raises(ThreadBusy, match="elsewhere"):
        mine.acquire("ticket:b")
    db.execute("UPDATE sg_leases SET expires_at = :exp WHERE thread_id = 'ticket:b'",
               {"exp": time.time() - 1})
    token = mine.acquire("ticket:b")
    assert mine.holder("ticket:b")["owner"] == mine.owner
    mine.release("ticket:b", token)

    # A lease left by a dead process on this host is taken over at once.
    dead = f"{mine.host}:999999999:dead"
    db.execute("INSERT INTO sg_leases VALUES ('ticket:c', :o, 't2', 'x', :exp)",
               {"o": dead, "exp": time.time() + 60})
    with mine.hold("ticket:c"):
        assert mine.holder("ticket:c")["owner"] == mine.owner
    assert mine.holder("ticket:c") is None


@pytest.mark.parametrize("args", [["--concurrency", "0"], ["--concurrency", "100000"],
                                  ["--drain-seconds", "-1"], ["--drain-seconds", "nan"]])
def test_worker_options_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture,
                                     args: list[str]) -> None:
    from supportgraph.app.cli import main

    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "channel": "chat", "body": "hello there"}\n')
    assert main(["run", "--input", str(path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and args[0] in err[0], err


def test_worker_option_not_a_number(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from supportgraph.app.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--input", str(tmp_path / "t.jsonl"), "--concurrency", "many"])
    assert exit_info.value.code == 2
    assert "--concurrency" in capsys.readouterr().err
