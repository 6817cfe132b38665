"""The budget guard (graph/budget.py): steps, dollars and seconds, with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from graph.budget import Budget
from graph.context import Context

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def clock_at(seconds_after_start: float):
    return lambda: (T0 + timedelta(seconds=seconds_after_start)).timestamp()


def usage(step: str, cost: float) -> dict:
    return {"step": step, "duration_ms": 1.0, "cost": cost, "model_calls": 1, "cache_hits": 0,
            "retries": 0}


def state(*, costs=(), steps=0, started: datetime | None = T0) -> dict:
    s: dict = {"usage": [usage(f"s{i}", c) for i, c in enumerate(costs)],
               "planner_steps": [{"action": "search_other_kb"}] * steps}
    if started is not None:
        s["started_at"] = started.isoformat(timespec="microseconds")
    return s


CTX = Context(max_planner_steps=3, max_cost_usd=0.05, max_seconds=120.0)


def test_fresh_ticket_is_not_exhausted():
    budget = Budget.of(state(), CTX, clock=clock_at(1))
    assert budget.exhausted() is None
    assert budget.planner_steps == 0
    assert budget.spent_usd == 0
    assert budget.elapsed_s == pytest.approx(1.0)
    assert budget.remaining_usd == pytest.approx(0.05)


def test_steps_exhausted_at_the_limit():
    assert Budget.of(state(steps=2), CTX, clock=clock_at(1)).exhausted() is None
    assert Budget.of(state(steps=3), CTX, clock=clock_at(1)).exhausted() == "steps"
    assert Budget.of(state(steps=4), CTX, clock=clock_at(1)).exhausted() == "steps"


def test_dollars_summed_from_every_step_usage():
    budget = Budget.of(state(costs=[0.01, 0.015, 0.005]), CTX, clock=clock_at(1))
    assert budget.spent_usd == pytest.approx(0.03)
    assert budget.remaining_usd == pytest.approx(0.02)
    assert budget.exhausted() is None
    spent = Budget.of(state(costs=[0.03, 0.02]), CTX, clock=clock_at(1))
    assert spent.exhausted() == "dollars"
    assert spent.remaining_usd == 0.0
    over = Budget.of(state(costs=[0.2]), CTX, clock=clock_at(1))
    assert over.exhausted() == "dollars"
    assert over.remaining_usd == 0.0  # never negative


def test_seconds_exhausted_with_a_fake_clock():
    assert Budget.of(state(), CTX, clock=clock_at(119.9)).exhausted() is None
    assert Budget.of(state(), CTX, clock=clock_at(120)).exhausted() == "seconds"
    late = Budget.of(state(), CTX, clock=clock_at(3600))
    assert late.exhausted() == "seconds"
    assert late.elapsed_s == pytest.approx(3600)


def test_no_start_time_means_no_elapsed_time():
    budget = Budget.of(state(started=None), CTX, clock=clock_at(10_000))
    assert budget.elapsed_s == 0.0
    assert budget.exhausted() is None


def test_clock_before_start_is_not_negative():
    assert Budget.of(state(), CTX, clock=clock_at(-50)).elapsed_s == 0.0


def test_steps_checked_before_dollars_before_seconds():
    everything = Budget.of(state(costs=[1.0], steps=5), CTX, clock=clock_at(999))
    assert everything.exhausted() == "steps"
    money_and_time = Budget.of(state(costs=[1.0]), CTX, clock=clock_at(999))
    assert money_and_time.exhausted() == "dollars"


def test_allows_cost_exact_boundary():
    budget = Budget.of(state(costs=[0.03]), CTX, clock=clock_at(1))
    assert budget.allows_cost(0.02)  # exactly what is left (float noise tolerated)
    assert budget.allows_cost(0.0)
    assert not budget.allows_cost(0.0201)
    fresh = Budget.of(state(), CTX, clock=clock_at(1))
    assert fresh.allows_cost(0.05)
    assert not fresh.allows_cost(0.05 + 1e-9)
    spent = Budget.of(state(costs=[0.05]), CTX, clock=clock_at(1))
    assert spent.allows_cost(0.0)
    assert not spent.allows_cost(1e-6)


def test_limits_come_from_the_context():
    tight = Context(max_planner_steps=1, max_cost_usd=0.001, max_seconds=5)
    assert Budget.of(state(steps=1), tight, clock=clock_at(0)).exhausted() == "steps"
    assert Budget.of(state(costs=[0.001]), tight, clock=clock_at(0)).exhausted() == "dollars"
    assert Budget.of(state(), tight, clock=clock_at(5)).exhausted() == "seconds"


def test_describe_reports_the_spend():
    info = Budget.of(state(costs=[0.0123456789], steps=2), CTX, clock=clock_at(1.23456)).describe()
    assert info == {"planner_steps": 2, "spent_usd": 0.012346, "elapsed_s": 1.235,
                    "max_planner_steps": 3, "max_cost_usd": 0.05, "max_seconds": 120.0}
