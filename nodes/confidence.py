"""Confidence: how sure we are that the final draft answers the ticket correctly.

Built from evidence we can check offline: how close the best passage is to the question, how
much of the draft is supported by the passages, how sure the classifier was, and whether a
known solution (a resolved case of the same intent) agrees. Flags such as a possible prompt
injection force review whatever the score.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from graph.instrument import Step, node
from graph.state import State

WEIGHTS = {"evidence": 0.45, "grounding": 0.25, "intent": 0.2, "known_solution": 0.1}
# Dense similarity that counts as no evidence (0) and as strong evidence (1).
EVIDENCE_FLOOR, EVIDENCE_CEILING = 0.2, 0.55
# A resolved case counts as a known solution only when it is really the same question.
KNOWN_SOLUTION_MIN = 0.75
_WORD = re.compile(r"[a-z0-9]+")
FORCE_REVIEW_FLAGS = ("possible_injection", "non_english", "multi_intent")


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2}


def grounding(draft_text: str, passages: Sequence[Mapping[str, Any]]) -> float:
    """Share of the draft's answer sentences whose words mostly appear in the passages.

    Only paragraphs that cite a source are the answer; greetings and sign-offs are not claims.
    """
    body = draft_text.split("\nSources:")[0]
    answer = [p for p in re.split(r"\n\s*\n", body) if re.search(r"\[\d{1,2}\]", p)]
    sentences = [s for p in answer for s in re.split(r"(?<=[.!?])\s+|\n+", p)
                 if len(_words(s)) >= 5]
    if not sentences:
        return 0.0
    evidence = set().union(*(_words(p["text"]) for p in passages)) if passages else set()
    supported = sum(1 for s in sentences if len(_words(s) & evidence) / len(_words(s)) >= 0.6)
    return supported / len(sentences)


@node("confidence")
def confidence(state: State, step: Step) -> dict:
    """Score the current draft; the router sends, plans or asks a human."""
    passages = state.get("passages") or []
    intent = state["intent"]
    best = max((p["score"] for p in passages), default=0.0)
    evidence = min(1.0, max(0.0, (best - EVIDENCE_FLOOR) / (EVIDENCE_CEILING - EVIDENCE_FLOOR)))
    same_intent = [c["score"] for c in state.get("cases") or []
                   if c["intent"] == intent["intent"] and c["score"] >= KNOWN_SOLUTION_MIN]
    signals = {
        "evidence": round(evidence, 4),
        "grounding": round(grounding(state["drafts"][-1]["text"], passages), 4),
        "intent": round(float(intent["confidence"]), 4),
        "known_solution": round(max(same_intent, default=0.0), 4),
    }
    if not same_intent:
        # No known solution: judge on the other signals alone rather than penalise.
        total = sum(w for k, w in WEIGHTS.items() if k != "known_solution")
        score = sum(WEIGHTS[k] * signals[k] for k in WEIGHTS if k != "known_solution") / total
    else:
        score = sum(WEIGHTS[k] * signals[k] for k in WEIGHTS)
    update: dict = {"confidence": {"score": round(score, 4), "signals": signals}}
    flagged = [f for f in FORCE_REVIEW_FLAGS if f in (state.get("flags") or [])]
    if flagged:
        update["review_reason"] = flagged[0]
    step.detail.update(score=round(score, 4), signals=signals, flagged=flagged)
    return update
