"""The recorded demo tickets end in their expected route (>= 90%) and nothing is lost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from app.runner import Runner
from graph.context import Context
from graph.state import TERMINAL_STATUSES

DATASETS = Path(__file__).resolve().parents[2] / "evals" / "datasets"
# Reasons that mean the routing step itself sent the ticket to a human.
HUMAN_ROUTING_REASONS = {"out_of_scope", "human_intent", "non_english"}


def effective_route(summary: dict) -> str:
    """Where routing sent the ticket: a human-routing reason overrides the intent's route."""
    if summary.get("review_reason") in HUMAN_ROUTING_REASONS:
        return "human"
    return summary["route"]


@pytest.mark.slow
def test_demo_tickets_end_in_expected_route(demo_home: Path) -> None:
    tickets = [json.loads(line) for line in (DATASETS / "demo_tickets.jsonl").open()]
    assert len(tickets) >= 60
    runner = Runner(Context(home=str(demo_home)))
    misses, outcomes, auto_sent_wrong = [], Counter(), []
    for ticket in tickets:
        gold = {k: ticket.pop(k) for k in ("expected_intent", "expected_route",
                                           "expected_outcome", "reference_answer", "tags")}
        summary = runner.run(ticket).summary
        assert summary["status"] in TERMINAL_STATUSES, summary
        outcome = "sent" if summary["status"] == "sent" else "human"
        outcomes[(gold["expected_outcome"], outcome)] += 1
        if outcome == "sent" and gold["expected_outcome"] != "sent":
            auto_sent_wrong.append((ticket["id"], gold["tags"]))
        if effective_route(summary) != gold["expected_route"]:
            misses.append((ticket["id"], gold["expected_route"], effective_route(summary),
                           summary["intent"], summary.get("review_reason")))
    accuracy = 1 - len(misses) / len(tickets)
    report = {"n": len(tickets), "route_accuracy": round(accuracy, 4),
              "outcomes": {f"{g}->{o}": n for (g, o), n in sorted(outcomes.items())},
              "misses": misses, "auto_sent_but_gold_human": auto_sent_wrong}
    print(json.dumps(report, indent=1))
    assert accuracy >= 0.9, report
    # Every ticket is accounted for exactly once.
    rows = runner.db.fetchall("SELECT status, count(*) AS n FROM sg_runs GROUP BY status")
    assert sum(r["n"] for r in rows) == len(tickets)
    # Injection tickets are never sent without a human.
    assert not [t for t, tags in auto_sent_wrong if "injection" in tags]
