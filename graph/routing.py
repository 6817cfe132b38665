"""Edge functions: where a ticket goes after each step.

Typed with `Literal` so the graph drawing is exact; an unexpected value raises instead of
silently picking a branch. Delivering a reply is two independent effects of one decision, the
outbox row (`send`) and the resolved case (`learn`), so they run side by side in one superstep:
one checkpoint round trip fewer per sent ticket.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graph.context import Context
from graph.instrument import run_context
from graph.reasons import ReviewReason, error_code
from graph.state import State

DELIVER: list[Literal["send", "learn"]] = ["send", "learn"]
"""Where an approved reply goes: `send` and `learn` side by side, then `audit` (after both)."""


def _ctx(runtime: Runtime[Context]) -> Context:
    return run_context(runtime)


def review_reason_after_classify(state: State, ctx: Context) -> ReviewReason | None:
    """Why the classified ticket cannot take the automatic path (None when it can)."""
    intent = state["intent"]
    if "non_english" in state.get("flags", []):
        return "non_english"
    if intent["out_of_scope"]:
        return "out_of_scope"
    if intent["route"] == "human":
        return "human_intent"
    if intent["confidence"] < ctx.intent_threshold:
        return "low_intent_confidence"
    return None


def after_intake(state: State) -> Literal["classify", "audit"]:
    """Bad input ends the run; anything else is classified."""
    return "audit" if state.get("status") == "failed" else "classify"


def after_classify(
    state: State, runtime: Runtime[Context]
) -> Literal["retrieve", "planner", "human_review"]:
    """Confident, in-scope, mapped intents retrieve; the rest go to the planner or a human."""
    if state.get("error"):
        return "human_review"
    reason = review_reason_after_classify(state, _ctx(runtime))
    if reason is None:
        return "retrieve"
    if reason == "low_intent_confidence" and _ctx(runtime).planner_enabled:
        return "planner"
    return "human_review"


def after_retrieve(state: State, runtime: Runtime[Context]) -> Literal["draft", "planner",
                                                                       "human_review"]:
    """Draft only from evidence; nothing relevant found is a planner (or human) case."""
    if state.get("error"):
        return "human_review"
    if state.get("passages"):
        return "draft"
    return "planner" if _ctx(runtime).planner_enabled else "human_review"


def after_draft(state: State, runtime: Runtime[Context]) -> Literal["tone", "planner",
                                                                   "human_review"]:
    """Invalid model output may be retried by the planner; other failures go to a human."""
    error = state.get("error")
    if not error:
        return "tone"
    if error_code(error) == "invalid_output" and _ctx(runtime).planner_enabled:
        return "planner"
    return "human_review"


def after_tone(state: State, runtime: Runtime[Context]) -> Literal["rewrite", "confidence",
                                                                   "human_review"]:
    """Rewrite a draft whose tone is below the threshold, a bounded number of times."""
    ctx = _ctx(runtime)
    if state.get("error"):
        return "human_review"
    if state["tone"]["score"] >= ctx.tone_threshold:
        return "confidence"
    if state.get("rewrites", 0) < ctx.max_rewrites:
        return "rewrite"
    return "human_review"


def after_confidence(
    state: State, runtime: Runtime[Context]
) -> Literal["guard", "planner", "human_review"]:
    """Confident, unflagged drafts go to the output guard; everything else is reviewed."""
    ctx = _ctx(runtime)
    if state.get("error") or state.get("review_reason"):
        return "human_review"
    if state["confidence"]["score"] >= ctx.confidence_threshold:
        return "guard"
    return "planner" if ctx.planner_enabled else "human_review"


def after_guard(state: State) -> Literal["human_review"] | list[Literal["send", "learn"]]:
    """Deliver only a reply the output guard found nothing unsupported in."""
    if state.get("error") or state.get("review_reason"):
        return "human_review"
    return list(DELIVER)


def after_planner(state: State) -> Literal["retrieve", "draft", "human_review"]:
    """Follow the planner's chosen action; a handoff (or anything else) goes to a human."""
    steps = state.get("planner_steps") or []
    action = steps[-1]["action"] if steps else "handoff"
    if action in ("reformulate_and_retrieve", "search_other_kb", "search_resolved_cases"):
        return "retrieve"
    if action == "regenerate_stronger":
        return "draft"
    if action in ("handoff", "ask_clarifying_question"):
        return "human_review"
    raise ValueError(f"unknown planner action {action!r}")


def after_review(state: State) -> Literal["audit"] | list[Literal["send", "learn"]]:
    """Approved or edited replies are delivered; rejected (and stalled) tickets are closed."""
    decision = (state.get("review") or {}).get("type")
    if decision in ("accept", "edit"):
        return list(DELIVER)
    if decision in ("ignore", "stalled"):
        return "audit"
    raise ValueError(f"unexpected review decision {decision!r}")
