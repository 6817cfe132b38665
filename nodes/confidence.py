"""Confidence: the probability that the final draft answers this ticket and can be sent.

It comes from the home's answerability model (models/answerability.py): how close the question
and each of its parts are to the sections the draft cites, whether the ticket's key terms occur
in those sections and in the knowledge base at all, whether the route agrees with the cited
collection, and how sure routing was. It never reads the draft's wording, so it holds for any
provider. A ticket whose key terms the knowledge base does not contain ("cancel my order" on
an email API's desk) and that scores below the threshold goes straight to a person, route
`human`, with the missing terms shown to the reviewer. Flags such as a possible prompt
injection force review whatever the score. So does a ticket about another business's things
("order", "parcel", "flight": `models/data/off_kb_terms.txt`) that the cited sections do not
mention, whatever the score: the KB answered a look-alike question.
"""

from __future__ import annotations

import re

from graph.instrument import Step, node
from graph.state import State

# A resolved case counts as a known solution only when it is really the same question.
KNOWN_SOLUTION_MIN = 0.75
# Below this share of the ticket's key terms in the cited sections (IDF-weighted), a low score
# means the KB does not cover what is asked: a person, not another search, is the next step.
OFF_KB_COVERAGE = 0.6
_WORD = re.compile(r"[a-z0-9]+")
FORCE_REVIEW_FLAGS = ("possible_injection", "non_english", "multi_intent")


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2}


def grounding(draft_text: str, passages: list[dict]) -> float:
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


def _cited(state: State, passages: list[dict]) -> list[dict]:
    cited = set((state.get("drafts") or [{}])[-1].get("citations") or [])
    return [p for p in passages if p["doc_id"] in cited] or passages


@node("confidence")
def confidence(state: State, step: Step) -> dict:
    """Score the current draft; the router sends, plans or asks a human."""
    from models.answerability import features, look_alike_terms, stopwords
    from models.embeddings import get_embedder

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
    if model is None:
        score, missing = 0.0, []
        update["review_reason"] = "no_knowledge_base"
    else:
        values, missing = features(state["query"][:4000], _cited(state, passages), model.profile,
                                   route=state.get("route") or "", embed=get_embedder().encode,
                                   intent_confidence=float(intent["confidence"]),
                                   stop=stopwords())
        signals.update({k: round(v, 4) for k, v in values.items()})
        score = model.probability(values)
        signals["logit"] = round(model.logit(values), 4)
        look_alike = [t for t in missing if t in look_alike_terms()]
        low = values["term_coverage"] < OFF_KB_COVERAGE and score < step.ctx.confidence_threshold
        if look_alike or low:
            # Look-alike out of domain: the KB has nothing on these terms; no retry can help.
            update.update(review_reason="off_knowledge_base", route="human")
    signals["missing_terms"] = missing[:8]
    update["confidence"] = {"score": round(score, 4), "signals": signals}
    flagged = [f for f in FORCE_REVIEW_FLAGS if f in (state.get("flags") or [])]
    if flagged:
        update["review_reason"] = flagged[0]
    step.detail.update(score=round(score, 4), signals=signals, flagged=flagged)
    return update
