"""The support workflow graph: `builder` (uncompiled) and `graph` (for `langgraph dev`).

`graph` is compiled without a checkpointer: the LangGraph server brings its own. The CLI
compiles `builder` with the SQLite or Postgres checkpointer from `graph.persistence`.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from graph import routing
from graph.context import Context
from graph.state import InputState, State
from nodes.audit import audit
from nodes.classify import classify
from nodes.confidence import confidence
from nodes.draft import draft
from nodes.guard import guard
from nodes.human_review import human_review
from nodes.intake import intake
from nodes.learn import learn
from nodes.planner import planner
from nodes.retrieve import retrieve
from nodes.rewrite import rewrite
from nodes.send import send
from nodes.tone import tone

# Data nodes retry transient errors (a dropped connection) before the failure is recorded.
_DATA_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.2)

builder = StateGraph(State, context_schema=Context, input_schema=InputState)
builder.add_node("intake", intake)
builder.add_node("classify", classify)
builder.add_node("retrieve", retrieve, retry_policy=_DATA_RETRY)
builder.add_node("draft", draft)
builder.add_node("tone", tone)
builder.add_node("rewrite", rewrite)
builder.add_node("confidence", confidence)
builder.add_node("guard", guard)
builder.add_node("planner", planner)
builder.add_node("human_review", human_review)
builder.add_node("send", send, retry_policy=_DATA_RETRY)
builder.add_node("learn", learn, retry_policy=_DATA_RETRY)
builder.add_node("audit", audit, retry_policy=_DATA_RETRY)

builder.add_edge(START, "intake")
builder.add_conditional_edges("intake", routing.after_intake)
builder.add_conditional_edges("classify", routing.after_classify)
builder.add_conditional_edges("retrieve", routing.after_retrieve)
builder.add_conditional_edges("draft", routing.after_draft)
builder.add_conditional_edges("tone", routing.after_tone)
builder.add_edge("rewrite", "tone")
builder.add_conditional_edges("confidence", routing.after_confidence)
builder.add_conditional_edges("guard", routing.after_guard, [*routing.DELIVER, "human_review"])
builder.add_conditional_edges("planner", routing.after_planner)
builder.add_conditional_edges("human_review", routing.after_review, [*routing.DELIVER, "audit"])
builder.add_edge(list[str](routing.DELIVER), "audit")  # waits for both
builder.add_edge("audit", END)

graph = builder.compile()
graph.name = "supportgraph"
