"""`supportgraph prune`: closed tickets shrink to one checkpoint; open ones are never touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.prune import PruneError, checkpoint_usage, parse_before, prune_closed
from app.runner import Runner
from graph.context import Context

SENT = [
    {"id": "pr-1", "channel": "chat", "body": "How do I rotate my live API key without downtime?"},
    {"id": "pr-2", "channel": "chat",
     "body": "What does a 429 response mean and how long should I wait before retrying?"},
]
WAITING = {"id": "pr-3", "channel": "chat", "body": "Tell me a joke about penguins."}


def checkpoints_of(runner: Runner, thread_id: str) -> int:
    row = runner.db.fetchone("SELECT count(*) AS n FROM checkpoints WHERE thread_id = :t",
                             {"t": thread_id})
    return int(row["n"])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def runner(request: pytest.FixtureRequest, demo_home: Path,
           monkeypatch: pytest.MonkeyPatch) -> Runner:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    if url:
        monkeypatch.setenv("DATABASE_URL", url)  # for the CLI calls below
    return Runner(Context(home=str(demo_home), database_url=url))


def test_prune_keeps_open_tickets_and_cuts_closed_ones_to_one_checkpoint(
        runner: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    sent = [runner.run(t) for t in SENT]
    waiting = runner.run(WAITING)
    assert [o.summary["status"] for o in sent] == ["sent", "sent"]
    assert waiting.summary["status"] == "awaiting_review"
    waiting_before = checkpoints_of(runner, waiting.thread_id)
    assert all(checkpoints_of(runner, o.thread_id) > 5 for o in sent)

    # A run whose summary row says closed but whose graph still has work (a worker killed
    # between the audit step's write and its checkpoint) is not closed: it stays whole.
    unfinished = {"id": "pr-4", "channel": "chat", "body": SENT[0]["body"]}
    thread = f"ticket:{unfinished['id']}"
    runner.graph.invoke({"ticket": unfinished}, {"configurable": {"thread_id": thread}},
                        context=runner.ctx, durability="sync", interrupt_after=["classify"])
    runner.db.execute("INSERT INTO sg_runs (thread_id, ticket_id, status, summary, created_at, "
                      "updated_at) VALUES (:t, 'pr-4', 'failed', '{}', '2000-01-01', "
                      "'2000-01-01')", {"t": thread})
    unfinished_before = checkpoints_of(runner, thread)

    dry = prune_closed(runner, dry_run=True)
    assert (dry.pruned, dry.deleted_rows, dry.rows_after) == (2, 0, dry.rows_before)
    assert dry.skipped == {"processing": 1}

    report = prune_closed(runner)
    assert report.pruned == 2 and report.skipped == {"processing": 1}
    assert report.rows_after < report.rows_before and report.bytes_after < report.bytes_before
    assert report.deleted_rows > 0
    assert checkpoint_usage(runner.db)["rows"] == report.rows_after
    for outcome in sent:
        assert checkpoints_of(runner, outcome.thread_id) == 1
        # The final state is still readable, the summary too, and a re-run is refused.
        snapshot = runner.graph.get_state({"configurable": {"thread_id": outcome.thread_id}})
        assert snapshot.values["status"] == "sent" and not snapshot.next
        assert snapshot.values["drafts"] and snapshot.values["final_reply"]
        assert runner.summary(outcome.thread_id)["status"] == "sent"
    again = runner.run(SENT[0])
    assert again.note.startswith("already processed")
    assert again.summary == sent[0].summary
    assert checkpoints_of(runner, waiting.thread_id) == waiting_before
    assert checkpoints_of(runner, thread) == unfinished_before
    assert main(["audit", "show", "pr-1", "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    assert trail["runs"][0]["status"] == "sent" and len(trail["events"]) >= 8

    # Idempotent: nothing left to do, nothing changes.
    second = prune_closed(runner)
    assert (second.pruned, second.already_minimal, second.deleted_rows) == (0, 2, 0)
    assert second.rows_after == report.rows_after

    # The waiting ticket is still a working review: deciding it finishes the run.
    done = runner.decide(waiting.thread_id, {"type": "ignore", "args": "not a product question"})
    assert done.summary["status"] == "rejected"
    third = prune_closed(runner)
    assert third.pruned == 1 and checkpoints_of(runner, waiting.thread_id) == 1


def test_prune_before_date_and_cli_output(runner: Runner,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    outcome = runner.run(SENT[0])
    before = checkpoints_of(runner, outcome.thread_id)
    assert main(["prune", "--before", "2000-01-01", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["candidates"], report["pruned"]) == (0, 0)
    assert checkpoints_of(runner, outcome.thread_id) == before

    assert main(["prune", "--dry-run"]) == 0
    assert "would prune 1 of 1" in capsys.readouterr().out
    assert checkpoints_of(runner, outcome.thread_id) == before

    assert main(["prune", "--before", "2999-12-31T00:00:00Z"]) == 0
    assert capsys.readouterr().out.startswith("pruned 1 of 1")
    assert checkpoints_of(runner, outcome.thread_id) == 1


@pytest.mark.parametrize("bad", ["yesterday", "", "2026-13-45", "2026-01-01T25:00", "9" * 500])
def test_prune_rejects_a_bad_date_with_exit_2(bad: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "--before", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("supportgraph: --before") and "\n" not in err


def test_parse_before_accepts_dates_and_times() -> None:
    assert parse_before("2026-01-31").isoformat() == "2026-01-31T00:00:00+00:00"
    assert parse_before("2026-01-31T10:30:00Z").isoformat() == "2026-01-31T10:30:00+00:00"
    assert parse_before("2026-01-31T10:30:00+02:00").utcoffset().total_seconds() == 7200
    with pytest.raises(PruneError):
        parse_before("31/01/2026")
