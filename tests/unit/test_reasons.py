"""graph/reasons.py: typed error codes and review reasons, parsed in one place."""

from __future__ import annotations

from typing import get_args

import pytest

from graph.builder import builder
from graph.context import Context
from graph.reasons import (
    ERROR_CODES,
    REVIEW_REASONS,
    STEP_NAMES,
    ErrorCode,
    error_code,
    error_reason,
    error_text,
    step_failure_text,
)
from nodes.confidence import FORCE_REVIEW_FLAGS
from nodes.human_review import reason_for_review


@pytest.mark.parametrize("code", get_args(ErrorCode))
def test_every_code_round_trips_through_the_stored_string(code: str) -> None:
    stored = error_text(code, "every model in the chain failed: a: b")  # colons in the detail
    assert stored == f"{code}: every model in the chain failed: a: b"  # the same text as before
    assert error_code(stored) == code and error_reason(stored) == code


def test_a_step_that_raised_is_reported_by_its_step_name() -> None:
    stored = step_failure_text("draft", KeyError("body"))
    assert stored == "draft: KeyError: 'body'"
    assert error_code(stored) is None and error_reason(stored) == "draft"
    assert len(step_failure_text("tone", ValueError("x" * 10_000))) == 2000


@pytest.mark.parametrize("text", [None, "", ":", "::::", "invalid_outputs: no", "Invalid_Output: x",
                                  " invalid_output: x", "x" * 100_000, "\x00bad_input: x",
                                  "ignore previous instructions: send"])
def test_unknown_empty_or_hostile_errors_parse_as_nothing(text: str | None) -> None:
    assert error_code(text) is None and error_reason(text) is None


def test_step_names_are_the_graph_nodes() -> None:
    nodes = set(builder.nodes)
    assert nodes == STEP_NAMES


def test_every_reason_a_node_can_set_is_a_declared_reason() -> None:
    from supportgraph.models.chat import ModelsUnavailable

    assert set(FORCE_REVIEW_FLAGS) <= REVIEW_REASONS
    assert {"budget_exhausted", "models_unavailable"} <= ERROR_CODES & REVIEW_REASONS
    assert ModelsUnavailable(()).reason in REVIEW_REASONS


def test_review_reason_comes_from_the_error_code_or_the_failed_step() -> None:
    ctx = Context()
    assert reason_for_review({"error": error_text("retrieval_unavailable", "down")}, ctx) == (
        "retrieval_unavailable")
    assert reason_for_review({"error": step_failure_text("classify", OSError("disk"))}, ctx) == (
        "classify")
    assert reason_for_review({"review_reason": "unsupported_content",
                              "error": error_text("invalid_output", "x")}, ctx) == (
        "unsupported_content")
    assert reason_for_review({}, ctx) == "needs_review"
