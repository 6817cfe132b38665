"""The eval report: `report.json` (stable keys other tools read) and `report.md` (tables).

`report.json` always has `metrics` with the keys of HEADLINE (fractions in [0, 1]; None when
there was nothing to compute a metric over), `intervals` (95% bootstrap, fixed seed), `counts`
(tickets behind each metric), `by_intent` and `by_route` (gold intent / route), `steps`,
`failures_by_reason`, `outcomes`, `route_confusion`, `calibration` (intent confidence),
`confidence_calibration` (answer confidence; its ECE is `metrics.confidence_ece`),
`threshold_curve` (auto-send precision and rate per confidence threshold), `worst_tickets`
and `meta`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.evaluators import (
    WORST_KINDS,
    Score,
    by_group,
    confidence_reliability,
    confusion,
    default_evaluators,
    failures_by_reason,
    reliability,
    score_all,
    step_breakdown,
    threshold_curve,
    worst_tickets,
)
from evals.gates import GateResult
from evals.records import EvalRecord

REPORT_VERSION = 1
HEADLINE = ("n", "intent_accuracy", "route_accuracy", "escalation_precision",
            "escalation_recall", "auto_send_precision", "answer_similarity", "groundedness",
            "cost_per_ticket", "latency_p50_ms", "latency_p95_ms", "failures")
EXTRA = ("auto_send_rate", "auto_send_recall", "gold_citation_precision", "confidence_ece",
         "answer_rouge_l", "cost_total", "failure_rate", "failed_rate")
GROUP_KEYS = ("n", "intent_accuracy", "route_accuracy", "escalation_precision",
              "escalation_recall", "auto_send_precision", "auto_send_rate")


def _values(scores: dict[str, Score], keys: Sequence[str]) -> dict[str, Any]:
    return {k: scores[k].value for k in keys}


def build_report(records: Sequence[EvalRecord], meta: dict[str, Any],
                 embed: Callable[[list[str]], np.ndarray]) -> dict[str, Any]:
    """Score the records and assemble the report dict (`embed`: the run root's embedder)."""
    scores = score_all(records, default_evaluators(embed))
    answer_calibration = confidence_reliability(records)
    scores["confidence_ece"] = Score(answer_calibration["ece"], answer_calibration["n"])
    return {
        "version": REPORT_VERSION,
        "metrics": _values(scores, HEADLINE + EXTRA),
        "intervals": {k: list(s.ci) for k, s in scores.items() if s.ci is not None},
        "counts": {k: s.n for k, s in scores.items()},
        "by_intent": {k: _values(v, GROUP_KEYS) for k, v in by_group(records,
                                                                     "gold_intent").items()},
        "by_route": {k: _values(v, GROUP_KEYS) for k, v in by_group(records,
                                                                    "gold_route").items()},
        "steps": step_breakdown(records),
        "failures_by_reason": failures_by_reason(records),
        "outcomes": confusion(records, "gold_outcome", "predicted_outcome"),
        "route_confusion": confusion(records, "gold_route", "route"),
        "calibration": reliability(records),
        "confidence_calibration": answer_calibration,
        "threshold_curve": threshold_curve(records),
        "worst_tickets": worst_tickets(records),
        "meta": meta,
    }


def load_baseline(path: Path) -> dict[str, Any]:
    """Read an earlier `report.json`; ValueError with a one-line reason if unusable."""
    if not path.is_file():
        raise ValueError(f"--baseline {path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--baseline {path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError(f"--baseline {path}: not an eval report (no 'metrics' object)")
    return data


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |"
              for row in rows]
    return "\n".join(lines)


def diff_rows(baseline: dict[str, Any], current: dict[str, Any],
              gates: Sequence[GateResult]) -> list[list[Any]]:
    """Metric, baseline, current, change and gate verdict, for the headline metrics."""
    verdicts = {g.metric: g for g in gates}
    rows = []
    for key in HEADLINE + EXTRA:
        old, new = baseline.get(key), current.get(key)
        delta = (new - old) if isinstance(old, int | float) and isinstance(new, int | float) \
            else None
        gate = verdicts.get(key)
        verdict = "" if gate is None else ("pass" if gate.passed else f"FAIL: {gate.reason}")
        rows.append([key, old, new, None if delta is None else round(delta, 6), verdict])
    return rows


def diff_text(rows: list[list[Any]]) -> str:
    """The diff as aligned plain text (for stdout)."""
    lines = [f"{'metric':<22}{'baseline':>12}{'current':>12}{'change':>12}  gate"]
    for key, old, new, delta, verdict in rows:
        change = "n/a" if delta is None else f"{delta:+.4g}"
        lines.append(f"{key:<22}{_fmt(old):>12}{_fmt(new):>12}{change:>12}  {verdict}")
    return "\n".join(lines)


def show_command(row: dict[str, Any], home: str | None) -> str:
    """The command that explains one ticket of this eval (its home is the eval's own)."""
    prefix = f"SUPPORTGRAPH_HOME={shlex.quote(home)} " if home else ""
    tenant = f" --tenant {shlex.quote(row['tenant'])}" if row.get("tenant") else ""
    return f"{prefix}supportgraph show {shlex.quote(row['id'])}{tenant}"


def _curve_section(report: dict[str, Any]) -> list[str]:
    settings = report["meta"].get("settings") or {}
    current = settings.get("confidence_threshold")
    calibration = report.get("confidence_calibration") or {}
    rows = [[f"**{r['threshold']:.2f}**" if current is not None
             and abs(r["threshold"] - float(current)) < 1e-9 else f"{r['threshold']:.2f}",
             r["auto_sent"], r["auto_send_rate"], r["auto_send_precision"],
             r["auto_send_recall"]] for r in report.get("threshold_curve") or []]
    return [
        "## Auto-send precision against the confidence threshold",
        "Replayed from the recorded answer confidences: at threshold t a ticket counts as sent "
        "when it was auto-sent or escalated only for low answer confidence, and its confidence "
        "is at least t (tickets escalated for other reasons stay escalated; planner retries are "
        "not replayed)." + (f" This run used {current} (bold)." if current is not None else ""),
        _table(["threshold", "auto-sent", "auto-send rate", "precision", "recall"], rows),
        "## Answer confidence calibration",
        f"ECE {_fmt(calibration.get('ece'))} over {calibration.get('n', 0)} tickets with a "
        "confidence. A ticket counts as correct when its gold outcome is `sent` (it should have "
        "been sent) and, if it has `expected_doc_ids`, its draft cites one of them (it would "
        "have been sent correctly).",
        _table(["confidence bin", "n", "mean confidence", "correct (share)"],
               [[f"{b['low']:.1f} to {b['high']:.1f}", b["n"], b["confidence"], b["accuracy"]]
                for b in calibration.get("bins") or []]),
    ]


def _worst_section(report: dict[str, Any]) -> list[str]:
    worst = report.get("worst_tickets") or []
    if not worst:
        return ["## Worst tickets", "None: no ticket was wrongly auto-sent or wrongly escalated."]
    home = report["meta"].get("home")
    lines = [f"{n}. `{r['id']}` ({r['kind'].replace('_', ' ')}: {WORST_KINDS[r['kind']]}); "
             f"confidence {_fmt(r['confidence'])}, reason {r['review_reason'] or 'none'}, route "
             f"{r['route']} (gold {r['gold_route']}), intent {r['intent']} (gold "
             f"{r['gold_intent']})\n   `{show_command(r, home)}`"
             for n, r in enumerate(worst, start=1)]
    return ["## Worst tickets",
            "Wrongly auto-sent first (most confident first), then wrongly escalated. Each line "
            "ends with the command that shows what happened to the ticket.",
            "\n".join(lines)]


def markdown(report: dict[str, Any], plots: Sequence[str],
             diff: list[list[Any]] | None = None) -> str:
    """The human-readable report."""
    m, ci, counts, meta = (report["metrics"], report["intervals"], report["counts"],
                           report["meta"])
    parts = [f"# Eval report: {meta.get('dataset_name')}",
             f"{m['n']} tickets, review `{meta.get('review')}`, concurrency "
             f"{meta.get('concurrency')}, {meta.get('wall_seconds')} s wall time. "
             f"Overrides: `{json.dumps(meta.get('overrides') or {})}`.",
             "## Headline metrics",
             _table(["metric", "value", "95% CI", "n"],
                    [[k, m[k], "" if k not in ci else f"{ci[k][0]:.3f} to {ci[k][1]:.3f}",
                      counts.get(k)] for k in HEADLINE + EXTRA])]
    if diff is not None:
        parts += ["## Against the baseline",
                  _table(["metric", "baseline", "current", "change", "gate"], diff)]
    outcome_cols = ("sent", "human", "failed")
    parts += ["## Outcomes (gold rows, predicted columns)",
              _table(["gold", *outcome_cols],
                     [[g, *[row.get(c, 0) for c in outcome_cols]]
                      for g, row in report["outcomes"].items()])]
    route_cols = sorted({c for row in report["route_confusion"].values() for c in row})
    parts += ["## Routes (gold rows, taken columns)",
              _table(["gold", *route_cols],
                     [[g, *[row.get(c, 0) for c in route_cols]]
                      for g, row in report["route_confusion"].items()])]
    for title, key in (("By gold route", "by_route"), ("By gold intent", "by_intent")):
        parts += [f"## {title}",
                  _table([key.removeprefix("by_"), *GROUP_KEYS],
                         [[name, *[v[k] for k in GROUP_KEYS]]
                          for name, v in report[key].items()])]
    parts += ["## Steps",
              _table(["step", "runs", "p50 ms", "p95 ms", "mean ms", "cost", "model calls"],
                     [[s, v["runs"], v["p50_ms"], v["p95_ms"], v["mean_ms"], v["cost"],
                       v["model_calls"]] for s, v in report["steps"].items()])]
    parts += _curve_section(report)
    parts += _worst_section(report)
    failures = report["failures_by_reason"]
    parts += ["## Failures by reason",
              _table(["reason", "count"], [[k.replace("|", "/"), v]
                                           for k, v in failures.items()])
              if failures else "None."]
    parts += ["## Plots", *[f"![{name}]({name})" for name in plots]]
    return "\n\n".join(parts) + "\n"
