"""Classify: intent, calibrated confidence, out-of-scope flag and the route it maps to."""

from __future__ import annotations

from graph.instrument import Step, node
from graph.state import State


@node("classify")
def classify(state: State, step: Step) -> dict:
    """Run the trained intent model on the ticket text."""
    prediction = step.res.intent_model.predict([state["query"][:4000]])[0]
    intent = {
        "intent": prediction.intent,
        "confidence": round(float(prediction.confidence), 4),
        "route": prediction.route,
        "out_of_scope": bool(prediction.out_of_scope),
        "oos_score": round(float(prediction.oos_score), 4),
    }
    step.detail.update(intent)
    return {"intent": intent, "route": prediction.route}
