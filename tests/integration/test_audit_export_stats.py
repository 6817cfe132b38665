"""`audit export` turns recorded runs into an eval dataset; `stats` adds them up correctly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graph.context import Context
from graph.persistence import open_database
from supportgraph.app.audit_export import GOLD_FIELDS, gold_outcome
from supportgraph.app.cli import main
from supportgraph.app.runner import Runner
from supportgraph.app.settings import Settings
from supportgraph.app.stats import compute_stats, percentile
from supportgraph.app.timerange import RangeError, parse_range

ANSWERABLE = "What does a 429 response mean and how long should I wait before retrying?"
OOS = "Can you recommend a good recipe for banana bread?"
PII_BODY = ("How do I rotate my live API key without downtime? Reach me at "
            "jane.doe@example.com")


def _run_known_set(home: Path) -> None:
    runner = Runner(Context().with_settings(Settings(home=str(home))))
    strict = Runner(Context(confidence_threshold=0.9999).with_settings(Settings(home=str(home))))
    assert runner.run({"id": "e-1", "channel": "chat", "body": ANSWERABLE}) \
        .summary["status"] == "sent"
    for tid in ("e-2", "e-3", "e-4"):
        assert runner.run({"id": tid, "channel": "chat", "body": OOS}) \
            .summary["status"] == "awaiting_review"
    runner.decide("ticket:default:e-2",
                  {"type": "edit", "args": {"reply": "A colleague will help."}, "reviewer": "sam"})
    runner.decide("ticket:default:e-3", {"type": "ignore", "args": "spam", "reviewer": "sam"})
    waiting = strict.run({"id": "e-5", "channel": "email", "subject": "Keys",
                          "tenant": "acme", "body": PII_BODY})
    assert waiting.summary["status"] == "awaiting_review"
    accepted = strict.decide(waiting.thread_id, {"type": "accept", "reviewer": "kim"})
    assert accepted.summary["status"] == "sent"


def test_export_is_an_eval_dataset_with_outcomes_from_what_happened(
    demo_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _run_known_set(demo_home)
    out = tmp_path / "out" / "recorded.jsonl"
    today = datetime.now(UTC).date().isoformat()
    assert main(["audit", "export", "--since", today, "--out", str(out)]) == 0
    records = {r["id"]: r for r in map(json.loads, out.read_text("utf-8").splitlines())}
    assert {"e-1", "e-2", "e-3", "e-4", "e-5"} <= set(records)
    for record in records.values():
        assert {"id", "channel", "body", *GOLD_FIELDS} <= set(record)
        assert record["channel"] in ("chat", "email") and record["body"].strip()
        assert record["expected_outcome"] in ("sent", "human")
        assert record["expected_route"] in ("billing", "technical", "human")
        assert isinstance(record["expected_intent"], str) and record["expected_intent"]
        assert isinstance(record["reference_answer"], str)

    outbox = {r["ticket_id"]: r["reply"] for r in Runner(Context()
                                                         .with_settings(Settings(home=str(demo_home)))).db
              .fetchall("SELECT ticket_id, reply FROM sg_outbox")}
    auto = records["e-1"]
    assert (auto["expected_outcome"], auto["expected_route"]) == ("sent", "technical")
    assert auto["reference_answer"] == outbox["e-1"] and auto["body"] == ANSWERABLE
    assert auto["recorded"]["status"] == "sent" and auto["recorded"]["review_decision"] is None
    edited = records["e-2"]
    assert edited["expected_outcome"] == "human"
    assert edited["reference_answer"] == "A colleague will help."
    assert edited["recorded"]["review_decision"] == "edit"
    assert (records["e-3"]["expected_outcome"], records["e-3"]["reference_answer"]) == (
        "human", "")
    assert records["e-3"]["recorded"]["status"] == "rejected"
    assert records["e-4"]["recorded"]["status"] == "awaiting_review"
    assert records["e-4"]["expected_outcome"] == "human"
    # Accepted exactly as drafted: the machine's reply was right, so `sent`.
    accepted = records["e-5"]
    assert accepted["expected_outcome"] == "sent"
    assert (accepted["tenant"], accepted["subject"]) == ("acme", "Keys")
    assert accepted["recorded"]["review_reason"] == "low_answer_confidence"
    # The eval runner reads it as a dataset (the `recorded` object is extra, ignored there).
    from evals.dataset import load_dataset

    assert {t.id for t in load_dataset(out)} == set(records)
    # Only redacted text leaves the database.
    assert "jane.doe@example.com" not in out.read_text("utf-8")
    assert "[EMAIL:" in accepted["body"]

    later = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    out2 = tmp_path / "empty.jsonl"
    assert main(["audit", "export", "--since", later, "--out", str(out2)]) == 0
    assert out2.read_text("utf-8") == ""
    assert "wrote 0 tickets" in capsys.readouterr().out


@pytest.mark.parametrize(("status", "decision", "expected"), [
    ("sent", None, "sent"), ("sent", {"type": "accept"}, "sent"),
    ("sent", {"type": "edit"}, "human"), ("rejected", {"type": "ignore"}, "human"),
    ("awaiting_review", None, "human"), ("stalled", {"type": "stalled"}, "human"),
    ("failed", None, "human"),
])
def test_gold_outcome_rule(status: str, decision: dict | None, expected: str) -> None:
    assert gold_outcome(status, decision) == expected


@pytest.mark.parametrize("argv", [
    ["audit", "export", "--since", "yesterday", "--out", "x.jsonl"],
    ["audit", "export", "--since", "", "--out", "x.jsonl"],
    ["audit", "export", "--since", "2026-02-30", "--out", "x.jsonl"],
    ["audit", "export", "--since", "2026-05-02", "--until", "2026-05-01", "--out", "x.jsonl"],
    ["stats", "--since", "9" * 500],
    ["stats", "--until", "not a date"],
])
def test_bad_dates_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("supportgraph: ") and err.count("\n") == 1


def test_export_out_must_be_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit", "export", "--since", "2026-01-01", "--out", str(tmp_path)]) == 2
    assert "must be a file" in capsys.readouterr().err
    (tmp_path / "plain").write_text("x")
    assert main(["audit", "export", "--since", "2026-01-01",
                 "--out", str(tmp_path / "plain" / "x.jsonl")]) == 2
    assert capsys.readouterr().err.startswith("supportgraph: cannot write ")


def _seed(db, thread: str, status: str, day: str, steps: list[tuple[str, float, float]],
          queue: str | None = None) -> None:
    created = f"{day}T10:00:00.000000+00:00"
    db.execute("INSERT INTO sg_runs (thread_id, ticket_id, status, summary, created_at, "
               "updated_at) VALUES (:t, :t, :s, '{}', :c, :c)",
               {"t": thread, "s": status, "c": created})
    for i, (step, ms, cost) in enumerate(steps):
        db.execute("INSERT INTO sg_audit (event_key, ticket_id, thread_id, step, attempt, "
                   "started_at, duration_ms, outcome, cost_usd) VALUES (:k, :t, :t, :step, 1, "
                   ":c, :ms, 'ok', :cost)",
                   {"k": f"{thread}:{i}", "t": thread, "step": step, "c": created, "ms": ms,
                    "cost": cost})
    if queue:
        db.execute("INSERT INTO sg_reviews (thread_id, ticket_id, reason, queue, status, "
                   "requested_at, deadline_at) VALUES (:t, :t, 'low_confidence', :q, "
                   "'waiting', :c, :c)", {"t": thread, "q": queue, "c": created})


def test_stats_match_a_known_ticket_set(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_database(None, tmp_path / "stats_home")
    # Ten tickets on 2026-03-01 (classify 1..10 ms, $0.01 each), two on 03-02, one on 03-05.
    for i in range(1, 11):
        status = "sent" if i <= 6 else ("awaiting_review" if i <= 8 else "rejected")
        _seed(db, f"a{i}", status, "2026-03-01",
              [("intake", 1.0, 0.0), ("classify", float(i), 0.01)],
              queue="agent" if i > 6 else None)
    _seed(db, "b1", "stalled", "2026-03-02", [("classify", 100.0, 0.5)], queue="supervisor")
    _seed(db, "b2", "failed", "2026-03-02", [("classify", 50.0, 0.25)])
    _seed(db, "c1", "sent", "2026-03-05", [("classify", 1000.0, 9.0)])

    stats = compute_stats(db, parse_range("2026-03-01", "2026-03-02"))
    assert stats["tickets"] == 12
    assert stats["by_state"] == {"sent": 6, "awaiting_review": 2, "rejected": 2, "stalled": 1,
                                 "failed": 1}
    assert stats["escalated"] == 5 and stats["supervisor_escalations"] == 1
    assert stats["escalation_rate"] == round(5 / 12, 6)
    assert stats["cost_total_usd"] == pytest.approx(0.1 + 0.75)
    assert stats["cost_per_ticket_usd"] == pytest.approx(0.85 / 12)
    assert stats["per_day"] == {"2026-03-01": {"tickets": 10, "cost_usd": pytest.approx(0.1)},
                                "2026-03-02": {"tickets": 2, "cost_usd": 0.75}}
    # classify durations: 1..10, 50, 100 -> nearest rank p50 = 6th value, p95 = 12th value.
    assert stats["latency_ms"]["classify"] == {"n": 12, "p50": 6.0, "p95": 100.0}
    assert stats["latency_ms"]["intake"] == {"n": 10, "p50": 1.0, "p95": 1.0}

    only_first = compute_stats(db, parse_range("2026-03-01", "2026-03-01"))
    assert only_first["tickets"] == 10 and only_first["escalation_rate"] == 0.4
    empty = compute_stats(db, parse_range("2027-01-01", None))
    assert empty["tickets"] == 0 and empty["latency_ms"] == {} and empty["cost_per_ticket_usd"] == 0

    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(tmp_path / "stats_home"))
    assert main(["stats", "--since", "2026-03-02", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tickets"] == 3 and printed["by_state"]["stalled"] == 1
    assert main(["stats"]) == 0
    text = capsys.readouterr().out
    assert "tickets 13" in text and "escalation rate 38.5%" in text


def test_percentile_and_range_edges() -> None:
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    with pytest.raises(ValueError):
        percentile([], 50)
    span = parse_range("2026-03-01", "2026-03-01")
    assert span.contains("2026-03-01T23:59:59.999999+00:00")
    assert not span.contains("2026-03-02T00:00:00.000000+00:00")
    with pytest.raises(RangeError):
        parse_range("2026-03-01T12:00:00", "2026-03-01T11:00:00")
