"""Draft: the answer model writes a reply grounded in the retrieved passages, with citations."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from graph.instrument import Step, node
from graph.prompts import CASES_BLOCK, DRAFT_SYSTEM, DRAFT_USER, STRONGER_NOTE, defuse, ticket_block
from graph.reasons import error_text
from graph.state import State

_CITATION = re.compile(r"\[(\d{1,2})\]")


def render_documents(passages: Sequence[Mapping[str, Any]]) -> str:
    """Number the passages for the prompt, each inside its own delimiters."""
    return "\n".join(
        f'<document n="{n}" id="{p["doc_id"]}" title="{defuse(p["title"])}">\n'
        f'{defuse(p["text"])}\n</document>'
        for n, p in enumerate(passages, start=1))


def citations_of(text: str, passages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Doc ids cited in `text` as [n] that point at a real passage."""
    numbers = sorted({int(n) for n in _CITATION.findall(text)})
    return [passages[n - 1]["doc_id"] for n in numbers if 1 <= n <= len(passages)]


@node("draft")
def draft(state: State, step: Step) -> dict:
    """Write the first reply (or a regenerated one when the planner asks for it)."""
    from supportgraph.models.chat import ChatRequest, ModelsUnavailable

    ticket = state["normalized"]
    passages = state.get("passages") or []
    cases = state.get("cases") or []
    planner = state.get("planner_steps") or []
    stronger = bool(planner) and planner[-1]["action"] == "regenerate_stronger"
    cases_text = CASES_BLOCK.format(cases="\n".join(
        f"- ({c['intent']}) {defuse(c['reply'][:600])}" for c in cases)) if cases else ""
    request = ChatRequest(
        task="draft",
        system=DRAFT_SYSTEM + (STRONGER_NOTE if stronger else ""),
        user=DRAFT_USER.format(ticket=ticket_block(ticket["subject"], ticket["body"]),
                               documents=render_documents(passages), cases=cases_text),
        data={"query": state["query"], "passages": passages, "signature": None},
        max_tokens=500,
    )
    role = "planner" if stronger else "answer"
    try:
        result = step.complete(role, request, state)
    except ModelsUnavailable as exc:
        return {"error": error_text(exc.reason, exc), "review_reason": exc.reason}
    citations = citations_of(result.text, passages)
    if not citations:
        return {"error": error_text("invalid_output",
                                    "the draft cites none of the retrieved passages"),
                "failures": ["draft: no citations"]}
    step.detail.update(citations=citations, provider=result.provider, model=result.model)
    version = {"text": result.text, "citations": citations, "provider": result.provider,
               "model": result.model, "template": "stronger" if stronger else "default"}
    return {"drafts": [*(state.get("drafts") or []), version], "error": ""}
