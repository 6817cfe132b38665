"""PNG plots of an eval report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.records import EvalRecord

ROUTES = ("billing", "technical", "human")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def route_confusion(records: Sequence[EvalRecord], path: Path) -> Path:
    """Gold route (rows) against the route taken (columns), counts in the cells."""
    plt = _pyplot()
    predicted = list(ROUTES) + sorted({str(r.route) for r in records} - set(ROUTES))
    gold = list(ROUTES) + sorted({r.gold_route for r in records} - set(ROUTES))
    counts = [[sum(1 for r in records if r.gold_route == g and str(r.route) == p)
               for p in predicted] for g in gold]
    fig, ax = plt.subplots(figsize=(1.6 * len(predicted) + 2, 1.2 * len(gold) + 1.5))
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(predicted)), predicted)
    ax.set_yticks(range(len(gold)), gold)
    ax.set_xlabel("route taken")
    ax.set_ylabel("gold route")
    top = max(max(row) for row in counts) if counts else 0
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > top / 2 else "black")
    ax.set_title(f"Routes (n={len(records)})")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def distribution(values: Sequence[float], path: Path, *, title: str, xlabel: str,
                 marks: dict[str, float | None]) -> Path:
    """A histogram with vertical lines at named values (p50, p95, mean)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if values:
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#4c72b0")
    for (label, value), style in zip(marks.items(), ("--", ":", "-."), strict=False):
        if value is not None:
            ax.axvline(value, color="#c44e52", linestyle=style, label=f"{label} {value:.4g}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tickets")
    if any(v is not None for v in marks.values()):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def no_data(path: Path, *, title: str, message: str) -> Path:
    """A plot that says in words why there is nothing to draw (never an empty axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    ax.set_title(title)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _diagram(ax: Any, calibration: dict[str, Any], *, xlabel: str, ylabel: str,
             title: str) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    bins = calibration.get("bins") or []
    if bins:
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=0.1,
               align="edge", alpha=0.6, color="#4c72b0", edgecolor="black", label="observed")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o",
                color="#c44e52", label="mean confidence")
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel=xlabel, ylabel=ylabel,
           title=f"{title} (ECE {calibration.get('ece')}, n={calibration.get('n', 0)})")
    ax.legend(loc="upper left", fontsize=8)


def reliability(calibration: dict[str, Any], records: Sequence[EvalRecord],
                path: Path, answer: dict[str, Any] | None = None) -> Path:
    """Intent reliability; answer-confidence reliability; answer confidence by gold outcome."""
    plt = _pyplot()
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    _diagram(middle, answer or {}, xlabel="answer confidence",
             ylabel="right to send (share)", title="Answer confidence")
    _diagram(left, calibration, xlabel="intent confidence", ylabel="intent correct (share)",
             title="Intent")
    for gold, color in (("sent", "#55a868"), ("human", "#c44e52")):
        xs = [r.confidence for r in records if r.gold_outcome == gold and r.confidence is not None]
        right.hist(xs, bins=20, range=(0, 1), alpha=0.6, color=color, label=f"gold {gold}")
    right.set(xlabel="answer confidence", ylabel="tickets",
              title="Answer confidence by gold outcome")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def threshold_curve(curve: Sequence[dict[str, Any]], path: Path,
                    current: float | None = None) -> Path:
    """Auto-send precision and rate against the confidence threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [r["threshold"] for r in curve]
    for key, label, color in (("auto_send_precision", "auto-send precision", "#55a868"),
                              ("auto_send_rate", "auto-send rate", "#4c72b0")):
        points = [(x, r[key]) for x, r in zip(xs, curve, strict=True) if r[key] is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", color=color, label=label)
    if current is not None:
        ax.axvline(float(current), color="#c44e52", linestyle="--",
                   label=f"threshold used {float(current):.2f}")
    ax.set(xlim=(min(xs, default=0) - 0.02, 1.02), ylim=(0, 1.05),
           xlabel="answer confidence threshold", ylabel="share",
           title="Auto-send precision and rate by threshold")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(report: dict[str, Any], records: Sequence[EvalRecord], out: Path) -> list[str]:
    """Write every plot into `out`; returns their file names."""
    metrics = report["metrics"]
    costs = [r.cost for r in records]
    latencies = [r.duration_ms for r in records if r.steps]
    cost_plot = out / "cost_distribution.png"
    settings = report.get("meta", {}).get("settings") or {}
    paths = [
        route_confusion(records, out / "route_confusion.png"),
        distribution(costs, cost_plot, title="Cost per ticket", xlabel="USD",
                     marks={"mean": metrics.get("cost_per_ticket")})
        if any(costs) else no_data(cost_plot, title="Cost per ticket",
                                   message="no cost recorded\n(every model call was free, "
                                           "e.g. the offline provider)"),
        distribution(latencies, out / "latency_distribution.png",
                     title="Workflow latency per ticket", xlabel="ms",
                     marks={"p50": metrics.get("latency_p50_ms"),
                            "p95": metrics.get("latency_p95_ms")}),
        reliability(report["calibration"], records, out / "reliability.png",
                    report.get("confidence_calibration")),
        threshold_curve(report.get("threshold_curve") or [], out / "threshold_curve.png",
                        settings.get("confidence_threshold")),
    ]
    return [p.name for p in paths]
