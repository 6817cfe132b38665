"""The compiled support graph: its nodes, its edges, and a bad ticket that never reaches a model."""

from __future__ import annotations

import json

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import builder, graph
from graph.context import Context
from supportgraph.app.services import Services
from supportgraph.app.settings import Settings

NODES = {"intake", "classify", "retrieve", "draft", "tone", "rewrite", "confidence", "guard",
         "planner", "human_review", "send", "learn", "audit"}


def edges() -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in graph.get_graph().edges}


def test_compiled_graph_has_exactly_the_workflow_nodes():
    assert set(graph.nodes) - {"__start__"} == NODES
    assert set(builder.compile(checkpointer=InMemorySaver()).nodes) - {"__start__"} == NODES


def test_required_edges():
    drawn = edges()
    required = {("__start__", "intake"), ("intake", "classify"), ("intake", "audit"),
                ("rewrite", "tone"), ("send", "audit"), ("learn", "audit"),
                ("audit", "__end__")}
    assert required <= drawn, required - drawn


def test_edges_follow_the_routers_literal_types():
    drawn = edges()
    assert {t for s, t in drawn if s == "classify"} == {"retrieve", "planner", "human_review"}
    assert {t for s, t in drawn if s == "tone"} == {"rewrite", "confidence", "human_review"}
    assert {t for s, t in drawn if s == "confidence"} == {"guard", "planner", "human_review"}
    # Nothing is auto-sent without passing the output guard.
    assert {t for s, t in drawn if s == "guard"} == {"send", "learn", "human_review"}
    assert {t for s, t in drawn if s == "planner"} == {"retrieve", "draft", "human_review"}
    assert {t for s, t in drawn if s == "human_review"} == {"send", "learn", "audit"}
    # Delivery and learning run side by side; audit waits for both.
    assert {t for s, t in drawn if s == "send"} == {"audit"}
    assert {t for s, t in drawn if s == "learn"} == {"audit"}
    # Only audit ends the run, and every node has a way out.
    assert {s for s, t in drawn if t == "__end__"} == {"audit"}
    assert NODES <= {s for s, _ in drawn}


def test_bad_ticket_fails_at_intake_without_touching_a_model(tmp_path):
    services = Services(Settings(home=str(tmp_path)))
    ctx = Context().with_settings(services.settings).with_services(services)
    compiled = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "ticket:x"}}
    out = compiled.invoke({"ticket": {"id": "x", "channel": "chat", "body": ""}}, config,
                          context=ctx)
    assert out["status"] == "failed"
    assert out["error"].startswith("bad_input")
    assert [u["step"] for u in out["usage"]] == ["intake", "audit"]
    assert sum(u["model_calls"] for u in out["usage"]) == 0
    assert "normalized" not in out and "intent" not in out and "drafts" not in out
    # Only the database (and the home's PII salt) was opened: no intent model, store, tone
    # scorer or model chain.
    res = services
    assert set(res._cache) == {"db", "home_salt"}
    # The run is finished (no pending node) and audited with a failed summary.
    assert compiled.get_state(config).next == ()
    steps = [r["step"] for r in res.db.fetchall(
        "SELECT step FROM sg_audit WHERE thread_id = :t ORDER BY started_at", {"t": "ticket:x"})]
    assert steps == ["intake", "audit"]
    run = res.db.fetchone("SELECT status, summary FROM sg_runs WHERE thread_id = :t",
                          {"t": "ticket:x"})
    assert run["status"] == "failed"
    assert json.loads(run["summary"])["error"].startswith("bad_input")
    services.close()
    services.close()  # idempotent
    assert services.closed and not services._cache


def test_a_graph_run_without_services_says_so(tmp_path):
    compiled = builder.compile(checkpointer=InMemorySaver())
    with pytest.raises(RuntimeError, match="no services for this run"):
        compiled.invoke({"ticket": {"id": "x", "channel": "chat", "body": "hi"}},
                        {"configurable": {"thread_id": "ticket:y"}}, context=Context())
