"""Retrieve: knowledge-base passages and similar resolved cases, in one step.

The query is embedded once and used for both searches. A Qdrant that cannot be reached fails
the step fast with `retrieval_unavailable`; the ticket then goes to a human, never to a draft
written from nothing.
"""

from __future__ import annotations

from graph.instrument import Step, node
from graph.reasons import error_text
from graph.state import State

COLLECTIONS = {"billing": "kb_billing", "technical": "kb_technical"}


def _action(state: State) -> str | None:
    """The planner's last action, if any."""
    steps = state.get("planner_steps") or []
    return steps[-1]["action"] if steps else None


def _collections(state: State, available: list[str]) -> list[str]:
    """The route's `kb_<route>` collection, else every KB collection.

    Every collection also when the planner asks to search the other KBs.
    """
    routed = f"kb_{state.get('route')}"
    if _action(state) == "search_other_kb" or routed not in available:
        return available
    return [routed]


@node("retrieve")
def retrieve(state: State, step: Step) -> dict:
    """Search the routed knowledge base (or both) and `resolved_cases` for the ticket."""
    from retrieval.cases import search_cases
    from retrieval.store import RetrievalUnavailable
    from supportgraph.models.answerability import correct_spelling, stopwords

    ctx = step.ctx
    query = state["query"][:2000]
    tenant = state["normalized"].get("tenant")
    update: dict = {}
    try:
        if _action(state) == "reformulate_and_retrieve" and step.res.answerability is not None:
            # Nothing was found: search again with the ticket's typos corrected to the KB's
            # own words ("upgarde" -> "upgrade"); later steps read the corrected text too.
            corrected = correct_spelling(state["query"], step.res.answerability.profile,
                                         stopwords())
            if corrected != state["query"]:
                query, update["query"] = corrected[:2000], corrected
                step.detail["reformulated"] = True
        collections = _collections(state, step.res.kb_collections())
        vector = step.res.embedder.encode_one(query)
        hits = []
        for collection in collections:
            hits.extend(step.res.store.search(collection, query, k=ctx.retrieval_k,
                                              query_vector=vector))
        cases = search_cases(step.res.store, query, k=ctx.case_k, tenant=tenant,
                             query_vector=vector)
    except RetrievalUnavailable as exc:
        return {"error": error_text("retrieval_unavailable", exc),
                "review_reason": "retrieval_unavailable"}
    relevant = [h for h in hits if h.dense_score >= ctx.min_relevance]
    relevant.sort(key=lambda h: h.score, reverse=True)
    passages = [
        {"doc_id": h.doc_id, "chunk_id": h.chunk_id, "title": h.title, "text": h.text,
         "score": round(float(h.dense_score), 4), "collection": h.collection}
        for h in relevant[: ctx.retrieval_k]
    ]
    case_hits = [
        {"ticket_id": c.ticket_id, "intent": c.intent, "reply": c.reply,
         "score": round(float(c.score), 4)}
        for c in cases
    ]
    step.detail.update(collections=collections, passages=[p["doc_id"] for p in passages],
                       scores=[p["score"] for p in passages], cases=len(case_hits))
    return {**update, "passages": passages, "cases": case_hits}
