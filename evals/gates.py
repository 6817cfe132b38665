"""Regression gates: how much worse than the baseline a metric may get before the build fails.

Higher-is-better metrics take `max_drop` (absolute, in the metric's unit); lower-is-better
metrics take `max_increase_ratio` (relative) plus `max_increase` (absolute slack, so a
baseline of 0 is usable). A gates TOML file overrides the defaults metric by metric:

    [gates.auto_send_precision]
    max_drop = 0.01
    [gates.latency_p95_ms]
    max_increase_ratio = 1.0
    max_increase = 100
    [gates.cost_per_ticket]
    enabled = false
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_GATES: dict[str, dict[str, float]] = {
    "auto_send_precision": {"max_drop": 0.02},
    "route_accuracy": {"max_drop": 0.02},
    "cost_per_ticket": {"max_increase_ratio": 0.10, "max_increase": 0.0001},
    "latency_p95_ms": {"max_increase_ratio": 0.50, "max_increase": 50.0},
}
HIGHER_IS_BETTER = {"n", "intent_accuracy", "route_accuracy", "escalation_precision",
                    "escalation_recall", "auto_send_precision", "auto_send_rate",
                    "auto_send_recall", "answer_similarity", "answer_rouge_l", "groundedness"}
LOWER_IS_BETTER = {"cost_per_ticket", "cost_total", "latency_p50_ms", "latency_p95_ms",
                   "failures", "failure_rate", "failed_rate"}
RULES = {"max_drop", "max_increase_ratio", "max_increase", "enabled"}


class GateConfigError(ValueError):
    """A gates file that cannot be used."""


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict."""

    metric: str
    baseline: float | None
    current: float | None
    limit: float | None
    passed: bool
    reason: str


def load_gates(path: Path | None) -> dict[str, dict[str, float]]:
    """The default gates, overridden metric by metric by a TOML file."""
    gates = {name: dict(rule) for name, rule in DEFAULT_GATES.items()}
    if path is None:
        return gates
    if not path.is_file():
        raise GateConfigError(f"--gates {path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GateConfigError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("gates")
    if not isinstance(table, dict):
        raise GateConfigError(f"{path}: expected [gates.METRIC] tables")
    for metric, rule in table.items():
        if metric not in HIGHER_IS_BETTER | LOWER_IS_BETTER:
            raise GateConfigError(f"{path}: no metric {metric!r} to gate")
        if not isinstance(rule, dict) or set(rule) - RULES:
            raise GateConfigError(f"{path}: [gates.{metric}] takes only {', '.join(sorted(RULES))}")
        if rule.get("enabled") is False:
            gates.pop(metric, None)
            continue
        limits = {k: v for k, v in rule.items() if k != "enabled"}
        for key, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise GateConfigError(f"{path}: gates.{metric}.{key} must be a number >= 0")
        wrong = {"max_drop"} if metric in LOWER_IS_BETTER else {"max_increase_ratio",
                                                                "max_increase"}
        misused = sorted(wrong & set(limits))
        if misused:
            better = "lower" if metric in LOWER_IS_BETTER else "higher"
            raise GateConfigError(f"{path}: gates.{metric} cannot use {', '.join(misused)} "
                                  f"({better} is better)")
        gates[metric] = {k: float(v) for k, v in limits.items()}
    return gates


def check_gates(baseline: dict[str, Any], current: dict[str, Any],
                gates: dict[str, dict[str, float]]) -> list[GateResult]:
    """Compare current metrics to the baseline's under each gate."""
    results = []
    for metric, rule in gates.items():
        old, new = baseline.get(metric), current.get(metric)
        if old is None:
            results.append(GateResult(metric, old, new, None, True, "no baseline value"))
            continue
        if new is None:
            results.append(GateResult(metric, old, new, None, False,
                                      "undefined now (no tickets to compute it over)"))
            continue
        if metric in LOWER_IS_BETTER:
            limit = old * (1 + rule.get("max_increase_ratio", 0.0)) + rule.get("max_increase",
                                                                                0.0)
            passed = new <= limit + 1e-12
            reason = "ok" if passed else f"rose above {limit:.6g}"
        else:
            limit = old - rule.get("max_drop", 0.0)
            passed = new >= limit - 1e-12
            reason = "ok" if passed else f"fell below {limit:.6g}"
        results.append(GateResult(metric, old, new, round(limit, 6), passed, reason))
    return results
