"""Rewrite: a draft whose tone scored too low is rewritten with a different prompt."""

from __future__ import annotations

from graph.instrument import Step, node
from graph.prompts import REWRITE_SYSTEMS, REWRITE_USER, data_block
from graph.reasons import error_text
from graph.state import State

TEMPLATE_ORDER = ("warm", "formal")


@node("rewrite")
def rewrite(state: State, step: Step) -> dict:
    """Rewrite the latest draft with the next template; citations must survive."""
    from nodes.draft import citations_of
    from supportgraph.models.chat import ChatRequest, ModelsUnavailable

    current = state["drafts"][-1]
    count = state.get("rewrites", 0)
    template = TEMPLATE_ORDER[count % len(TEMPLATE_ORDER)]
    tone_result = state["tone"]
    request = ChatRequest(
        task="rewrite", system=REWRITE_SYSTEMS[template],
        user=REWRITE_USER.format(score=tone_result["score"],
                                 reasons=", ".join(tone_result["reasons"]),
                                 draft=data_block("draft", current["text"])),
        data={"draft": current["text"], "template": template}, max_tokens=600)
    try:
        result = step.complete("answer", request, state)
    except ModelsUnavailable as exc:
        return {"error": error_text(exc.reason, exc), "review_reason": exc.reason,
                "rewrites": count + 1}
    passages = state.get("passages") or []
    citations = citations_of(result.text, passages)
    if set(citations) != set(current["citations"]):
        # A rewrite that loses or invents citations is not the same answer any more.
        return {"rewrites": count + 1,
                "failures": ["rewrite: citations changed; keeping the previous draft"]}
    version = {"text": result.text, "citations": citations, "provider": result.provider,
               "model": result.model, "template": template}
    step.detail.update(template=template)
    return {"drafts": [*state["drafts"], version], "rewrites": count + 1}
