"""Planner: when the fixed path fails, choose one fallback action from a fixed set.

Bounded by the budget guard: once the planner steps, dollars or seconds are spent, the ticket
goes to a human with reason `budget_exhausted`. An action outside the fixed set is never taken.
"""

from __future__ import annotations

import json

from graph.budget import Budget
from graph.instrument import Step, node
from graph.prompts import PLANNER_SYSTEM, PLANNER_USER, data_block
from graph.reasons import PLANNER_ACTIONS, ReviewReason, error_code
from graph.routing import review_reason_after_classify
from graph.state import State

PLAN_SCHEMA = {
    "type": "object",
    "properties": {"action": {"type": "string", "enum": list(PLANNER_ACTIONS)},
                   "reason": {"type": "string"}},
    "required": ["action", "reason"],
}


def problem_of(state: State, step: Step) -> ReviewReason:
    """Why the fixed path failed, in the planner's vocabulary."""
    if error_code(state.get("error")) == "invalid_output":
        return "invalid_output"
    if state.get("confidence") and state.get("drafts"):
        return "low_answer_confidence"
    if "passages" in state and not state.get("passages"):
        return "nothing_retrieved"
    reason = review_reason_after_classify(state, step.ctx)
    return reason or "low_answer_confidence"


@node("planner")
def planner(state: State, step: Step) -> dict:
    """Pick the next fallback action, or hand off when the budget is spent."""
    from supportgraph.models.chat import ChatRequest, ModelsUnavailable

    budget = Budget.of(state, step.ctx)
    problem = problem_of(state, step)
    step.detail.update(problem=problem, budget=budget.describe())
    if (spent := budget.exhausted()) is not None:
        return {"planner_steps": [{"action": "handoff", "reason": f"budget_exhausted:{spent}",
                                   "problem": problem, "spend": budget.describe()}],
                "review_reason": "budget_exhausted", "error": ""}
    tried = [s["action"] for s in state.get("planner_steps") or []]
    request = ChatRequest(
        task="plan", system=PLANNER_SYSTEM,
        user=PLANNER_USER.format(reason=problem, tried=", ".join(tried) or "none",
                                 allowed=", ".join(PLANNER_ACTIONS),
                                 ticket=data_block("ticket",
                                                   state["normalized"]["body"][:2000])),
        data={"reason": problem, "tried": tried, "allowed": list(PLANNER_ACTIONS)},
        max_tokens=120, json_schema=PLAN_SCHEMA)
    try:
        result = step.complete("planner", request, state)
        decision = json.loads(result.text)
        action = decision["action"]
    except ModelsUnavailable as exc:
        return {"planner_steps": [{"action": "handoff", "reason": exc.reason,
                                   "problem": problem, "spend": budget.describe()}],
                "review_reason": exc.reason, "error": ""}
    except (ValueError, KeyError, TypeError):
        action, decision = "handoff", {"reason": "planner answer was not a valid decision"}
    # A repeated action is allowed (the step budget bounds it); an invented one never is.
    if action not in PLANNER_ACTIONS:
        action, decision = "handoff", {"reason": f"planner proposed {action!r} (not allowed)"}
    entry = {"action": action, "reason": str(decision.get("reason", ""))[:300],
             "problem": problem}
    update: dict = {"planner_steps": [entry], "error": ""}
    if action == "handoff":
        update["review_reason"] = problem
    if action == "ask_clarifying_question":
        update["review_reason"] = "clarification_needed"
    step.detail.update(action=action)
    return update
