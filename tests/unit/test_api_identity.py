"""Who approved a review that came through the server: `api:<identity>`, never a made-up name."""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from nodes.human_review import api_identity


class _S(TypedDict, total=False):
    who: str


def _graph():
    g = StateGraph(_S)
    g.add_node("n", lambda state: {"who": api_identity()})
    g.add_edge(START, "n")
    g.add_edge("n", END)
    return g.compile()


def test_identity_of_the_authenticated_user_inside_a_run() -> None:
    out = _graph().invoke({}, {"configurable": {"langgraph_auth_user": {"identity": "alice"}}})
    assert out["who"] == "api:alice"


def test_no_auth_user_is_named_as_unauthenticated() -> None:
    assert _graph().invoke({})["who"] == "api:unauthenticated"
    assert api_identity() == "api:unauthenticated"  # outside any run


def test_hostile_identity_is_bounded() -> None:
    out = _graph().invoke({}, {"configurable": {"langgraph_auth_user": {"identity": "x" * 10_000}}})
    assert out["who"] == "api:" + "x" * 200
