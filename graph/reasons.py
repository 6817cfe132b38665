"""The workflow's vocabulary of error codes and review reasons, typed in one place.

State keeps them as plain strings (checkpoints, audit rows, review rows and exports hold the
same values as before): `error` is "<code>: <detail>" and `review_reason` is one of the reasons
below. Nodes build `error` with `error_text`, and routers, the planner and human review read it
back with `error_code` / `error_reason`, so the format is written and parsed only here.
"""

from __future__ import annotations

from typing import Literal, get_args

ErrorCode = Literal[
    "bad_input",  # intake refused the ticket: the run ends as `failed`
    "invalid_output",  # a model answered, but not usably (the planner may retry)
    "retrieval_unavailable",  # the vector store could not be searched
    "models_unavailable",  # every model of the chain failed
    "budget_exhausted",  # the ticket's cost or time budget stopped the models
]
"""Why a step could not do its job (the part of `error` before the first colon)."""

StepName = Literal["intake", "classify", "retrieve", "draft", "tone", "rewrite", "confidence",
                   "guard", "planner", "human_review", "send", "learn", "audit"]
"""A node of the graph; a step that raised records `error` as "<step>: <Type>: <message>"."""

ReviewReason = Literal[
    # from the classifier's result (graph/routing.py)
    "non_english", "out_of_scope", "human_intent", "low_intent_confidence",
    # from the planner's view of what went wrong (nodes/planner.py)
    "invalid_output", "low_answer_confidence", "nothing_retrieved", "clarification_needed",
    # from failures and checks on the way
    "bad_input", "retrieval_unavailable", "models_unavailable", "budget_exhausted",
    "unsupported_content", "possible_injection", "multi_intent",
    # the knowledge base cannot answer: empty, or the ticket asks about something it lacks
    "no_knowledge_base", "off_knowledge_base",
    # human review's fallbacks when nothing more specific is known
    "tone_below_threshold", "low_confidence", "needs_review",
]
"""Why a human is (or was) asked to look at a ticket: `review_reason`, `sg_reviews.reason`."""

PlannerAction = Literal["reformulate_and_retrieve", "search_other_kb", "search_resolved_cases",
                        "regenerate_stronger", "ask_clarifying_question", "handoff"]
"""What the planner may choose when the fixed path fails; anything else becomes `handoff`."""
PLANNER_ACTIONS: tuple[PlannerAction, ...] = get_args(PlannerAction)

ERROR_CODES: frozenset[str] = frozenset(get_args(ErrorCode))
STEP_NAMES: frozenset[str] = frozenset(get_args(StepName))
REVIEW_REASONS: frozenset[str] = frozenset(get_args(ReviewReason))


def error_text(code: ErrorCode, detail: object) -> str:
    """The `error` value for `code`: "<code>: <detail>"."""
    return f"{code}: {detail}"


def step_failure_text(step: str, exc: BaseException, limit: int = 2000) -> str:
    """The `error` value of a step that raised: "<step>: <Type>: <message>" (bounded)."""
    return f"{step}: {type(exc).__name__}: {exc}"[:limit]


def _prefix(error: str | None) -> str:
    return (error or "").split(":", 1)[0]


def error_code(error: str | None) -> ErrorCode | None:
    """The error code `error` starts with; None for no error or a step that raised."""
    prefix = _prefix(error)
    return prefix if prefix in ERROR_CODES else None  # type: ignore[return-value]


def error_reason(error: str | None) -> ReviewReason | StepName | None:
    """What a reviewer is told an `error` was: its code, or the step that raised."""
    prefix = _prefix(error)
    if prefix in ERROR_CODES or prefix in STEP_NAMES:
        return prefix  # type: ignore[return-value]
    return None
