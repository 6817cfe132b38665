"""Confidence: the probability that the final draft answers this ticket and can be sent.

It comes from the home's answerability model (models/answerability.py): a logistic regression
fitted on labelled development tickets and calibrated, over signals relative to the home's KB:
how close the question (and each of its parts) is to the sections the draft cites and to their
titles, how much of the ticket's key terms the cited sections and the KB hold, whether the route
agrees with the cited collection, routing confidence, the best passage's similarity and how much
of the draft the passages support. Every signal is recorded for the reviewer.

A ticket whose questions ask about another business's things ("order", "shipping", "delivery":
`models/data/off_kb_terms.txt`) and that scores below the threshold goes straight to a person,
route `human`, reason `off_knowledge_base`: the KB answered a look-alike question, and neither
another KB nor another draft can help. So does a short request about a thing no section of
the KB is about ("cancel a purchase" on a desk whose KB is about subscriptions), whatever the
score: the reviewer is told which thing. Flags such as a possible prompt injection force review
whatever the score.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from graph.instrument import Step, node
from graph.state import State

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


def _cited(state: State, passages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    drafts = state.get("drafts") or []
    cited = set(drafts[-1].get("citations") or []) if drafts else set()
    return [p for p in passages if p["doc_id"] in cited] or list(passages)


@node("confidence")
def confidence(state: State, step: Step) -> dict:
    """Score the current draft; the router sends, plans or asks a human."""
    from supportgraph.models.answerability import (
        asks_about_look_alike,
        features,
        stopwords,
        unknown_object,
    )

    passages = state.get("passages") or []
    intent = state["intent"]
    model = step.res.answerability
    same_intent = [c["score"] for c in state.get("cases") or []
                   if c["intent"] == intent["intent"] and c["score"] >= KNOWN_SOLUTION_MIN]
    signals: dict = {
        "grounding": round(grounding(state["drafts"][-1]["text"], passages), 4),
        "known_solution": round(max(same_intent, default=0.0), 4),
    }
    update: dict = {}
    missing: list[str] = []
    unknown = ""
    if model is None:
        score = 0.0
        update["review_reason"] = "no_knowledge_base"
    else:
        query = state["query"][:4000]
        cited = _cited(state, passages)
        values, missing = features(query, cited, model.profile,
                                   route=state.get("route") or "", embed=step.res.embedder.encode,
                                   intent_confidence=float(intent["confidence"]),
                                   oos_score=float(intent.get("oos_score") or 0.0),
                                   stop=stopwords())
        values["evidence"] = max((float(p["score"]) for p in passages), default=0.0)
        values["grounding"] = signals["grounding"]
        signals.update({k: round(v, 4) for k, v in values.items()})
        score = model.probability(values)
        signals["logit"] = round(model.logit(values), 4)
        # `features` has read the request's object; name the thing only when it is unknown
        # (with no passage to cite, `features` stops early and reads nothing)
        if values["unknown_object"] or not cited:
            unknown = unknown_object(query, [str(p["title"]) for p in cited], model.profile,
                                     stopwords())
        if unknown:
            # The request is about something the KB never describes: whatever the reply says
            # about the KB's own things, it answers a look-alike question.
            update.update(review_reason="off_knowledge_base", route="human")
        elif score < step.ctx.confidence_threshold and asks_about_look_alike(query):
            # Look-alike out of domain: the KB answered another business's question; no retry
            # can help. (A confident reply that merely mentions a delivery is sent.)
            update.update(review_reason="off_knowledge_base", route="human")
    update["confidence"] = {"score": round(score, 4), "signals": signals,
                            "missing_terms": missing[:8]}
    if unknown:
        update["confidence"]["unknown_object"] = unknown
    flagged = [f for f in FORCE_REVIEW_FLAGS if f in (state.get("flags") or [])]
    if flagged:
        update["review_reason"] = flagged[0]
    step.detail.update(score=round(score, 4), signals=signals, missing_terms=missing[:8],
                       unknown_object=unknown, flagged=flagged)
    return update
