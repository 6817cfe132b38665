"""Operational figures over a date range, straight from the audit tables.

Tickets are the runs (`sg_runs`) created in the range; cost and latency come from the audit
rows (`sg_audit`) of those runs, so a ticket decided days later still counts in full towards
the day it arrived. Percentiles are nearest-rank (an observed value, no interpolation).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from graph.state import TERMINAL_STATUSES
from supportgraph.app.timerange import TimeRange


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def compute_stats(db: Any, span: TimeRange) -> dict[str, Any]:
    """Tickets by terminal state, escalation rate, cost per ticket and day, step latencies."""
    params = {"start": span.start or "", "end": span.end or "\uffff"}
    runs = db.fetchall(
        "SELECT thread_id, status, created_at FROM sg_runs "
        "WHERE created_at >= :start AND created_at < :end", params)
    threads = {r["thread_id"]: r for r in runs}
    reviewed = {r["thread_id"]: r for r in db.fetchall(
        "SELECT r.thread_id, r.queue FROM sg_reviews r JOIN sg_runs s ON s.thread_id = r.thread_id "
        "WHERE s.created_at >= :start AND s.created_at < :end", params)}
    events = db.fetchall(
        "SELECT a.thread_id, a.step, a.outcome, a.duration_ms, a.cost_usd FROM sg_audit a "
        "JOIN sg_runs s ON s.thread_id = a.thread_id "
        "WHERE s.created_at >= :start AND s.created_at < :end", params)

    by_state = Counter({status: 0 for status in TERMINAL_STATUSES})
    by_state.update(r["status"] for r in runs)
    cost_by_thread: dict[str, float] = defaultdict(float)
    durations: dict[str, list[float]] = defaultdict(list)
    for event in events:
        cost_by_thread[event["thread_id"]] += event["cost_usd"] or 0.0
        # A paused review step measures the time to the pause, not the human's wait.
        durations[event["step"]].append(float(event["duration_ms"]))
    per_day: dict[str, dict[str, float]] = {}
    for thread_id, run in sorted(threads.items(), key=lambda kv: kv[1]["created_at"]):
        day = per_day.setdefault(run["created_at"][:10], {"tickets": 0, "cost_usd": 0.0})
        day["tickets"] += 1
        day["cost_usd"] += cost_by_thread.get(thread_id, 0.0)
    deliveries = {"pending": 0, "sending": 0, "delivered": 0, "dead": 0}
    deliveries.update({r["state"]: int(r["n"]) for r in db.fetchall(
        "SELECT coalesce(d.state, 'pending') AS state, count(*) AS n FROM sg_outbox o "
        "JOIN sg_runs s ON s.thread_id = o.thread_id LEFT JOIN sg_deliveries d "
        "ON d.delivery_key = o.delivery_key WHERE s.created_at >= :start AND "
        "s.created_at < :end GROUP BY coalesce(d.state, 'pending')", params)})
    n = len(runs)
    total_cost = sum(cost_by_thread.get(t, 0.0) for t in threads)
    return {
        "range": {"since": span.start, "until": span.end},
        "tickets": n,
        "by_state": dict(by_state),
        "escalated": len(reviewed),
        "escalation_rate": round(len(reviewed) / n, 6) if n else 0.0,
        "supervisor_escalations": sum(1 for r in reviewed.values() if r["queue"] == "supervisor"),
        "cost_total_usd": round(total_cost, 8),
        "cost_per_ticket_usd": round(total_cost / n, 8) if n else 0.0,
        "per_day": {d: {"tickets": int(v["tickets"]), "cost_usd": round(v["cost_usd"], 8)}
                    for d, v in per_day.items()},
        "deliveries": deliveries,
        "latency_ms": {step: {"n": len(v), "p50": round(percentile(v, 50), 3),
                              "p95": round(percentile(v, 95), 3)}
                       for step, v in sorted(durations.items())},
    }


def format_stats(stats: dict[str, Any]) -> str:
    """The figures as a short text report for people."""
    rng = stats["range"]
    lines = [f"tickets {stats['tickets']} (since {rng['since'] or 'the start'}, "
             f"until {rng['until'] or 'now'})",
             "by state: " + ", ".join(f"{k} {v}" for k, v in stats["by_state"].items()),
             f"escalation rate {stats['escalation_rate']:.1%} ({stats['escalated']} to a human, "
             f"{stats['supervisor_escalations']} to a supervisor)",
             f"cost ${stats['cost_total_usd']:.4f} total, ${stats['cost_per_ticket_usd']:.6f} "
             "per ticket"]
    deliveries = stats.get("deliveries") or {}
    lines.append("deliveries: " + ", ".join(f"{k} {v}" for k, v in deliveries.items())
                 + (" (dead letters: see `supportgraph show TICKET`)"
                    if deliveries.get("dead") else ""))
    for day, figures in stats["per_day"].items():
        lines.append(f"  {day}: {figures['tickets']} tickets, ${figures['cost_usd']:.4f}")
    lines.append(f"{'step':<18}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}")
    for step, lat in stats["latency_ms"].items():
        lines.append(f"{step:<18}{lat['n']:>6}{lat['p50']:>10.1f}{lat['p95']:>10.1f}")
    return "\n".join(lines)
