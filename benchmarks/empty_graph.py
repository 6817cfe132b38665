"""The workflow's shape with empty nodes: what LangGraph and the checkpointer cost by themselves.

The same supersteps as a sent ticket (intake, classify, retrieve, draft, tone, confidence, guard,
then send and learn side by side, then audit), on the same Postgres checkpointer
(`graph.persistence.open_checkpointer`, durability `sync`), with a small state and nodes that
do nothing but, for `draft`, wait out the injected answer-model latency. No node code of ours
runs, so whatever this adds over the model time at N tickets in flight is a floor no change
to our nodes can go below on this machine.
"""

from __future__ import annotations

import operator
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict

from benchmarks.workload import pct

STEPS = ("intake", "classify", "retrieve", "draft", "tone", "confidence", "guard")


class EmptyState(TypedDict, total=False):
    """Ids and a few scores, about what our state carries besides texts."""

    ticket: dict
    status: str
    scores: dict
    usage: Annotated[list, operator.add]


def build(db: Any, answer_s: float) -> Any:
    """The empty-node graph, compiled with our Postgres checkpointer on `db`."""
    from langgraph.graph import END, START, StateGraph

    from graph.persistence import checkpoint_serde, open_checkpointer

    def step(name: str) -> Any:
        def run(state: EmptyState) -> dict:
            if name == "draft" and answer_s:
                time.sleep(answer_s)
            update: dict = {"usage": [name]}
            if name in STEPS:  # send and learn run side by side: only reducer keys
                update["scores"] = {name: 1.0}
            return update

        return run

    builder = StateGraph(EmptyState)
    for name in (*STEPS, "send", "learn", "audit"):
        builder.add_node(name, step(name))
    builder.add_edge(START, STEPS[0])
    for a, b in zip(STEPS, STEPS[1:], strict=False):
        builder.add_edge(a, b)
    builder.add_edge(STEPS[-1], "send")
    builder.add_edge(STEPS[-1], "learn")
    builder.add_edge(["send", "learn"], "audit")
    builder.add_edge("audit", END)
    return builder.compile(checkpointer=open_checkpointer(db, checkpoint_serde(None)))


def run_wave(graph: Any, n: int, in_flight: int, prefix: str,
             model_s: float) -> dict[str, float]:
    """`n` tickets on `in_flight` threads at once; latency and latency beyond `model_s`."""
    latencies: list[float] = []

    def one(i: int) -> None:
        t0 = time.perf_counter()
        graph.invoke({"ticket": {"id": f"{prefix}-{i}"}, "status": "processing"},
                     {"configurable": {"thread_id": f"empty:{prefix}-{i}"}}, durability="sync")
        latencies.append((time.perf_counter() - t0) * 1000.0)

    started = time.perf_counter()
    cpu0 = time.process_time()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - started
    extra = [x - model_s * 1000.0 for x in latencies]
    return {"tickets": n, "seconds": round(elapsed, 2), "tickets_per_s": round(n / elapsed, 2),
            "cpu_ms_per_ticket": round((time.process_time() - cpu0) * 1000.0 / n, 2),
            "p50_ms": round(pct(latencies, 0.5), 1), "p95_ms": round(pct(latencies, 0.95), 1),
            "extra_p50_ms": round(pct(extra, 0.5), 1), "extra_p95_ms": round(pct(extra, 0.95), 1)}
