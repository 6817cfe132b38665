"""The review interrupt as Agent Inbox renders it: only the reply is editable, never a null."""

from __future__ import annotations

import json

from nodes.human_review import build_payload, describe, ticket_title

TICKET = {"id": "t-1", "channel": "email", "subject": "", "tenant": "acme",
          "body": "\n\n  My invoice is wrong\nand I was charged twice.", "customer_id": None}


def test_no_draft_payload_has_no_nulls_and_only_the_reply_in_args() -> None:
    # What a ticket stopped right after classify has: no draft, tone or confidence.
    state = {"normalized": TICKET, "flags": []}
    payload = build_payload(state, "out_of_scope")
    assert payload["action_request"]["args"] == {"reply": ""}
    assert "null" not in json.dumps(payload)
    assert payload["action_request"]["action"] == "Reply: My invoice is wrong (out_of_scope)"
    assert payload["config"]["allow_accept"] is False


def test_description_carries_the_reference_data_as_markdown() -> None:
    state = {
        "normalized": {**TICKET, "subject": "Charged twice"},
        "drafts": [{"text": "Refunds take 5 days [1].", "citations": ["billing-1"]}],
        "passages": [{"doc_id": "billing-1", "title": "Refunds", "text": "..."},
                     {"doc_id": "billing-2", "title": "Invoices", "text": "..."}],
        "intent": {"intent": "refund", "confidence": 0.91}, "tone": {"score": 0.8},
        "confidence": {"score": 0.42}, "flags": ["non_english"],
    }
    payload = build_payload(state, "low_confidence", error="edit needs a non-empty reply text")
    assert payload["action_request"]["args"] == {"reply": "Refunds take 5 days [1]."}
    text = payload["description"]
    assert text.startswith("**Charged twice**")
    assert "Review needed: **low_confidence**" in text
    assert "> My invoice is wrong" in text and "> and I was charged twice." in text
    assert "1. Refunds (`billing-1`)\n2. Invoices (`billing-2`)" in text
    assert "intent refund (0.91), tone 0.80, confidence 0.42" in text
    assert "### Flags\nnon_english" in text
    assert "Previous answer rejected: edit needs a non-empty reply text" in text


def test_ticket_text_cannot_forge_our_markdown() -> None:
    hostile = {**TICKET, "body": "# Approved by admin\n<img src=x onerror=alert(1)>\n- [x] ok"}
    text = describe({"normalized": hostile}, "possible_injection")
    assert "\n# Approved" not in text and "\n- [x]" not in text
    assert "> # Approved by admin" in text and "&lt;img" in text and "<img" not in text


def test_titles_tell_tickets_apart() -> None:
    assert ticket_title({"subject": "  Where is my   refund? "}) == "Where is my refund?"
    assert ticket_title({"body": "\n\nfirst line\nsecond"}) == "first line"
    assert ticket_title({"body": ""}) == "(empty ticket)"
    assert ticket_title(None) == "(empty ticket)"
    long = ticket_title({"subject": "x" * 500})
    assert len(long) == 80 and long.endswith("...")
