"""Evaluators: small named classes, each turning eval records into a few scores.

Every score says how many tickets it is computed over (`n`), and proportions and means carry a
95% bootstrap confidence interval with a fixed seed, so two runs of the same eval print the
same numbers. A score with nothing to compute it over is `None`, never a made-up 0 or 1.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evals.records import EvalRecord

SEED = 20241125
RESAMPLES = 1000
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class Score:
    """One metric value, the number of tickets behind it, and its 95% interval."""

    value: float | None
    n: int
    ci: tuple[float, float] | None = None


def bootstrap_ci(values: Sequence[float], *, seed: int = SEED,
                 resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """Percentile bootstrap interval (95%) of the mean of `values`; None when empty."""
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(resamples, len(arr)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return round(float(low), 4), round(float(high), 4)


def mean_score(values: Sequence[float], *, with_ci: bool = True) -> Score:
    """The mean of `values` (a proportion when they are 0/1), with its interval."""
    if not values:
        return Score(None, 0)
    value = round(float(np.mean(values)), 6)
    return Score(value, len(values), bootstrap_ci(values) if with_ci else None)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation between closest ranks); None when empty."""
    return round(float(np.percentile(values, q)), 3) if len(values) else None


class IntentAccuracy:
    """Share of tickets with a gold intent whose predicted intent matches it."""

    name = "intent_accuracy"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Score the records."""
        hits = [float(r.intent == r.gold_intent) for r in records if r.gold_intent]
        return {self.name: mean_score(hits)}


class RouteAccuracy:
    """Share of tickets routed where the gold route says (a failed run counts as a miss)."""

    name = "route_accuracy"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Score the records."""
        return {self.name: mean_score([float(r.route == r.gold_route) for r in records])}


class EscalationPrecisionRecall:
    """Escalation = the ticket went to human review. Gold `human` is the positive class."""

    name = "escalation"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Precision over escalated tickets, recall over gold-human tickets."""
        precision = [float(r.gold_outcome == "human") for r in records if r.escalated]
        recall = [float(r.escalated) for r in records if r.gold_outcome == "human"]
        return {"escalation_precision": mean_score(precision),
                "escalation_recall": mean_score(recall)}


class AutoSendPrecision:
    """Of the tickets sent with no human, the share whose gold outcome was `sent`."""

    name = "auto_send_precision"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Precision, plus the auto-send rate and recall (how much work it took off humans)."""
        precision = [float(r.gold_outcome == "sent") for r in records if r.auto_sent]
        rate = [float(r.auto_sent) for r in records]
        recall = [float(r.auto_sent) for r in records if r.gold_outcome == "sent"]
        return {self.name: mean_score(precision), "auto_send_rate": mean_score(rate),
                "auto_send_recall": mean_score(recall)}


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (what ROUGE-L compares)."""
    return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a) * len(b)))."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1: LCS-based precision and recall of the candidate against the reference."""
    cand, ref = tokens(candidate), tokens(reference)
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


class GoldCitationPrecision:
    """Of the auto-sent tickets that have gold source ids, the share citing at least one.

    None (not 0 or 1) when no auto-sent ticket has gold ids: the dataset says nothing then.
    """

    name = "gold_citation_precision"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Score the records."""
        hits = [float(bool(r.cites_gold)) for r in records
                if r.auto_sent and r.cites_gold is not None]
        return {self.name: mean_score(hits)}


class AnswerSimilarity:
    """The model's last draft against the reference answer, for gold-`sent` tickets.

    `answer_similarity` is the MiniLM cosine (clipped to [0, 1]); `answer_rouge_l` the word
    overlap. Tickets that got no draft are left out (and counted in `n` of neither): routing and
    escalation metrics already say what happened to them.
    """

    name = "answer_similarity"

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self.embed = embed

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Score the records."""
        pairs = [(r.draft, r.reference_answer) for r in records
                 if r.gold_outcome == "sent" and r.draft.strip() and r.reference_answer.strip()]
        rouge = [rouge_l(d, ref) for d, ref in pairs]
        cosine: list[float] = []
        if pairs:
            vectors = np.asarray(self.embed([t for pair in pairs for t in pair]), dtype=float)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            cosine = [float(np.clip(vectors[2 * i] @ vectors[2 * i + 1], 0.0, 1.0))
                      for i in range(len(pairs))]
        return {self.name: mean_score(cosine), "answer_rouge_l": mean_score(rouge)}


class Groundedness:
    """Share of the draft's citations that point at a passage retrieved for that ticket."""

    name = "groundedness"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Pooled over every citation of every draft."""
        hits = [float(doc in set(r.retrieved_doc_ids)) for r in records
                for doc in r.cited_doc_ids]
        return {self.name: mean_score(hits)}


class CostPerTicket:
    """Mean model cost per ticket in USD (every ticket, reviewed ones included)."""

    name = "cost_per_ticket"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Mean and total."""
        costs = [r.cost for r in records]
        total = round(float(sum(costs)), 8)
        return {self.name: mean_score(costs), "cost_total": Score(total, len(costs))}


class Latency:
    """Workflow time per ticket (sum of step durations, so a review's wait is not counted)."""

    name = "latency"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """p50 and p95 over tickets that ran at least one step."""
        times = [r.duration_ms for r in records if r.steps]
        return {"latency_p50_ms": Score(percentile(times, 50), len(times)),
                "latency_p95_ms": Score(percentile(times, 95), len(times))}


class Failures:
    """Tickets that recorded a failure (recovered or not) and tickets that ended `failed`."""

    name = "failures"

    def evaluate(self, records: Sequence[EvalRecord]) -> dict[str, Score]:
        """Counts and rates."""
        n = len(records)
        with_failure = sum(1 for r in records if r.failures or r.status == "failed")
        failed = [float(r.status == "failed") for r in records]
        return {self.name: Score(with_failure, n),
                "failure_rate": mean_score([float(bool(r.failures) or r.status == "failed")
                                            for r in records]),
                "failed_rate": mean_score(failed)}


def failure_reason(failure: str) -> str:
    """Group failure texts by their stable part: the step and what went wrong, not the ids."""
    text = failure.split(";", 1)[0]
    text = re.sub(r"\b(offline|openai|anthropic):\S+", r"\1", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:100]


def failures_by_reason(records: Sequence[EvalRecord]) -> dict[str, int]:
    """How often each failure reason occurred, most frequent first."""
    counts: Counter[str] = Counter()
    for r in records:
        for failure in r.failures:
            counts[failure_reason(failure)] += 1
        if r.status == "failed" and not r.failures:
            counts[f"status failed: {failure_reason(r.error or 'no error recorded')}"] += 1
    return dict(counts.most_common())


def step_breakdown(records: Sequence[EvalRecord]) -> dict[str, dict[str, Any]]:
    """Per workflow step: executions, p50/p95/mean duration, total cost and model calls."""
    durations: dict[str, list[float]] = defaultdict(list)
    costs: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for r in records:
        for s in r.steps:
            durations[s["step"]].append(float(s["duration_ms"]))
            costs[s["step"]] += float(s.get("cost") or 0.0)
            calls[s["step"]] += int(s.get("model_calls") or 0)
    return {step: {"runs": len(times), "p50_ms": percentile(times, 50),
                   "p95_ms": percentile(times, 95), "mean_ms": round(float(np.mean(times)), 3),
                   "cost": round(costs[step], 8), "model_calls": calls[step]}
            for step, times in sorted(durations.items(), key=lambda kv: -sum(kv[1]))}


def confusion(records: Sequence[EvalRecord], gold: str, predicted: str) -> dict[str, dict]:
    """Counts of (gold value -> predicted value) for two record attributes."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        table[str(getattr(r, gold))][str(getattr(r, predicted))] += 1
    return {g: dict(sorted(row.items())) for g, row in sorted(table.items())}


def reliability(records: Sequence[EvalRecord], bins: int = 10) -> dict[str, Any]:
    """Intent confidence against intent correctness, binned, with the calibration error (ECE)."""
    pairs = [(r.intent_confidence, float(r.intent == r.gold_intent)) for r in records
             if r.gold_intent and r.intent_confidence is not None]
    return calibration_bins(pairs, bins)


# Escalations that only the confidence threshold decided: a lower threshold would have sent them.
THRESHOLD_REASONS = frozenset({"low_answer_confidence"})
CURVE_THRESHOLDS = tuple(round(t / 20, 2) for t in range(10, 21))


def threshold_curve(records: Sequence[EvalRecord],
                    thresholds: Sequence[float] = CURVE_THRESHOLDS) -> list[dict[str, Any]]:
    """Auto-send precision and rate had the confidence threshold been each of `thresholds`.

    Replayed from the recorded confidences: a ticket counts as sent at threshold t when it was
    auto-sent or escalated only for low answer confidence, and its confidence is >= t. Tickets
    escalated for any other reason (out of scope, injection, non-English, ...) stay escalated.
    The planner's retries are not replayed, so rows far below the run's threshold are an
    estimate.
    """
    eligible = [r for r in records if r.confidence is not None
                and (r.auto_sent or r.review_reason in THRESHOLD_REASONS)]
    gold_sent = sum(1 for r in records if r.gold_outcome == "sent")
    rows = []
    for t in thresholds:
        sent = [r for r in eligible if float(r.confidence or 0.0) >= t]
        right = sum(1 for r in sent if r.gold_outcome == "sent")
        rows.append({"threshold": t, "auto_sent": len(sent),
                     "auto_send_rate": round(len(sent) / len(records), 4) if records else None,
                     "auto_send_precision": round(right / len(sent), 4) if sent else None,
                     "auto_send_recall": round(right / gold_sent, 4) if gold_sent else None})
    return rows


def answer_correct(record: EvalRecord) -> bool:
    """What answer confidence should predict: this reply is right and should be sent.

    The ticket's gold outcome is `sent` and, when it has gold source ids, the draft cites one.
    """
    return record.gold_outcome == "sent" and record.cites_gold is not False


def calibration_bins(pairs: Sequence[tuple[float, float]], bins: int = 10) -> dict[str, Any]:
    """Reliability bins of (confidence, right) pairs and their ECE (the one definition)."""
    rows = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(c, ok) for c, ok in pairs if low <= c < high or (b == bins - 1 and c == 1.0)]
        if inside:
            rows.append({"low": low, "high": high, "n": len(inside),
                         "confidence": round(float(np.mean([c for c, _ in inside])), 4),
                         "accuracy": round(float(np.mean([ok for _, ok in inside])), 4)})
    ece = (sum(row["n"] * abs(row["confidence"] - row["accuracy"]) for row in rows)
           / len(pairs)) if pairs else None
    return {"bins": rows, "ece": round(ece, 4) if ece is not None else None, "n": len(pairs)}


def confidence_reliability(records: Sequence[EvalRecord], bins: int = 10) -> dict[str, Any]:
    """Answer confidence against `answer_correct`, binned, with its calibration error (ECE).

    Over every ticket that got a confidence score, sent or escalated.
    """
    pairs = [(min(1.0, max(0.0, float(r.confidence))), float(answer_correct(r)))
             for r in records if r.confidence is not None]
    return {**calibration_bins(pairs, bins),
            "label": "gold outcome sent, and the draft cites a gold source when the ticket has "
                     "gold source ids"}


WORST_KINDS = {"wrongly_auto_sent": "sent with no human, gold outcome human",
               "wrongly_escalated": "sent to a human, gold outcome sent"}


def worst_tickets(records: Sequence[EvalRecord], k: int = 10) -> list[dict[str, Any]]:
    """The `k` worst decisions: wrongly auto-sent first, then wrongly escalated.

    Within each kind the most confident come first: a confidently wrong send is the worst
    failure, and a confident draft that still went to a human wasted the most work.
    """
    def row(r: EvalRecord, kind: str) -> dict[str, Any]:
        return {"id": r.id, "tenant": r.tenant, "kind": kind, "confidence": r.confidence,
                "review_reason": r.review_reason, "gold_route": r.gold_route, "route": r.route,
                "gold_intent": r.gold_intent, "intent": r.intent}

    def by_confidence(r: EvalRecord) -> tuple[float, str]:
        return (-(r.confidence if r.confidence is not None else -1.0), r.id)

    sent = sorted((r for r in records if r.auto_sent and r.gold_outcome == "human"),
                  key=by_confidence)
    escalated = sorted((r for r in records if r.escalated and r.gold_outcome == "sent"),
                       key=by_confidence)
    rows = [row(r, "wrongly_auto_sent") for r in sent]
    rows += [row(r, "wrongly_escalated") for r in escalated]
    return rows[:k]


def default_evaluators(embed: Callable[[list[str]], np.ndarray]) -> list[Any]:
    """Every evaluator of a full report, in report order."""
    return [IntentAccuracy(), RouteAccuracy(), EscalationPrecisionRecall(), AutoSendPrecision(),
            GoldCitationPrecision(), AnswerSimilarity(embed), Groundedness(), CostPerTicket(),
            Latency(), Failures()]


GROUP_EVALUATORS = (IntentAccuracy, RouteAccuracy, EscalationPrecisionRecall, AutoSendPrecision)


def score_all(records: Sequence[EvalRecord], evaluators: Sequence[Any]) -> dict[str, Score]:
    """Run evaluators over the records; `n` is the number of records."""
    scores = {"n": Score(len(records), len(records))}
    for evaluator in evaluators:
        scores.update(evaluator.evaluate(records))
    return scores


def by_group(records: Sequence[EvalRecord], key: str) -> dict[str, dict[str, Score]]:
    """The cheap proportion metrics per value of a gold attribute (intent or route)."""
    groups: dict[str, list[EvalRecord]] = defaultdict(list)
    for r in records:
        groups[str(getattr(r, key))].append(r)
    return {name: score_all(rows, [cls() for cls in GROUP_EVALUATORS])
            for name, rows in sorted(groups.items())}
