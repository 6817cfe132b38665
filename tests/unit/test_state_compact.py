"""`compact_closed`: what pruning empties in a closed ticket's final state, and what it keeps."""

from __future__ import annotations

from graph.state import compact_closed


def _state() -> dict:
    passage = {"doc_id": "billing/refunds.md#window", "chunk_id": "c-1", "title": "Refunds",
               "text": "Refunds are possible within 30 days.", "score": 0.81,
               "collection": "kb_billing"}
    return {
        "normalized": {"id": "t-1", "channel": "chat", "subject": "", "body": "Refund?",
                       "customer_id": None, "tenant": None},
        "passages": [passage, {**passage, "doc_id": "billing/fees.md", "chunk_id": "c-2"}],
        "cases": [{"ticket_id": "old-1", "intent": "refund", "reply": "Sure, see [1].",
                   "score": 0.7}],
        "drafts": [{"text": "First try [1].", "citations": ["billing/refunds.md#window"],
                    "provider": "offline", "model": "m", "template": "answer"},
                   {"text": "Kinder try [1].", "citations": ["billing/refunds.md#window"],
                    "provider": "offline", "model": "m", "template": "rewrite"}],
        "final_reply": "Kinder try [1].",
        "status": "sent",
    }


def test_compact_empties_heavy_texts_and_keeps_shapes_ids_and_the_reply() -> None:
    state = _state()
    update = compact_closed(state)
    assert set(update) == {"passages", "cases", "drafts"}
    assert [p["text"] for p in update["passages"]] == ["", ""]
    assert [{k: v for k, v in p.items() if k != "text"} for p in update["passages"]] == [
        {k: v for k, v in p.items() if k != "text"} for p in state["passages"]]
    assert update["cases"] == [{"ticket_id": "old-1", "intent": "refund", "reply": "",
                                "score": 0.7}]
    assert update["drafts"][0] == {**state["drafts"][0], "text": ""}
    assert update["drafts"][1] == state["drafts"][1]  # the last version is kept whole
    assert state["passages"][0]["text"]  # the input is not modified


def test_compact_is_idempotent_and_leaves_small_states_alone() -> None:
    state = _state()
    compacted = {**state, **compact_closed(state)}
    assert compact_closed(compacted) == {}
    assert compact_closed({"status": "failed", "error": "bad input"}) == {}
    one_draft = {**compacted, "drafts": [_state()["drafts"][0]]}
    assert compact_closed(one_draft) == {}
