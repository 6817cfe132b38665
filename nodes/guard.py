"""Guard: the last check before a reply goes out without a person.

Screening can miss an injection and a model can obey it; whatever wrote the draft, a reply that
carries a link, address, number, amount, code or promise the passages and resolved cases it
was shown (or, for ids and contact details, the ticket) do not support, or that repeats a
system prompt, goes to a reviewer with reason `unsupported_content` (graph/output_guard.py
says what counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graph.instrument import Step, node
from graph.output_guard import check_reply
from graph.prompts import system_prompts
from graph.state import State


@node("guard")
def guard(state: State, step: Step) -> dict:
    """Check the reply about to be auto-sent; any finding routes it to a reviewer."""
    draft = state["drafts"][-1]
    # Every passage and resolved case the model was shown: a draft's [n] numbers are not a
    # reliable map back to passages once the planner has searched again.
    sources = [*(state.get("passages") or []),
               *({"doc_id": "", "title": "", "text": c.get("reply", "")}
                 for c in state.get("cases") or [])]
    ticket: Mapping[str, Any] = state.get("normalized") or {}
    findings = check_reply(draft["text"], passages=sources,
                           ticket_text=f"{ticket.get('subject') or ''}\n{ticket.get('body') or ''}",
                           prompts=system_prompts())
    step.detail.update(findings=findings)
    if findings:
        return {"review_reason": "unsupported_content",
                "flags": [*(state.get("flags") or []), "unsupported_content"]}
    return {}
