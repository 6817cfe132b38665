"""Orchestration overhead: our graph vs a plain pipeline of the same nodes, same durability.

    python -m benchmarks.overhead [--quick] [--tickets N] [--home DIR] [--database-url URL]

The same node functions, on the same tickets, two ways, interleaved ticket by ticket:

(a) plain: a loop that calls the node functions in order, picks the next one with the same
    routing functions, and after every step commits one row (the step's update, as JSON) to
    Postgres: a durable event log a crashed run could be replayed from;
(b) graph: our compiled graph with the Postgres checkpointer at durability `sync`.

Models at zero latency (the offline provider). Both sides write their audit rows, outbox row
and learned case (each side in its own tenant, so neither learns from the other's answers and
both take the same path). Timed: one ticket from input to end (`graph.invoke` vs the loop).
Reported: p50/p95 per ticket, the ratio b/a, and each side's time outside the nodes.
The last line is one JSON object. A throwaway Postgres is started unless `--database-url`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.workload import cpu_count, load_average, pct, prepare_home, quiet_logs, tickets
from tests.support.pg import throwaway_postgres

TARGET_RATIO = 2.0
PLAIN_TABLE = """CREATE TABLE IF NOT EXISTS bench_plain_steps (
    thread_id TEXT NOT NULL, step INTEGER NOT NULL, node TEXT NOT NULL, update JSONB NOT NULL,
    PRIMARY KEY (thread_id, step))"""
_REDUCED = ("planner_steps", "failures", "usage")  # the `operator.add` channels of State


def _next_nodes(name: str, state: dict, runtime: Any) -> list[str]:
    """The same edges as `graph.builder`, through the same routing functions, in order.

    Where the graph runs steps side by side (`send` and `learn`), the plain loop runs them
    one after the other, each with its own committed write.
    """
    from graph import routing

    edges = {
        "intake": lambda: routing.after_intake(state),
        "classify": lambda: routing.after_classify(state, runtime),
        "retrieve": lambda: routing.after_retrieve(state, runtime),
        "draft": lambda: routing.after_draft(state, runtime),
        "tone": lambda: routing.after_tone(state, runtime),
        "rewrite": lambda: "tone",
        "confidence": lambda: routing.after_confidence(state, runtime),
        "guard": lambda: routing.after_guard(state),
        "planner": lambda: routing.after_planner(state),
        "send": lambda: [],
        "learn": lambda: "audit",
        "audit": lambda: "end",
    }
    following = edges[name]()
    return list(following) if isinstance(following, list) else [following]


def plain_run(ticket: dict, ctx: Any, db: Any) -> tuple[dict, float]:
    """Run one ticket through the node functions in a loop; one committed write per step.

    Stops before `human_review` (its `interrupt()` needs a graph): the ticket is then waiting.
    Returns the final state and the milliseconds spent inside the nodes, measured as on the
    graph side (the steps' own `usage` durations), so "outside the nodes" means the same.
    """
    from langgraph.runtime import ExecutionInfo, Runtime

    from graph.builder import builder

    thread_id = f"plain:{ticket.get('tenant')}:{ticket['id']}"
    state: dict[str, Any] = {"ticket": ticket}
    queue, step = ["intake"], 0
    while queue and queue[0] not in ("end", "human_review"):
        name = queue.pop(0)
        runtime = Runtime(context=ctx, execution_info=ExecutionInfo(
            checkpoint_id="", checkpoint_ns="", task_id=str(uuid.uuid4()), thread_id=thread_id))
        update = builder.nodes[name].runnable.func(state, runtime)
        for key, value in update.items():
            state[key] = [*state.get(key, []), *value] if key in _REDUCED else value
        db.execute("INSERT INTO bench_plain_steps (thread_id, step, node, update) "
                   "VALUES (:t, :s, :n, :u)",
                   {"t": thread_id, "s": step, "n": name,
                    "u": json.dumps(update, ensure_ascii=False, default=str)})
        step += 1
        queue.extend(n for n in _next_nodes(name, state, runtime) if n not in queue)
    if queue and queue[0] == "human_review":
        state["status"] = "awaiting_review"
    return state, sum(u["duration_ms"] for u in state.get("usage") or [])


def graph_run(runner: Any, ticket: dict) -> tuple[dict, float]:
    """Run one ticket through the compiled graph at durability `sync`."""
    thread_id = f"ticket:{ticket.get('tenant')}:{ticket['id']}"
    values = runner.graph.invoke({"ticket": ticket}, {"configurable": {"thread_id": thread_id}},
                                 context=runner.ctx, durability="sync")
    snapshot_status = values.get("status")
    if snapshot_status not in ("sent", "rejected", "stalled", "failed"):
        values["status"] = "awaiting_review"
    in_nodes = sum(u["duration_ms"] for u in values.get("usage") or [])
    return values, in_nodes


def measure(runner: Any, n: int, warmup: int) -> dict[str, Any]:
    """Interleave plain and graph runs of the same tickets; return per-ticket timings."""
    db = runner.db
    db.execute(PLAIN_TABLE)
    plain_tickets = tickets(n + warmup, "ov", tenant="plain")
    graph_tickets = tickets(n + warmup, "ov", tenant="graph")
    rows: list[dict[str, Any]] = []
    for i, (a_ticket, b_ticket) in enumerate(zip(plain_tickets, graph_tickets, strict=True)):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        row: dict[str, Any] = {}
        for side in order:
            t0 = time.perf_counter()
            if side == "a":
                state, in_nodes = plain_run(a_ticket, runner.ctx, db)
            else:
                state, in_nodes = graph_run(runner, b_ticket)
            row[side] = (time.perf_counter() - t0) * 1000.0
            row[f"{side}_nodes"] = in_nodes
            row[f"{side}_status"] = state.get("status")
            row[f"{side}_steps"] = len(state.get("usage") or [])
        if i >= warmup:
            rows.append(row)
    return summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95 per side, ratios, and the time each side spends outside the nodes."""
    a = [r["a"] for r in rows]
    b = [r["b"] for r in rows]
    a_out = [r["a"] - r["a_nodes"] for r in rows]
    b_out = [r["b"] - r["b_nodes"] for r in rows]
    same_path = sum(1 for r in rows if r["a_status"] == r["b_status"]
                    and r["a_steps"] == r["b_steps"])
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["b_status"]] = statuses.get(r["b_status"], 0) + 1
    return {
        "tickets": len(rows),
        "same_path": same_path,
        "statuses": statuses,
        "steps_per_ticket": round(sum(r["b_steps"] for r in rows) / max(len(rows), 1), 2),
        "plain_p50_ms": round(pct(a, 0.5), 2), "plain_p95_ms": round(pct(a, 0.95), 2),
        "graph_p50_ms": round(pct(b, 0.5), 2), "graph_p95_ms": round(pct(b, 0.95), 2),
        "ratio_p50": round(pct(b, 0.5) / pct(a, 0.5), 3),
        "ratio_p95": round(pct(b, 0.95) / pct(a, 0.95), 3),
        "ratio_mean": round(sum(b) / sum(a), 3),
        "plain_outside_nodes_p50_ms": round(pct(a_out, 0.5), 2),
        "graph_outside_nodes_p50_ms": round(pct(b_out, 0.5), 2),
        "graph_outside_nodes_p95_ms": round(pct(b_out, 0.95), 2),
        "nodes_p50_ms": round(pct([r["b_nodes"] for r in rows], 0.5), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few tickets (about 30 s)")
    parser.add_argument("--tickets", type=int, help="tickets per side (default 170, quick 20)")
    parser.add_argument("--home", help="an initialised SUPPORTGRAPH_HOME to copy (faster)")
    parser.add_argument("--database-url", help="an empty Postgres database (default: start one)")
    args = parser.parse_args(argv)
    n = args.tickets or (20 if args.quick else 170)
    if args.tickets is not None and args.tickets < 1:
        parser.error("--tickets must be >= 1")
    warmup = 3 if args.quick else 10
    quiet_logs()

    from graph.context import Context
    from supportgraph.app.runner import Runner
    from supportgraph.app.services import close_services
    from supportgraph.app.settings import Settings

    with tempfile.TemporaryDirectory() as tmp, throwaway_postgres(args.database_url) as url:
        home = prepare_home(Path(tmp) / "home", args.home)
        runner = Runner(Context().with_settings(Settings(home=str(home), database_url=url)))
        load_before = load_average()
        figures = measure(runner, n, warmup)
        load_after = load_average()
        close_services()

    figures.update(benchmark="overhead", quick=args.quick, target_ratio=TARGET_RATIO,
                   meets_target=figures["ratio_p50"] <= TARGET_RATIO
                   and figures["ratio_p95"] <= TARGET_RATIO,
                   load_before=load_before, load_after=load_after, cpus=cpu_count())
    print(f"orchestration overhead at equal durability ({figures['tickets']} tickets a side, "
          f"Postgres, offline models; load {load_before} -> {load_after}, {cpu_count()} CPUs)")
    print(f"  (a) plain loop + 1 committed write/step: p50 {figures['plain_p50_ms']:.1f} ms, "
          f"p95 {figures['plain_p95_ms']:.1f} ms "
          f"(outside nodes p50 {figures['plain_outside_nodes_p50_ms']:.1f} ms)")
    print(f"  (b) LangGraph + PostgresSaver, sync:   p50 {figures['graph_p50_ms']:.1f} ms, "
          f"p95 {figures['graph_p95_ms']:.1f} ms "
          f"(outside nodes p50 {figures['graph_outside_nodes_p50_ms']:.1f} ms)")
    print(f"  ratio b/a: p50 x{figures['ratio_p50']:.2f}, p95 x{figures['ratio_p95']:.2f}, "
          f"mean x{figures['ratio_mean']:.2f}; {figures['steps_per_ticket']} steps/ticket; "
          f"same path on {figures['same_path']}/{figures['tickets']}; "
          f"outcomes {figures['statuses']}")
    print(f"  target ratio <= {TARGET_RATIO}: {'met' if figures['meets_target'] else 'MISSED'}")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
