"""Tone check: score the current draft's politeness in [0, 1], with reasons."""

from __future__ import annotations

from graph.instrument import Step, node
from graph.state import State


@node("tone")
def tone(state: State, step: Step) -> dict:
    """Score the latest draft; the router rewrites it when the score is below the threshold."""
    result = step.res.tone_scorer.score(state["drafts"][-1]["text"])
    step.detail.update(score=result.score, reasons=result.reasons)
    return {"tone": {"score": result.score, "reasons": result.reasons}}
