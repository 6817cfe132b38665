"""One evaluated ticket: its gold fields next to what the workflow did.

Evaluators read only these records, so they can be tested on hand-made rows without running
the workflow, and a `records.jsonl` of an old eval can be scored again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from evals.dataset import EvalTicket
from graph.summary import predicted_intent

# Reasons that mean routing itself sent the ticket to a human, whatever the intent's route.
HUMAN_ROUTING_REASONS = frozenset({"out_of_scope", "human_intent", "non_english"})


@dataclass
class EvalRecord:
    """Gold and predicted fields of one ticket (predicted ones None when never reached)."""

    id: str
    gold_route: str
    gold_outcome: str
    gold_intent: str | None = None
    reference_answer: str = ""
    tags: list[str] = field(default_factory=list)
    gold_doc_ids: list[str] = field(default_factory=list)
    tenant: str | None = None
    intent: str | None = None
    route: str | None = None
    status: str = "failed"
    escalated: bool = False
    review_reason: str | None = None
    review_decision: str | None = None
    confidence: float | None = None
    intent_confidence: float | None = None
    draft: str = ""
    retrieved_doc_ids: list[str] = field(default_factory=list)
    cited_doc_ids: list[str] = field(default_factory=list)
    cost: float = 0.0
    duration_ms: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def auto_sent(self) -> bool:
        """Delivered without a human ever seeing it."""
        return self.status == "sent" and not self.escalated

    @property
    def cites_gold(self) -> bool | None:
        """Whether the last draft cites a gold source (None when the ticket has no gold ids).

        A gold id with a `#section` must be cited exactly; a gold id without one names a whole
        article, which any of its sections satisfies.
        """
        if not self.gold_doc_ids:
            return None
        gold = set(self.gold_doc_ids)
        return any(doc in gold or doc.split("#", 1)[0] in gold for doc in self.cited_doc_ids)

    @property
    def predicted_outcome(self) -> str:
        """`sent` (automatic), `human` (went to review) or `failed` (neither)."""
        if self.auto_sent:
            return "sent"
        return "human" if self.escalated else "failed"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (records.jsonl)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalRecord:
        """Read back a `to_json` dict (older records lack the newer fields)."""
        return cls(**data)


def effective_route(summary: dict[str, Any]) -> str | None:
    """Where routing sent the ticket: a human-routing reason overrides the intent's route."""
    if summary.get("review_reason") in HUMAN_ROUTING_REASONS:
        return "human"
    return summary.get("route")


def build_record(gold: EvalTicket, summary: dict[str, Any], *, escalated: bool,
                 draft: str) -> EvalRecord:
    """Combine a ticket's gold fields with its final run summary."""
    failures = list(summary.get("failures") or [])
    return EvalRecord(
        id=gold.id, gold_route=gold.expected_route, gold_outcome=gold.expected_outcome,
        gold_intent=gold.expected_intent, reference_answer=gold.reference_answer,
        tags=list(gold.tags), gold_doc_ids=list(gold.expected_doc_ids),
        tenant=gold.ticket.get("tenant"), intent=predicted_intent(summary),
        route=effective_route(summary),
        status=summary.get("status") or "failed", escalated=escalated,
        review_reason=summary.get("review_reason"),
        review_decision=summary.get("review_decision"),
        confidence=summary.get("confidence"), intent_confidence=summary.get("intent_confidence"),
        draft=draft, retrieved_doc_ids=list(summary.get("retrieved_doc_ids") or []),
        cited_doc_ids=list(summary.get("cited_doc_ids") or []),
        cost=float(summary.get("cost_total") or 0.0),
        duration_ms=float(summary.get("total_duration_ms") or 0.0),
        steps=list(summary.get("step_breakdown") or []), failures=failures,
        error=summary.get("error") or None)


def failed_record(gold: EvalTicket, error: str) -> EvalRecord:
    """A ticket the workflow could not even start (counted, never dropped)."""
    return EvalRecord(id=gold.id, gold_route=gold.expected_route,
                      gold_outcome=gold.expected_outcome, gold_intent=gold.expected_intent,
                      reference_answer=gold.reference_answer, tags=list(gold.tags),
                      gold_doc_ids=list(gold.expected_doc_ids),
                      tenant=gold.ticket.get("tenant"), status="failed", error=error,
                      failures=[f"eval: {error}"])
