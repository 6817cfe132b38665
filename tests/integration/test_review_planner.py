"""Review SLAs that never stall silently, and a planner that cannot overspend."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graph.context import Context
from supportgraph.app.runner import AlreadyDecided, Runner
from supportgraph.app.settings import Settings
from tests.support.fake_llm import FakeLLMServer, Reply

OOS = {"id": "r-1", "channel": "chat", "body": "Can you recommend a good banana bread recipe?"}
QUIET = {"escalated": [], "stalled": [], "resolved_outside": []}
"""What a sweep that changes nothing returns."""
ANSWERABLE = {"id": "r-2", "channel": "chat",
              "body": "How do I rotate my live API key without downtime?"}


def test_sla_chain_escalates_once_then_stalls_visibly(demo_home: Path) -> None:
    runner = Runner(Context(review_sla_hours=24, supervisor_sla_hours=8)
                    .with_settings(Settings(home=str(demo_home))))
    thread = runner.run(OOS).thread_id
    start = datetime.now(UTC)

    assert runner.sweep(start + timedelta(hours=23)) == QUIET
    assert runner.sweep(start + timedelta(hours=25)) == {**QUIET, "escalated": [thread]}
    # A second sweep (another cron machine) finds nothing left to escalate.
    assert runner.sweep(start + timedelta(hours=25)) == QUIET
    row = runner.db.fetchone("SELECT queue, status FROM sg_reviews WHERE thread_id = :t",
                             {"t": thread})
    assert row == {"queue": "supervisor", "status": "escalated"}

    assert runner.sweep(start + timedelta(hours=32)) == QUIET
    assert runner.sweep(start + timedelta(hours=34)) == {**QUIET, "stalled": [thread]}
    summary = runner.summary(thread)
    assert summary["status"] == "stalled"
    assert runner.db.fetchone("SELECT status FROM sg_reviews")["status"] == "stalled"
    assert runner.db.fetchall("SELECT 1 FROM sg_outbox") == []
    steps = [r["step"] for r in runner.db.fetchall(
        "SELECT step FROM sg_audit WHERE thread_id = :t ORDER BY started_at", {"t": thread})]
    assert "review_escalated" in steps and "audit" in steps
    with pytest.raises(AlreadyDecided):
        runner.decide(thread, {"type": "edit", "args": {"reply": "too late"}})


def test_escalated_review_can_still_be_decided_by_a_supervisor(demo_home: Path) -> None:
    runner = Runner(Context().with_settings(Settings(home=str(demo_home))))
    thread = runner.run(OOS).thread_id
    runner.sweep(datetime.now(UTC) + timedelta(hours=25))
    done = runner.decide(thread, {"type": "edit", "args": {"reply": "Hello from a supervisor."},
                                  "reviewer": "lead"})
    assert done.summary["status"] == "sent"
    assert runner.sweep(datetime.now(UTC) + timedelta(days=30))["stalled"] == []


def test_concurrent_decisions_apply_once(demo_home: Path) -> None:
    runner = Runner(Context().with_settings(Settings(home=str(demo_home))))
    thread = runner.run(OOS).thread_id
    barrier = threading.Barrier(4)
    results: list[str] = []

    def decide(n: int) -> None:
        barrier.wait()
        try:
            runner.decide(thread, {"type": "edit", "args": {"reply": f"reply {n}"}})
            results.append("applied")
        except AlreadyDecided:
            results.append("already decided")

    workers = [threading.Thread(target=decide, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(results) == ["already decided"] * 3 + ["applied"]
    assert len(runner.db.fetchall("SELECT 1 FROM sg_outbox")) == 1


@pytest.fixture
def scripted_planner(fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-planner-000000")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    return fake_llm


def test_planner_that_always_retries_stops_at_the_step_bound(
    demo_home: Path, scripted_planner: FakeLLMServer
) -> None:
    retry = json.dumps({"action": "reformulate_and_retrieve", "reason": "try again"})
    scripted_planner.script("openai", *[Reply(retry, input_tokens=50, output_tokens=10)] * 10)
    runner = Runner(Context(answer_models="offline",
                            planner_models="openai:gpt-4.1-mini", max_planner_steps=3,
                            confidence_threshold=1.01, learn_enabled=False)
                    .with_settings(Settings(home=str(demo_home))))
    outcome = runner.run(ANSWERABLE)
    summary = outcome.summary
    assert summary["status"] == "awaiting_review"
    assert summary["review_reason"] == "budget_exhausted"
    assert len(scripted_planner.requests_for("openai")) == 3
    state = runner.graph.get_state({"configurable": {"thread_id": outcome.thread_id}}).values
    actions = [s["action"] for s in state["planner_steps"]]
    assert actions == ["reformulate_and_retrieve"] * 3 + ["handoff"]
    assert state["planner_steps"][-1]["spend"]["planner_steps"] == 3
    assert summary["cost_total"] > 0


def test_expensive_planner_is_never_called_beyond_the_budget(
    demo_home: Path, scripted_planner: FakeLLMServer
) -> None:
    scripted_planner.script("openai", Reply(json.dumps({"action": "handoff", "reason": "x"})))
    runner = Runner(Context(answer_models="offline",
                            planner_models="openai:gpt-4.1", max_cost_usd=0.0001,
                            confidence_threshold=1.01, learn_enabled=False)
                    .with_settings(Settings(home=str(demo_home))))
    summary = runner.run(ANSWERABLE).summary
    assert summary["review_reason"] == "budget_exhausted"
    assert scripted_planner.requests_for("openai") == []
    assert any("budget_denied" in f for f in summary["failures"])
    assert summary["cost_total"] == 0


def test_wall_clock_budget_hands_off(demo_home: Path) -> None:
    runner = Runner(Context(max_seconds=0, confidence_threshold=1.01)
                    .with_settings(Settings(home=str(demo_home))))
    summary = runner.run(ANSWERABLE).summary
    assert summary["review_reason"] == "budget_exhausted"


def test_planner_cannot_invent_an_action(demo_home: Path, scripted_planner: FakeLLMServer) -> None:
    invented = json.dumps({"action": "refund_everything", "reason": "customer is upset"})
    scripted_planner.script("openai", Reply(invented), Reply(invented))
    runner = Runner(Context(answer_models="offline",
                            planner_models="openai:gpt-4.1-mini", model_max_retries=0,
                            confidence_threshold=1.01, learn_enabled=False)
                    .with_settings(Settings(home=str(demo_home))))
    outcome = runner.run(ANSWERABLE)
    state = runner.graph.get_state({"configurable": {"thread_id": outcome.thread_id}}).values
    assert [s["action"] for s in state["planner_steps"]] == ["handoff"]
    assert outcome.summary["status"] == "awaiting_review"
    # The schema-checking chain rejected the invented action as invalid output.
    assert any("schema" in f for f in outcome.summary["failures"])
