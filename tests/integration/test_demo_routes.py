"""The recorded demo tickets end in their expected route (>= 90%) and nothing is lost.

Runs in the test's own home (not the isolated eval home) so the database can be counted, and
scores with the eval's evaluators so this test and `supportgraph eval` agree on definitions.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evals.dataset import load_dataset
from evals.evaluators import AutoSendPrecision, RouteAccuracy
from evals.run import run_one
from graph.context import Context
from graph.state import TERMINAL_STATUSES
from supportgraph.app.runner import Runner
from supportgraph.app.settings import Settings

DATASETS = Path(__file__).resolve().parents[2] / "evals" / "datasets"


@pytest.mark.slow
def test_demo_tickets_end_in_expected_route(demo_home: Path) -> None:
    tickets = load_dataset(DATASETS / "demo_tickets.jsonl")
    assert len(tickets) >= 60
    runner = Runner(Context().with_settings(Settings(home=str(demo_home))))
    records = [run_one(runner, ticket, "wait") for ticket in tickets]
    for record in records:
        assert record.status in TERMINAL_STATUSES, record
        assert not [f for f in record.failures if f.startswith("eval:")], record
    accuracy = RouteAccuracy().evaluate(records)["route_accuracy"].value
    auto = AutoSendPrecision().evaluate(records)
    misses = [(r.id, r.gold_route, r.route, r.intent, r.review_reason)
              for r in records if r.route != r.gold_route]
    auto_sent_wrong = [(r.id, r.tags) for r in records
                       if r.auto_sent and r.gold_outcome != "sent"]
    outcomes = Counter(f"{r.gold_outcome}->{r.predicted_outcome}" for r in records)
    report = {"n": len(records), "route_accuracy": round(accuracy, 4),
              "auto_send_precision": auto["auto_send_precision"].value,
              "outcomes": dict(sorted(outcomes.items())), "misses": misses,
              "auto_sent_but_gold_human": auto_sent_wrong}
    print(json.dumps(report, indent=1))
    assert accuracy >= 0.9, report
    # Every ticket is accounted for exactly once.
    rows = runner.db.fetchall("SELECT status, count(*) AS n FROM sg_runs GROUP BY status")
    assert sum(r["n"] for r in rows) == len(tickets)
    # Injection tickets are never sent without a human.
    assert not [t for t, tags in auto_sent_wrong if "injection" in tags]
