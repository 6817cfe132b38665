"""The offline provider (models/offline.py): extractive drafts, template rewrites, fixed plans.

Drafting scores sentences with the MiniLM embedder; it is loaded once per process and shared.
"""

from __future__ import annotations

import json
import re

import pytest

from graph.reasons import PLANNER_ACTIONS
from supportgraph.models.chat import ChatRequest, InvalidOutput
from supportgraph.models.offline import OfflineProvider
from supportgraph.models.tone import ToneScorer

PASSAGES = [
    {"doc_id": "billing/invoices.md#where", "chunk_id": "c1", "title": "Where to find invoices",
     "collection": "kb_billing", "score": 0.62,
     "text": "Invoices are issued on the first day of each month. You can download every invoice "
             "as a PDF from the Billing page of the dashboard. Annual plans are invoiced on the "
             "renewal date."},
    {"doc_id": "billing/invoices.md#vat", "chunk_id": "c2", "title": "VAT and PO numbers",
     "collection": "kb_billing", "score": 0.48,
     "text": "Add a PO number and VAT ID in the billing details of your workspace. They appear "
             "on invoices issued after the change. Past invoices can be re-issued once on "
             "request within 90 days."},
    {"doc_id": "billing/refunds.md#annual", "chunk_id": "c3", "title": "Refunds for annual plans",
     "collection": "kb_billing", "score": 0.31,
     "text": "Refunds for annual plans are available within 14 days of the renewal date. "
             "Monthly plans are not refunded, but you can cancel them at any time."},
]
QUERY = "Where can I download the PDF of last month's invoice, and can it show our VAT ID?"
CITED_LINE = re.compile(r"^(?P<body>.+) \[(?P<n>\d+)\]$", re.MULTILINE)
SOURCE_LINE = re.compile(r"^\[(?P<n>\d+)\] (?P<title>.+) \((?P<doc>[^()]+)\)$")


@pytest.fixture(scope="module")
def provider(encoders) -> OfflineProvider:
    return OfflineProvider(embedder=encoders.embedder)


def draft_request(passages=PASSAGES, query=QUERY, **data) -> ChatRequest:
    return ChatRequest(task="draft", system="system", user="user",
                       data={"query": query, "passages": passages, **data})


def complete(provider: OfflineProvider, request: ChatRequest) -> str:
    return provider.complete(request, "offline-v1", timeout=5.0).text


@pytest.fixture(scope="module")
def drafted(provider) -> str:
    return complete(provider, draft_request())


def split_draft(text: str) -> tuple[str, list[re.Match]]:
    body, sep, sources = text.partition("\nSources:\n")
    assert sep, "a draft ends with a Sources list"
    lines = [SOURCE_LINE.match(line) for line in sources.strip().splitlines()]
    assert all(lines), sources
    # The fixed opening is not a claim; what follows it is the extracted answer.
    return body.replace("Thanks for reaching out. ", "", 1), lines


def test_draft_cites_only_passages_that_exist(drafted):
    body, sources = split_draft(drafted)
    numbers = [int(n) for n in re.findall(r"\[(\d+)\]", body)]
    assert numbers, "the draft cites something"
    assert set(numbers) == {int(m["n"]) for m in sources}
    doc_ids = {p["doc_id"] for p in PASSAGES}
    assert {m["doc"] for m in sources} <= doc_ids
    assert len({m["doc"] for m in sources}) == len(sources)  # no source listed twice


def test_numbering_matches_the_sources_list(drafted):
    body, sources = split_draft(drafted)
    # [n] is the n-th passage given (as in the prompt remote models read), whatever the order
    # the draft uses them in.
    assert all(PASSAGES[int(m["n"]) - 1]["doc_id"] == m["doc"] for m in sources)
    by_number = {int(m["n"]): m for m in sources}
    by_doc = {p["doc_id"]: p for p in PASSAGES}
    cited = list(CITED_LINE.finditer(body))
    assert cited
    for line in cited:
        source = by_number[int(line["n"])]
        passage = by_doc[source["doc"]]
        assert source["title"] == passage["title"]
        # Every sentence before [n] is extracted from the passage that [n] names.
        for sentence in re.split(r"(?<=\.)\s+", line["body"].strip()):
            assert sentence in passage["text"], (sentence, passage["doc_id"])


def test_citations_map_back_to_the_passages_used(provider):
    from nodes.draft import citations_of

    # The answering passage is ranked last: its number must still name it.
    reordered = [PASSAGES[2], PASSAGES[1], PASSAGES[0]]
    text = provider.complete(draft_request(passages=reordered), "m", timeout=5).text
    body, sources = split_draft(text)
    assert re.search(r"download every invoice as a PDF[^\n]* \[3\]$", body, re.M), body
    assert citations_of(text, reordered)[-1] == "billing/invoices.md#where"
    assert sorted(citations_of(text, reordered)) == sorted(m["doc"] for m in sources)


def test_draft_answers_from_the_relevant_passage(drafted):
    body, sources = split_draft(drafted)
    assert "download every invoice as a PDF" in body
    assert sources[0]["doc"] == "billing/invoices.md#where"


def test_draft_is_deterministic(provider, drafted):
    assert complete(provider, draft_request()) == drafted
    assert complete(OfflineProvider(embedder=provider.embedder), draft_request()) == drafted


def test_draft_respects_max_sections(provider):
    two_asks = "Where can I download the PDF of last month's invoice? Also, can I get a refund?"
    text = OfflineProvider(max_sections=1, embedder=provider.embedder).complete(
        draft_request(query=two_asks), "m", timeout=5).text
    body, sources = split_draft(text)
    assert len(sources) == 1


def test_draft_uses_greeting_and_signature(provider):
    text = complete(provider, draft_request(greeting="Dear Ada,", signature="Relaypoint Billing"))
    assert text.startswith("Dear Ada,\n")
    assert "Best regards,\nRelaypoint Billing\n" in text


@pytest.mark.parametrize("passages", [
    [],
    [{"doc_id": "d", "title": "t", "text": "# Heading only\n| a | b |\n```\ncode block here "
                                           "that is long enough to count\n```\nShort one."}],
    [{"doc_id": "d", "title": "t", "text": ""}],
])
def test_no_usable_sentences_is_invalid_output(provider, passages):
    with pytest.raises(InvalidOutput):
        complete(provider, draft_request(passages=passages))


def test_unknown_task_is_invalid_output(provider):
    with pytest.raises(InvalidOutput, match="summarise"):
        complete(provider, ChatRequest(task="summarise", system="s", user="u"))


# --------------------------------------------------------------------------- rewrite

RUDE_DRAFT = (
    "Hi there,\n\nYOU SHOULD HAVE READ THE DOCS!!! Obviously the invoice is on the Billing page "
    "[1]. You must add the VAT ID before the invoice is issued [2]!!\n\nBest regards,\nSupport"
    "\n\nSources:\n[1] Where to find invoices (billing/invoices.md#where)\n"
    "[2] VAT and PO numbers (billing/invoices.md#vat)"
)


def rewrite(provider, draft: str, template: str = "warm") -> str:
    return complete(provider, ChatRequest(task="rewrite", system="s", user="u",
                                          data={"draft": draft, "template": template}))


@pytest.mark.parametrize("template", ["warm", "formal", "unknown-template"])
def test_rewrite_keeps_every_citation_and_drops_shouting(provider, template):
    text = rewrite(provider, RUDE_DRAFT, template)
    assert sorted(re.findall(r"\[\d+\]", text)) == sorted(re.findall(r"\[\d+\]", RUDE_DRAFT))
    assert "!!" not in text
    assert not re.search(r"\b[A-Z]{4,}\b", text.split("\nSources:")[0])
    assert "Sources:\n[1] Where to find invoices" in text
    reasons = ToneScorer().score(text).reasons
    assert not [r for r in reasons if r.startswith(("-shouting", "-exclamations"))], reasons


def test_rewrite_softens_and_improves_tone(provider):
    scorer = ToneScorer()
    text = rewrite(provider, RUDE_DRAFT, "warm")
    assert "obviously" not in text.lower()
    assert "you must" not in text.lower()
    assert scorer.score(text).score > scorer.score(RUDE_DRAFT).score
    assert text.startswith("Hi there,\n\nThank you")
    assert text.count("Hi there,") == 1  # the old greeting is replaced, not repeated


def test_rewrite_is_deterministic(provider):
    assert rewrite(provider, RUDE_DRAFT, "formal") == rewrite(provider, RUDE_DRAFT, "formal")


def test_rewrite_keeps_technical_acronyms(provider):
    draft = ("Hi there,\n\nPublish the DKIM and DMARC records, then send over HTTPS [1].\n\n"
             "Sources:\n[1] Sender authentication (technical/dkim.md)")
    text = rewrite(provider, draft)
    for acronym in ("DKIM", "DMARC", "HTTPS"):
        assert acronym in text, text


# --------------------------------------------------------------------------- plan

REASONS = ["low_intent_confidence", "nothing_retrieved", "low_answer_confidence",
           "invalid_output", "out_of_scope", "something_new"]


def plan(provider, reason: str, tried: list[str], allowed=None) -> dict:
    data = {"reason": reason, "tried": tried}
    if allowed is not None:
        data["allowed"] = allowed
    request = ChatRequest(task="plan", system="s", user="u", data=data,
                          json_schema={"type": "object"})
    return json.loads(complete(provider, request))


@pytest.mark.parametrize("reason", REASONS)
def test_plan_never_repeats_never_invents_and_ends_in_handoff(provider, reason):
    tried: list[str] = []
    for _ in range(len(PLANNER_ACTIONS) + 1):
        decision = plan(provider, reason, tried)
        assert set(decision) == {"action", "reason"}
        action = decision["action"]
        assert action in PLANNER_ACTIONS
        if action == "handoff":
            break
        assert action not in tried
        tried.append(action)
    else:
        pytest.fail(f"the policy for {reason} never hands off: {tried}")
    assert action == "handoff"


def test_plan_policy_first_choices(provider):
    assert plan(provider, "nothing_retrieved", [])["action"] == "reformulate_and_retrieve"
    assert plan(provider, "low_answer_confidence", [])["action"] == "search_resolved_cases"
    assert plan(provider, "invalid_output", [])["action"] == "regenerate_stronger"
    assert plan(provider, "low_intent_confidence", [])["action"] == "search_other_kb"


def test_plan_respects_allowed_and_ignores_invented_actions(provider):
    decision = plan(provider, "nothing_retrieved", [], allowed=["drop_table", "search_other_kb"])
    assert decision["action"] == "search_other_kb"
    assert plan(provider, "nothing_retrieved", [], allowed=["drop_table"])["action"] == "handoff"


def test_plan_exhausted_policy_hands_off_with_reason(provider):
    decision = plan(provider, "invalid_output", ["regenerate_stronger"])
    assert decision == {"action": "handoff", "reason": "offline policy for invalid_output"}
    everything = [a for a in PLANNER_ACTIONS if a != "handoff"]
    assert plan(provider, "nothing_retrieved", everything)["action"] == "handoff"
