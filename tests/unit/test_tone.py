"""The tone scorer (models/tone.py): politeness in [0, 1] with readable reasons."""

from __future__ import annotations

import pytest

from supportgraph.models.tone import ToneScorer

THRESHOLD = 0.7  # the default Context.tone_threshold


@pytest.fixture(scope="module")
def scorer() -> ToneScorer:
    return ToneScorer()


POLITE = [
    "Hi Maria,\n\nThanks for reaching out, and sorry for the trouble. You can download the PDF "
    "from the Billing page [1]. Let me know if anything is unclear.\n\nBest regards,\nSupport",
    "Hello,\n\nThank you for your patience. Please rotate the key in the dashboard [1]; we are "
    "happy to help if the new key fails.\n\nKind regards,\nThe Relaypoint team",
    "Good morning,\n\nI appreciate the detailed report. Please check that the DKIM and DMARC "
    "records are published over HTTPS-served DNS tooling [1]. Just reply if it still fails."
    "\n\nCheers,\nSam",
]


@pytest.mark.parametrize("text", POLITE)
def test_polite_reply_scores_at_least_threshold(scorer, text):
    result = scorer.score(text)
    assert result.score >= THRESHOLD, result
    assert not [r for r in result.reasons if r.startswith("-")], result.reasons


BASE = ("Hi there,\n\nThanks for reaching out. The invoice is on the Billing page [1]. {}\n\n"
        "Best regards,\nSupport")


@pytest.mark.parametrize(("text", "reason"), [
    (BASE.format("You should have read the docs before writing to us."), "-blame"),
    (BASE.format("As I already said, this is your fault."), "-blame"),
    (BASE.format("THIS IS EXPLAINED ON THE PAGE."), "-shouting"),
    (BASE.format("Look at the page!!!"), "-exclamations"),
    (BASE.format("That is not our problem, deal with it."), "-dismissive"),
    (BASE.format("Honestly this question is ridiculous."), "-insult"),
    ("READ THE MANUAL. NOT OUR PROBLEM!!!", "-shouting"),
    ("whatever. stop emailing us.", "-dismissive"),
])
def test_rude_reply_scores_below_threshold_with_the_reason_named(scorer, text, reason):
    result = scorer.score(text)
    assert result.score < THRESHOLD, result
    assert any(r.startswith(reason) for r in result.reasons), result.reasons


def test_reasons_quote_the_offending_text(scorer):
    result = scorer.score("Hello. YOUR ACCOUNT IS LOCKED.")
    (shouting,) = [r for r in result.reasons if r.startswith("-shouting")]
    assert "YOUR ACCOUNT" in shouting


@pytest.mark.parametrize("text", [
    "Hi there,\n\nPlease check the DKIM DMARC alignment [1].\n\nBest regards,\nSupport",
    "Hi there,\n\nThe HTTPS JSON endpoint returns an HMAC UUID [1].\n\nBest regards,\nSupport",
    "Hi there,\n\nPlease check your DKIM, SPF and DMARC records [1].\n\nBest regards,\nSupport",
    "Hi there,\n\nWebhooks are sent over HTTP/HTTPS as JSON [1].\n\nBest regards,\nSupport",
    "Hi there,\n\nUse the REST API with an SDK or plain SMTP [1].\n\nBest regards,\nSupport",
])
def test_acronyms_are_not_shouting(scorer, text):
    result = scorer.score(text)
    assert not [r for r in result.reasons if r.startswith("-shouting")], result.reasons


def test_sources_list_is_not_scored(scorer):
    body = "Hi there,\n\nThanks! The invoice is on the Billing page [1].\n\nBest regards,\nSupport"
    with_sources = body + "\nSources:\n[1] STUPID TITLE IN CAPITALS!!! (doc)"
    assert scorer.score(with_sources) == scorer.score(body)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_empty_reply_scores_zero(scorer, text):
    result = scorer.score(text)
    assert result.score == 0.0
    assert result.reasons == ["empty reply"]


WEIRD = [
    "!", "!!!!!!!!!!!!!!!!!!!!", "?" * 500, "A", "OK", "😀" * 50, "🙂 thanks 🙏",
    "STUPID IDIOT DUMB PATHETIC INCOMPETENT RIDICULOUS!!! " * 20,
    "thank you " * 300 + "best regards",
    "sorry " * 1000, "\x00\x01\x02", "\u202eevil rtl", "Sources:\n[1] x",
    "\nSources:", "<script>alert(1)</script>", "null", "NaN", "0" * 10_000,
    "Ünïcödé façade naïve café", "你好，谢谢", "مرحبا شكرا", "a\u0301" * 100,
]


@pytest.mark.parametrize("text", WEIRD, ids=[f"weird{i}" for i in range(len(WEIRD))])
def test_score_always_in_unit_interval(scorer, text):
    result = scorer.score(text)
    assert isinstance(result.score, float)
    assert 0.0 <= result.score <= 1.0
    assert result.reasons


def test_scoring_is_deterministic(scorer):
    text = POLITE[0]
    assert scorer.score(text) == scorer.score(text) == ToneScorer().score(text)
