"""Classify: intent, calibrated confidence, out-of-scope flag and the route it maps to.

With a trained intent model the model decides; without one (a home made by `init --no-demo`)
or with `routing=retrieval`, the `kb_*` collection holding the closest passage is the route,
and a ticket no collection holds strong evidence for is out of scope. An empty knowledge base
sends every ticket to a person (`no_knowledge_base`).

The ticket's sentences are classified too, in the same batch: two sentences that confidently
belong to different routes (a refund request and a webhook failure) make a multi-part ticket,
which one grounded draft cannot answer alone, so it is flagged for review. A ticket not in
English goes to a person with route `human`.
"""

from __future__ import annotations

import re

from graph.instrument import Step, node
from graph.state import State
from supportgraph.text.pii import model_text

MULTI_INTENT_CONFIDENCE = 0.9
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# Only questions and requests count: backstory sentences mention other topics all the time.
_ASK = re.compile(r"\?\s*$|^(how|what|can|could|would|please|i want|i need|i'd like|we'd like|"
                  r"we want|we need|why|where|when|is|are|do|does|will|should)\b", re.I)


def sentences_of(text: str) -> list[str]:
    """The questions and requests in a ticket (at least four words each), at most eight."""
    parts = (s.strip() for s in _SENTENCE.split(text))
    return [s for s in parts if len(s.split()) >= 4 and _ASK.search(s)][:8]


@node("classify")
def classify(state: State, step: Step) -> dict:
    """Route the ticket text and its sentences (intent model or retrieval evidence)."""
    text = state["query"][:4000]
    parts = sentences_of(model_text(state["normalized"]["body"]))
    if step.res.routing == "retrieval" and not step.res.kb_collections():
        intent = {"intent": "no_knowledge_base", "confidence": 0.0, "route": "human",
                  "out_of_scope": True, "oos_score": 1.0}
        step.detail.update(intent, routing="retrieval")
        return {"intent": intent, "route": "human", "review_reason": "no_knowledge_base"}
    predictions = step.res.route([text, *parts])
    prediction = predictions[0]
    intent = {
        "intent": prediction.intent,
        "confidence": round(float(prediction.confidence), 4),
        "route": prediction.route,
        "out_of_scope": bool(prediction.out_of_scope),
        "oos_score": round(float(prediction.oos_score), 4),
    }
    routes = {p.route for p in predictions[1:] if not p.out_of_scope
              and p.confidence >= MULTI_INTENT_CONFIDENCE and p.route != "human"}
    update: dict = {"intent": intent, "route": prediction.route}
    if "non_english" in (state.get("flags") or []):
        # The intent model reads English: its route for another language is a guess, and no
        # English KB answers it. A person reads it (route human); the guess stays on record.
        update["route"] = "human"
    if len(routes) > 1:
        update["flags"] = [*(state.get("flags") or []), "multi_intent"]
        step.detail["sentence_routes"] = sorted(routes)
    step.detail.update(intent, routing=step.res.routing)
    return update
