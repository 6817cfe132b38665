"""Offline replies that answer: the examples of issue 16 on the shipped demo knowledge base.

Passages are the real demo KB sections (as ingest cuts them), all given the same retrieval
score, so the drafter itself has to find the section that answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from retrieval.ingest import markdown_sections
from supportgraph.models.chat import ChatRequest
from supportgraph.models.offline import OfflineProvider, question_parts
from supportgraph.models.plaintext import markdown_blocks

KB = Path(__file__).resolve().parents[2] / "retrieval" / "kb"


def passages(*files: str) -> list[dict]:
    out = []
    for name in files:
        for s in markdown_sections(name, (KB / name).read_text(encoding="utf-8")):
            out.append({"doc_id": s.doc_id, "chunk_id": s.doc_id, "title": s.title,
                        "text": s.text, "score": 0.5, "collection": "kb"})
    return out


@pytest.fixture(scope="module")
def provider(encoders) -> OfflineProvider:
    return OfflineProvider(embedder=encoders.embedder)


def draft(provider: OfflineProvider, query: str, *files: str) -> str:
    request = ChatRequest(task="draft", system="s", user="u",
                          data={"query": query, "passages": passages(*files)})
    return provider.complete(request, "offline-v1", timeout=5.0).text


def answer_of(text: str) -> str:
    return text.split("\nSources:")[0]


def sources_of(text: str) -> dict[int, str]:
    return {int(n): doc for n, doc in
            re.findall(r"^\[(\d+)\] .+ \(([^()]+)\)$", text.split("\nSources:\n")[1], re.M)}


def sentences(text: str) -> list[str]:
    body = re.sub(r"\s*\[\d+\]", "", answer_of(text))
    return [" ".join(s.lower().split()) for line in body.splitlines()
            for s in re.split(r"(?<=[.!?])\s+", line) if len(s.split()) >= 4]


INVOICE_PDF = "Where can I download the PDF of last month's invoice?"
BILLING = ("billing/finding-and-downloading-invoices.md", "billing/reissuing-invoices.md",
           "billing/duplicate-charges.md", "billing/payment-receipts.md")


def test_invoice_pdf_reply_contains_the_whole_procedure(provider):
    text = draft(provider, INVOICE_PDF, *BILLING)
    answer = answer_of(text)
    assert "Dashboard > Billing > Invoices" in answer
    assert 'Click "Download PDF"' in answer
    steps = re.findall(r"^(\d)\. ", answer, re.M)
    assert steps == ["1", "2", "3"], answer  # the numbered steps, whole and in order
    cited = set(sources_of(text).values())
    assert {d.split("#")[0] for d in cited} == {"billing/finding-and-downloading-invoices.md"}


def test_rate_limited_reply_has_no_markdown_debris(provider):
    text = draft(provider, "What does the 429 rate_limited error mean and how long should I wait?",
                 "technical/rate-limits.md", "technical/error-codes-reference.md")
    answer = answer_of(text)
    assert "rate_limited" in answer
    assert "Retry-After header" in answer
    assert "`" not in text and "**" not in text
    assert "ratelimited" not in answer


@pytest.mark.parametrize("query, files", [
    ("I think I was charged twice for the same invoice, what do I do?",
     ("billing/failed-payments-and-retries.md", "billing/duplicate-charges.md",
      "billing/refund-policy.md")),
    ("We keep hitting 429 on Scale, what is the actual limit?",
     ("technical/rate-limits.md", "technical/handling-429-retry-after.md")),
    ("Why do I get 403 domain_not_verified?", ("technical/authentication-401-vs-403.md",
                                              "technical/sending-domains-spf-dkim-dmarc.md")),
    ("Can I pay in GBP?", ("billing/uk-vat.md", "billing/billing-currencies.md")),
])
def test_replies_never_name_internal_articles(provider, query, files):
    answer = answer_of(draft(provider, query, *files))
    assert not re.search(r"\bsee\s+\"", answer, re.I), answer
    assert "(see below)" not in answer and "(see above)" not in answer


MULTI_PART = ("PO number on invoices\nOur procurement department rejects invoices without a "
              "purchase order number. Can you add PO 4500-88213 to our invoices from now on? "
              "And is it possible to get the March invoice redone with it?")


def test_multi_part_ticket_gets_one_section_per_part_never_stitched(provider):
    text = draft(provider, MULTI_PART, "billing/invoice-details-po-vat-address.md",
                 "billing/reissuing-invoices.md", "billing/duplicate-charges.md")
    answer = answer_of(text)
    assert "Billing > Details" in answer
    assert re.search(r"re-issued", answer), answer
    docs = sources_of(text)
    # Every paragraph cites passages of a single article.
    for paragraph in re.split(r"\n\s*\n", answer):
        numbers = {int(n) for n in re.findall(r"\[(\d+)\]", paragraph)}
        assert len({docs[n].split("#")[0] for n in numbers}) <= 1, paragraph


@pytest.mark.parametrize("query", [
    MULTI_PART,
    "Do you have a free plan? And is there a free trial of Growth? Also what happens at the end?",
    INVOICE_PDF,
])
def test_no_sentence_is_repeated(provider, query):
    text = draft(provider, query, "billing/plans-and-pricing.md", "billing/free-trial.md",
                 "billing/invoice-details-po-vat-address.md", *BILLING)
    said = sentences(text)
    assert said and len(said) == len(set(said)), text


def test_reply_opens_with_a_sentence_then_steps_then_sources(provider):
    text = draft(provider, "how do i rotate my api key",
                 "technical/api-keys-creating-and-rotating.md")
    greeting, _, rest = text.partition("\n\n")
    assert greeting == "Hi there,"
    first_line = rest.splitlines()[0]
    assert first_line.endswith((".", ":", "]")) and not re.match(r"^\d\.", first_line)
    assert re.search(r"^1\. .*\n2\. .*\n3\. ", rest, re.M)
    assert rest.index("1. ") < rest.index("\nSources:\n[")


def test_code_blocks_and_header_names_are_kept(provider):
    text = draft(provider, "how do I authenticate, which header?",
                 "technical/authentication-401-vs-403.md")
    answer = answer_of(text)
    assert '-H "Authorization: Bearer rp_live_xxxxxxxxxxxx"' in answer
    assert "Authorization header" in answer


def test_question_parts():
    assert question_parts("Subject?\nHi. Is there a discount? Also, send the invoice.") == [
        "Is there a discount?", "Also, send the invoice."]
    # A short question asks about the sentence before it.
    assert question_parts("x\nWe want to be billed in euros. Is that possible?") == [
        "We want to be billed in euros. Is that possible?"]
    assert question_parts("") == []
    assert len(question_parts("s\n" + "Why is this broken? " * 50)) == 1


# ------------------------------------------------------------------ markdown to plain text

def rendered(markdown: str) -> str:
    return "\n".join(b.render() for b in markdown_blocks(markdown))


@pytest.mark.parametrize("markdown, expected", [
    ("Error code `rate_limited`, plus a `Retry-After` header.",
     "Error code rate_limited, plus a Retry-After header."),
    ("Use **snake_case** and *emphasis* but keep my_var_name and 2*3*4.",
     "Use snake_case and emphasis but keep my_var_name and 2*3*4."),
    ("Read [the status page](https://status.example.com) or [setup](webhooks-setup.md).",
     "Read the status page (https://status.example.com) or setup."),
    ("Unbalanced `backtick and **bold stays readable.",
     "Unbalanced `backtick and **bold stays readable."),
    ("A 403 means no scope; see \"Sending domains\". Refunds are quick. See \"Duplicate charges\" "
     "for how to report one.", "A 403 means no scope. Refunds are quick."),
    ("Ask for a re-issue (see below). See the VAT articles for details.", "Ask for a re-issue."),
    ("| Plan | Requests per second |\n|---|---|\n| Free | 10 |\n| Growth | 100 |",
     "- Free: Requests per second 10\n- Growth: Requests per second 100"),
    ("1. Go to Dashboard > Billing.\n2. Click `Save`.\n\n- a bullet", "1. Go to Dashboard > "
     "Billing.\n2. Click Save.\n- a bullet"),
    ("Run:\n\n```bash\ncurl -H 'X: `y`' \\\n  https://x\n```\nDone.",
     "Run:\n    curl -H 'X: `y`' \\\n      https://x\nDone."),
    ("", ""),
    ("```\nunclosed fence", "    unclosed fence"),
])
def test_markdown_to_plain_text(markdown, expected):
    assert rendered(markdown) == expected


def test_huge_and_hostile_markdown_is_rendered_quickly():
    import time

    hostile = ("`" * 5000 + "*_" * 5000 + "[" * 3000 + "](" * 3000 + "\n| a |" * 2000
               + "\n1. step" * 2000)
    # CPU time, not wall time: catastrophic backtracking burns CPU, a loaded machine does not.
    started = time.process_time()
    out = rendered(hostile)
    assert time.process_time() - started < 2.0
    assert isinstance(out, str)


def test_a_fact_repeated_across_sections_is_said_once(provider):
    said_twice = "Your templates and domains are kept for as long as the account exists."
    near_copy = "Your templates and domains are kept, for as long as the account exists!"
    passages = [
        {"doc_id": "a.md#trial", "title": "Trial > Starting", "score": 0.6,
         "text": f"{said_twice} To start the trial, sign up at relaypoint.example and choose "
                 "Start free trial."},
        {"doc_id": "a.md#end", "title": "Trial > When it ends", "score": 0.6,
         "text": f"{near_copy} At the end of the trial the account moves to the Free plan."},
    ]
    request = ChatRequest(task="draft", system="s", user="u", data={
        "query": "How do I start the trial? And what happens when the trial ends?",
        "passages": passages})
    text = provider.complete(request, "offline-v1", timeout=5.0).text
    assert "moves to the Free plan" in text and "sign up at relaypoint.example" in text
    assert answer_of(text).count("as long as the account exists") == 1, text
