"""A run the LangGraph server starts: its Context is the request's JSON, completed by the root.

The server coerces the request's `context` dict with `Context(**context)` and hands the graph
the factory's root in its config (`server_graph`). The deployment's per-run defaults
(`SUPPORTGRAPH_<FIELD>`) must reach that run's nodes and routers, and a value the caller sent
must win over them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import builder
from graph.instrument import SERVICES_KEY
from supportgraph.app.services import Services
from supportgraph.app.settings import read_settings

ANSWERABLE = {"id": "srv-ctx-1", "channel": "chat",
              "body": "Where can I download the PDF of last month's invoice?"}


def server_like_graph(root: Services):
    """The workflow as `Services.server_graph` binds it, with a checkpointer for interrupts."""
    return builder.compile(checkpointer=InMemorySaver()).with_config(
        configurable={SERVICES_KEY: root})


@pytest.mark.parametrize(("sent", "expected"), [
    ({}, "awaiting_review"),  # the deployment's threshold (1.01) applies
    ({"confidence_threshold": 0.77}, "sent"),  # the caller's value wins, even the default
])
def test_a_request_context_gets_the_deployment_defaults_and_its_own_values_win(
    demo_home: Path, monkeypatch: pytest.MonkeyPatch, sent: dict, expected: str
) -> None:
    monkeypatch.setenv("SUPPORTGRAPH_CONFIDENCE_THRESHOLD", "1.01")
    monkeypatch.setenv("SUPPORTGRAPH_PLANNER_ENABLED", "false")
    with Services(read_settings()) as root:
        graph = server_like_graph(root)
        config = {"configurable": {"thread_id": f"t:{expected}"}}
        out = graph.invoke({"ticket": ANSWERABLE}, config, context=dict(sent))
        state = out if "__interrupt__" not in out else graph.get_state(config).values
        status = "awaiting_review" if "__interrupt__" in out else state.get("status")
        assert status == expected, state.get("review_reason")
        if expected == "awaiting_review":  # the reviewer is told why
            assert "Review needed: **low_confidence**" in str(out["__interrupt__"])
