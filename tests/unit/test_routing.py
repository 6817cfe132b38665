"""Routers of graph/routing.py: every branch, with small states and a real LangGraph Runtime."""

from __future__ import annotations

import pytest
from langgraph.runtime import Runtime

from graph import routing
from graph.context import Context
from graph.settings import Settings


def rt(**settings) -> Runtime:
    # complete, as the edge makes it: no deployment defaults, default Settings
    return Runtime(context=Context(**settings).with_defaults({}).with_settings(Settings()))


def intent(confidence: float = 0.95, *, route: str = "billing", oos: bool = False) -> dict:
    return {"intent": "invoice_request", "confidence": confidence, "route": route,
            "out_of_scope": oos, "oos_score": 0.9 if oos else 0.1}


def classified(**overrides) -> dict:
    state = {"intent": intent(), "flags": []}
    state.update(overrides)
    return state


# --------------------------------------------------------------------------- intake


def test_after_intake_failed_goes_to_audit_else_classify():
    assert routing.after_intake({"status": "failed", "error": "bad_input: x"}) == "audit"
    assert routing.after_intake({"status": "processing"}) == "classify"
    assert routing.after_intake({}) == "classify"


# --------------------------------------------------------------------------- classify


def test_confident_in_scope_intent_retrieves():
    assert routing.after_classify(classified(), rt()) == "retrieve"
    assert routing.review_reason_after_classify(classified(), Context()) is None


def test_non_english_flag_beats_everything():
    # Out of scope, human route and low confidence at once: the language flag still wins.
    state = {"intent": intent(0.1, route="human", oos=True), "flags": ["non_english"]}
    assert routing.review_reason_after_classify(state, Context()) == "non_english"
    # Even with the planner enabled (low confidence alone would go to the planner).
    low = {"intent": intent(0.1), "flags": ["possible_injection", "non_english"]}
    assert routing.after_classify(low, rt(planner_enabled=True)) == "human_review"
    assert routing.review_reason_after_classify(low, Context()) == "non_english"


def test_out_of_scope_goes_to_human_even_with_planner():
    state = classified(intent=intent(0.99, oos=True))
    assert routing.review_reason_after_classify(state, Context()) == "out_of_scope"
    assert routing.after_classify(state, rt(planner_enabled=True)) == "human_review"


def test_out_of_scope_beats_human_route_and_low_confidence():
    state = classified(intent=intent(0.1, route="human", oos=True))
    assert routing.review_reason_after_classify(state, Context()) == "out_of_scope"


def test_human_route_goes_to_human_review():
    state = classified(intent=intent(0.99, route="human"))
    assert routing.review_reason_after_classify(state, Context()) == "human_intent"
    assert routing.after_classify(state, rt(planner_enabled=True)) == "human_review"


def test_low_intent_confidence_planner_when_enabled_human_when_disabled():
    state = classified(intent=intent(0.5))
    assert routing.review_reason_after_classify(state, Context()) == "low_intent_confidence"
    assert routing.after_classify(state, rt(planner_enabled=True)) == "planner"
    assert routing.after_classify(state, rt(planner_enabled=False)) == "human_review"


def test_intent_threshold_comes_from_the_runtime_context():
    state = classified(intent=intent(0.7))
    assert routing.after_classify(state, rt(intent_threshold=0.6)) == "retrieve"
    assert routing.after_classify(state, rt(intent_threshold=0.9)) == "planner"
    # Exactly at the threshold is confident enough.
    assert routing.after_classify(state, rt(intent_threshold=0.7)) == "retrieve"


def test_classify_error_goes_to_human_review():
    state = classified(error="classify: RuntimeError: boom")
    assert routing.after_classify(state, rt()) == "human_review"


def test_a_router_without_a_complete_context_or_a_root_refuses_in_one_line():
    # In a run the root completes the context (the server's comes from the request); outside
    # one there is nothing to take the deployment's thresholds from, and guessing is wrong.
    state = classified(intent=intent(0.84))
    with pytest.raises(RuntimeError, match="no services for this run"):
        routing.after_classify(state, Runtime(context=None))


# --------------------------------------------------------------------------- retrieve


def test_after_retrieve_branches():
    passages = [{"doc_id": "d", "text": "t", "score": 0.5}]
    assert routing.after_retrieve({"passages": passages}, rt()) == "draft"
    assert routing.after_retrieve({"passages": []}, rt(planner_enabled=True)) == "planner"
    assert routing.after_retrieve({"passages": []}, rt(planner_enabled=False)) == "human_review"
    assert routing.after_retrieve({}, rt()) == "planner"
    errored = {"passages": passages, "error": "retrieve: ConnectionError"}
    assert routing.after_retrieve(errored, rt()) == "human_review"


# --------------------------------------------------------------------------- draft


def test_after_draft_branches():
    assert routing.after_draft({"error": ""}, rt()) == "tone"
    assert routing.after_draft({}, rt()) == "tone"
    invalid = {"error": "invalid_output: the draft cites none of the retrieved passages"}
    assert routing.after_draft(invalid, rt(planner_enabled=True)) == "planner"
    assert routing.after_draft(invalid, rt(planner_enabled=False)) == "human_review"
    unavailable = {"error": "models_unavailable: every model in the chain failed"}
    assert routing.after_draft(unavailable, rt(planner_enabled=True)) == "human_review"


# --------------------------------------------------------------------------- tone


def toned(score: float, rewrites: int = 0, **extra) -> dict:
    return {"tone": {"score": score, "reasons": []}, "rewrites": rewrites, **extra}


def test_tone_at_or_above_threshold_goes_to_confidence():
    assert routing.after_tone(toned(0.9), rt()) == "confidence"
    assert routing.after_tone(toned(0.7), rt(tone_threshold=0.7)) == "confidence"


def test_tone_below_threshold_with_rewrites_left_rewrites():
    assert routing.after_tone(toned(0.5, 0), rt(max_rewrites=2)) == "rewrite"
    assert routing.after_tone(toned(0.5, 1), rt(max_rewrites=2)) == "rewrite"
    assert routing.after_tone({"tone": {"score": 0.1, "reasons": []}}, rt()) == "rewrite"


def test_tone_below_threshold_without_rewrites_left_goes_to_human():
    assert routing.after_tone(toned(0.5, 2), rt(max_rewrites=2)) == "human_review"
    assert routing.after_tone(toned(0.5, 0), rt(max_rewrites=0)) == "human_review"


def test_tone_error_goes_to_human():
    assert routing.after_tone(toned(0.99, error="tone: boom"), rt()) == "human_review"


# --------------------------------------------------------------------------- confidence


def scored(score: float, **extra) -> dict:
    return {"confidence": {"score": score, "signals": {}}, **extra}


def test_confidence_at_exactly_the_threshold_goes_to_the_output_guard():
    assert routing.after_confidence(scored(0.8), rt(confidence_threshold=0.8)) == "guard"
    assert routing.after_confidence(scored(0.95), rt()) == "guard"


def test_guard_delivers_only_without_findings():
    assert routing.after_guard(scored(0.95)) == ["send", "learn"]
    assert routing.after_guard(scored(0.95, review_reason="unsupported_content")) == "human_review"
    assert routing.after_guard(scored(0.95, error="guard: boom")) == "human_review"


def test_low_confidence_planner_or_human():
    assert routing.after_confidence(scored(0.7), rt(planner_enabled=True)) == "planner"
    assert routing.after_confidence(scored(0.7), rt(planner_enabled=False)) == "human_review"


def test_review_reason_forces_human_even_when_confident():
    state = scored(0.99, review_reason="possible_injection")
    assert routing.after_confidence(state, rt()) == "human_review"


def test_confidence_error_goes_to_human():
    assert routing.after_confidence(scored(0.99, error="confidence: boom"), rt()) == "human_review"


# --------------------------------------------------------------------------- planner


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("reformulate_and_retrieve", "retrieve"),
        ("search_other_kb", "retrieve"),
        ("search_resolved_cases", "retrieve"),
        ("regenerate_stronger", "draft"),
        ("ask_clarifying_question", "human_review"),
        ("handoff", "human_review"),
    ],
)
def test_after_planner_follows_the_last_action(action, target):
    steps = [{"action": "search_other_kb", "reason": "first"}, {"action": action, "reason": "x"}]
    assert routing.after_planner({"planner_steps": steps}) == target


def test_after_planner_without_steps_hands_off():
    assert routing.after_planner({}) == "human_review"
    assert routing.after_planner({"planner_steps": []}) == "human_review"


def test_after_planner_raises_on_unknown_action():
    with pytest.raises(ValueError, match="delete_all_tickets"):
        routing.after_planner({"planner_steps": [{"action": "delete_all_tickets"}]})


# --------------------------------------------------------------------------- review, send


def test_after_review_branches():
    assert routing.after_review({"review": {"type": "accept"}}) == ["send", "learn"]
    assert routing.after_review({"review": {"type": "edit", "reply": "x"}}) == ["send", "learn"]
    assert routing.after_review({"review": {"type": "ignore"}}) == "audit"
    assert routing.after_review({"review": {"type": "stalled"}}) == "audit"


@pytest.mark.parametrize("review", [{"type": "approve"}, {"type": "response"}, {}, None])
def test_after_review_raises_on_unexpected_decision(review):
    with pytest.raises(ValueError, match="unexpected review decision"):
        routing.after_review({"review": review})
