"""`supportgraph prune`: closed tickets shrink to one compact checkpoint; open ones stay whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graph.context import Context
from graph.persistence import CheckpointKeyError
from graph.summary import build_summary
from supportgraph.app.audit_export import exported_records
from supportgraph.app.cli import main
from supportgraph.app.prune import (
    PruneError,
    _compact,
    checkpoint_usage,
    parse_before,
    prune_closed,
)
from supportgraph.app.runner import Runner
from supportgraph.app.settings import Settings
from supportgraph.app.timerange import TimeRange

MAX_BYTES_AFTER = 10_000
"""Issue 9: checkpoint bytes of a closed ticket after prune (benchmarks/storage.py)."""
KEY = "0123456789abcdef0123456789abcdef"

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


def state_of(runner: Runner, thread_id: str) -> Any:
    return runner.graph.get_state({"configurable": {"thread_id": thread_id}})


def everything_read_of_closed(runner: Runner, thread_ids: list[str],
                              capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """All that users read from closed tickets, and the state they read it from.

    Summaries (stored, and rebuilt from the state), `audit show`, `audit export` records, the
    final reply, the last draft, the ticket, the passages and cases but for their texts.
    """
    seen: dict[str, Any] = {"export": [r for r in exported_records(runner, TimeRange(None, None))
                                       if "skipped" not in r]}
    for thread_id in thread_ids:
        values = state_of(runner, thread_id).values
        seen[thread_id] = {
            "summary": runner.summary(thread_id),
            "rebuilt": build_summary(values, thread_id=thread_id, status=values["status"]),
            "kept": {k: values.get(k) for k in (
                "normalized", "final_reply", "status", "intent", "route", "confidence", "tone",
                "flags", "review", "review_reason", "usage", "failures", "rewrites")},
            "last_draft": values["drafts"][-1],
            "passages": [{k: v for k, v in p.items() if k != "text"}
                         for p in values["passages"]],
            "cases": [{k: v for k, v in c.items() if k != "reply"} for c in values["cases"]],
        }
        ticket_id = seen[thread_id]["summary"]["ticket_id"]
        assert main(["audit", "show", ticket_id, "--json"]) == 0
        seen[thread_id]["audit"] = json.loads(capsys.readouterr().out)
    return seen


def assert_compact(runner: Runner, thread_id: str) -> None:
    """One checkpoint of at most 10 KB, heavy texts gone, nothing left to run."""
    usage = checkpoint_usage(runner.db, thread_ids=[thread_id])
    assert usage["checkpoints_rows"] == 1 and usage["bytes"] <= MAX_BYTES_AFTER, usage
    snapshot = state_of(runner, thread_id)
    assert not snapshot.next and not snapshot.tasks and not snapshot.interrupts
    values = snapshot.values
    assert values["passages"] and all(p["text"] == "" and p["doc_id"]
                                      for p in values["passages"])
    assert all(c["reply"] == "" for c in values.get("cases") or [])
    assert all(d["text"] == "" for d in values["drafts"][:-1])
    assert values["drafts"][-1]["text"] and values["final_reply"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def runner(request: pytest.FixtureRequest, demo_home: Path,
           monkeypatch: pytest.MonkeyPatch) -> Runner:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    if url:
        monkeypatch.setenv("DATABASE_URL", url)  # for the CLI calls below
    return Runner(Context().with_settings(Settings(home=str(demo_home), database_url=url)))


def test_prune_keeps_open_tickets_and_cuts_closed_ones_to_one_checkpoint(
        runner: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    sent = [runner.run(t) for t in SENT]
    waiting = runner.run(WAITING)
    assert [o.summary["status"] for o in sent] == ["sent", "sent"]
    assert waiting.summary["status"] == "awaiting_review"
    waiting_before = checkpoints_of(runner, waiting.thread_id)
    waiting_usage = checkpoint_usage(runner.db, thread_ids=[waiting.thread_id])
    waiting_state = state_of(runner, waiting.thread_id)
    waiting_payload = runner.pending_review(waiting.thread_id)
    assert all(checkpoints_of(runner, o.thread_id) > 5 for o in sent)
    sent_ids = [o.thread_id for o in sent]
    read_before = everything_read_of_closed(runner, sent_ids, capsys)
    assert len(read_before["export"]) == 3  # two sent, one waiting
    assert all(checkpoint_usage(runner.db, thread_ids=[t])["bytes"] > MAX_BYTES_AFTER
               for t in sent_ids)  # the target below means something

    # A run whose summary row says closed but whose graph still has work (a worker killed
    # between the audit step's write and its checkpoint) is not closed: it stays whole.
    unfinished = {"id": "pr-4", "channel": "chat", "body": SENT[0]["body"]}
    thread = f"ticket:default:{unfinished['id']}"
    runner.graph.invoke({"ticket": unfinished}, {"configurable": {"thread_id": thread}},
                        context=runner.ctx, durability="sync", interrupt_after=["classify"])
    runner.db.execute("INSERT INTO sg_runs (thread_id, ticket_id, status, summary, created_at, "
                      "updated_at) VALUES (:t, 'pr-4', 'failed', '{}', '2000-01-01', "
                      "'2000-01-01')", {"t": thread})
    unfinished_before = checkpoints_of(runner, thread)
    unfinished_usage = checkpoint_usage(runner.db, thread_ids=[thread])

    dry = prune_closed(runner, dry_run=True)
    assert (dry.pruned, dry.deleted_rows, dry.compacted) == (2, 0, 0)
    assert dry.skipped == {"processing": 1}
    # A dry run deletes nothing, but projects what the real prune frees.
    assert checkpoint_usage(runner.db)["rows"] == dry.rows_before
    assert dry.rows_after < dry.rows_before and dry.bytes_after < dry.bytes_before / 2

    report = prune_closed(runner)
    # The projection counts the older rows deleted; compaction frees some more.
    assert report.bytes_after <= dry.bytes_after
    assert report.rows_after <= dry.rows_after
    assert report.pruned == 2 and report.compacted == 2 and report.skipped == {"processing": 1}
    assert report.rows_after < report.rows_before and report.bytes_after < report.bytes_before
    assert report.deleted_rows > 0
    assert checkpoint_usage(runner.db)["rows"] == report.rows_after
    for outcome in sent:
        assert_compact(runner, outcome.thread_id)
        assert state_of(runner, outcome.thread_id).values["status"] == "sent"
    # Nothing a user reads from a closed ticket changed: summaries (stored, and rebuilt from
    # the pruned state), `audit show`, `audit export`, the reply, the ticket, the citations.
    assert everything_read_of_closed(runner, sent_ids, capsys) == read_before
    again = runner.run(SENT[0])
    assert again.note.startswith("already processed")
    assert again.summary == sent[0].summary
    # Open threads: not a byte changed.
    assert checkpoints_of(runner, waiting.thread_id) == waiting_before
    assert checkpoint_usage(runner.db, thread_ids=[waiting.thread_id]) == waiting_usage
    assert state_of(runner, waiting.thread_id).values == waiting_state.values
    assert runner.pending_review(waiting.thread_id) == waiting_payload
    assert checkpoints_of(runner, thread) == unfinished_before
    assert checkpoint_usage(runner.db, thread_ids=[thread]) == unfinished_usage
    assert main(["audit", "show", "pr-1", "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    assert trail["runs"][0]["status"] == "sent" and len(trail["events"]) >= 8

    # Idempotent: nothing left to do, nothing changes.
    second = prune_closed(runner)
    assert (second.pruned, second.already_minimal, second.deleted_rows) == (0, 2, 0)
    assert second.compacted == 0
    assert (second.rows_after, second.bytes_after) == (report.rows_after, report.bytes_after)

    # The waiting ticket is still a working review: deciding it finishes the run.
    done = runner.decide(waiting.thread_id, {"type": "ignore", "args": "not a product question"})
    assert done.summary["status"] == "rejected"
    third = prune_closed(runner)
    assert third.pruned == 1 and checkpoints_of(runner, waiting.thread_id) == 1
    assert runner.summary(waiting.thread_id) == done.summary
    assert checkpoint_usage(runner.db, thread_ids=[waiting.thread_id])["bytes"] <= MAX_BYTES_AFTER


def test_prune_skips_a_thread_someone_holds_and_finishes_a_half_done_prune(
        runner: Runner) -> None:
    outcome = runner.run(SENT[1])
    before = checkpoint_usage(runner.db, thread_ids=[outcome.thread_id])
    with runner.leases.hold(outcome.thread_id):  # a run, resume or review of this thread
        busy = prune_closed(runner)
    assert (busy.pruned, busy.skipped) == (0, {"busy": 1})
    assert checkpoint_usage(runner.db, thread_ids=[outcome.thread_id]) == before

    # A prune that died after compacting, before deleting: the next one finishes the job.
    assert _compact(runner, state_of(runner, outcome.thread_id)) == 1
    assert checkpoints_of(runner, outcome.thread_id) == before["checkpoints_rows"] + 1
    finish = prune_closed(runner)
    assert (finish.pruned, finish.compacted) == (1, 0) and finish.deleted_rows > 0
    assert_compact(runner, outcome.thread_id)
    assert runner.summary(outcome.thread_id) == outcome.summary


@pytest.mark.parametrize("dialect",
                         ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_prune_compacts_encrypted_checkpoints(
        dialect: str, demo_home: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if dialect == "postgres" else ""
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY)
    ctx = Context().with_settings(Settings(home=str(demo_home), database_url=url))
    runner = Runner(ctx)
    outcome = runner.run(SENT[0])
    assert outcome.summary["status"] == "sent"
    monkeypatch.delenv("LANGGRAPH_AES_KEY")
    with pytest.raises(CheckpointKeyError):  # no key: refused before anything is touched
        prune_closed(Runner(ctx))
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY)
    runner = Runner(ctx)
    report = prune_closed(runner)
    assert (report.pruned, report.compacted) == (1, 1)
    assert_compact(runner, outcome.thread_id)
    assert runner.summary(outcome.thread_id) == outcome.summary
    kinds = runner.db.fetchall("SELECT type FROM checkpoints WHERE thread_id = :t",
                               {"t": outcome.thread_id})
    if dialect == "sqlite":
        assert [k["type"] for k in kinds] == ["msgpack.z+aes"]  # compressed, then encrypted
    else:
        blobs = runner.db.fetchall("SELECT type FROM checkpoint_blobs WHERE thread_id = :t",
                                   {"t": outcome.thread_id})
        assert blobs and all(b["type"].endswith("+aes") or b["type"] == "empty" for b in blobs)


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
