"""Answerability features: key terms, their coverage by the cited sections and by the KB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graph.context import Context
from supportgraph.models.answerability import (
    FEATURES,
    AnswerabilityModel,
    Fit,
    KbProfile,
    ask_parts,
    asks_about_look_alike,
    correct_spelling,
    features,
    profile_of,
    salient,
    shipped_fit,
    stem,
    stopwords,
    term_shares,
    terms,
    unknown_object,
)
from supportgraph.models.kb_router import route_texts

SECTIONS = [
    {"collection": "kb_billing", "doc_id": "a#cancel", "title": "Cancelling your subscription",
     "text": "Cancel your subscription in Dashboard > Billing > Plan. You keep access until the "
             "end of the period."},
    {"collection": "kb_billing", "doc_id": "b#invoices", "title": "Invoices",
     "text": "Download the PDF of any invoice in Dashboard > Billing > Invoices."},
]


def _embed(texts: list[str]) -> np.ndarray:
    """A bag-of-words embedding: enough to check how features are put together."""
    vocab = sorted({w for t in texts for w in terms(t, stopwords())}) or ["x"]
    rows = np.array([[float(w in terms(t, stopwords())) for w in vocab] for t in texts])
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def test_stemming_and_stopwords_keep_only_key_terms() -> None:
    assert stem("invoices") == stem("invoice")
    assert stem("cancelled") == stem("cancel")
    assert terms("Hi team, I want to cancel my order please!", stopwords()) == ["cancel", "order"]
    assert terms("hello, thanks!", stopwords()) == []


def test_a_look_alike_term_lowers_coverage_and_is_named() -> None:
    stop = stopwords()
    profile = profile_of(SECTIONS, stop)
    cited = f"{SECTIONS[0]['title']} {SECTIONS[0]['text']}"
    own, in_kb, missing = term_shares(terms("cancel my subscription", stop), cited, profile, stop)
    assert (own, in_kb, missing) == (1.0, 1.0, [])
    look_alike, in_kb, missing = term_shares(terms("cancel my order", stop), cited, profile, stop)
    assert look_alike < 0.6 and in_kb < 1.0
    assert missing == ["order"]


def test_features_of_a_greeting_or_no_citation_are_zero() -> None:
    profile = profile_of(SECTIONS, stopwords())
    for question, cited in (("hello", SECTIONS[:1]), ("how do I cancel?", [])):
        values, _ = features(question, cited, profile, route="billing", intent_confidence=0.9,
                             embed=_embed, stop=stopwords())
        assert values["term_coverage"] == 0.0 and values["coverage"] == 0.0


def test_multi_part_coverage_is_the_worst_part() -> None:
    profile = profile_of(SECTIONS, stopwords())
    one, _ = features("How do I cancel my subscription?", SECTIONS[:1], profile,
                      route="billing", intent_confidence=1.0, embed=_embed, stop=stopwords())
    two, _ = features("How do I cancel my subscription? Where do I download invoices?",
                      SECTIONS[:1], profile, route="billing", intent_confidence=1.0,
                      embed=_embed, stop=stopwords())
    assert len(ask_parts("How do I cancel my subscription? Where do I download invoices?")) == 2
    assert two["coverage"] < one["coverage"]
    assert (one["asks"], two["asks"]) == (1.0, 2.0)
    assert one["route_agree"] == 1.0


def test_look_alike_feature_marks_another_business_question() -> None:
    profile = profile_of(SECTIONS, stopwords())
    order, missing = features("How do I cancel my order?", SECTIONS[:1], profile,
                              route="billing", intent_confidence=1.0, embed=_embed,
                              stop=stopwords())
    own, _ = features("How do I cancel my subscription?", SECTIONS[:1], profile,
                      route="billing", intent_confidence=1.0, embed=_embed, stop=stopwords())
    assert (order["look_alike"], own["look_alike"]) == (1.0, 0.0)
    assert "order" in missing
    fit = shipped_fit()
    assert fit.probability(order) < fit.probability(own)


def test_model_round_trips_through_the_home(tmp_path: Path) -> None:
    fit = Fit(features=["relevance", "route_agree"], mean=[0.5, 0.0], scale=[0.25, 1.0],
              coef=[2.0, 1.0], intercept=-1.0, calibration=[1.0, 0.0])
    model = AnswerabilityModel(fit=fit, profile=KbProfile(sections=2, df={"cancel": 1}),
                               fingerprint="f")
    model.save(tmp_path)
    loaded = AnswerabilityModel.load(tmp_path)
    assert loaded is not None and loaded.fit == fit and loaded.profile.df == {"cancel": 1}
    values = {"relevance": 0.75, "route_agree": 1.0}
    assert loaded.logit(values) == 2.0 and 0.88 < loaded.probability(values) < 0.89
    (tmp_path / "answerability.json").write_text("{not json", encoding="utf-8")
    assert AnswerabilityModel.load(tmp_path) is None


def test_a_request_about_a_thing_the_kb_is_not_about_gets_its_own_calibrated_probability(
        tmp_path: Path) -> None:
    """The rule sends those to a person whatever the log-odds: their confidence is the share of
    such labelled tickets that were right, not the score of the look-alike reply."""
    fit = Fit(features=["relevance"], mean=[0.5], scale=[0.25], coef=[2.0], intercept=1.0,
              unknown_object_probability=0.2)
    assert fit.probability({"relevance": 0.9, "unknown_object": 1.0}) == 0.2
    assert fit.probability({"relevance": 0.9, "unknown_object": 0.0}) > 0.9
    assert Fit.from_json(fit.to_json()) == fit
    model = AnswerabilityModel(fit=fit, profile=KbProfile(sections=1, topics=["subscript"]))
    model.save(tmp_path)
    loaded = AnswerabilityModel.load(tmp_path)
    assert loaded is not None and loaded.fit == fit and loaded.profile.topics == ["subscript"]
    with pytest.raises(ValueError):
        Fit.from_json({**fit.to_json(), "unknown_object_probability": 1.5})
    # A fit without it (older files) scores every ticket by its log-odds.
    plain = {k: v for k, v in fit.to_json().items() if k != "unknown_object_probability"}
    assert Fit.from_json(plain).probability({"relevance": 0.9, "unknown_object": 1.0}) > 0.9


def test_a_fit_with_unknown_features_or_ragged_lists_is_refused(tmp_path: Path) -> None:
    good = shipped_fit().to_json()
    for bad in ({**good, "features": ["shoe_size"] + good["features"][1:]},
                {**good, "coef": good["coef"][:-1]},
                {**good, "scale": [0.0] * len(good["scale"])}):
        with pytest.raises(ValueError):
            Fit.from_json(bad)
        path = tmp_path / "fit.json"
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(ValueError):
            shipped_fit(path)


def test_shipped_fit_is_calibrated_on_dev_data_and_sets_the_default_threshold() -> None:
    fit = shipped_fit()
    assert set(fit.features) <= set(FEATURES)
    assert fit.report["threshold"] == Context().confidence_threshold
    assert {"demo", "bitext", "s10", "offtopic"} <= set(fit.report["sets"])
    # more relevant, better covered, agreeing evidence is never less likely to be right
    low = dict.fromkeys(FEATURES, 0.2) | {"intent": 0.9, "route_agree": 1.0,
                                          "unknown_object": 0.0}
    high = {**low, "evidence": 0.7, "relevance": 0.7, "title_relevance": 0.7}
    assert fit.probability(high) > fit.probability(low)


def test_no_collection_routes_every_text_to_a_person() -> None:
    routes = route_texts(store=None, texts=["how do I pay?", ""], collections=[])
    assert {r.route for r in routes} == {"human"}
    assert {r.intent for r in routes} == {"no_knowledge_base"}


@pytest.mark.parametrize(("text", "asks"), [
    ("I want to cancel my order", True),
    ("i havesubmitted a wrong delivery address how do i correct it", True),
    ("how could I check what delivery options are available?", True),
    ("422 validation_error on every send since this morning. this is costing us orders. "
     "FIX YOUR API.", False),
    ("We send 3k texts for delivery notifications. Which plan makes sense?", False),
    ("", False),
    # demo-010: the books an accountant closes are not a booking (stems collided: book).
    ("Our accountant needs the invoice PDF for closing the books, where do I get it?", False),
    ("Where is my booking? I need to change my bookings", True),
    ("Can you track my orders and parcels?", True),
    # demo-072: the question is about a key; the delivery stats describe what it may read.
    ("we need a key for our analytics job that can read delivery stats but must NOT be able to "
     "send anything. possible?", False),
    ("whats the delivery period for my ticket?", True),
    ("information about the options for delivery", True),
])
def test_only_a_question_about_a_look_alike_term_counts(text: str, asks: bool) -> None:
    assert asks_about_look_alike(text) is asks


def test_typos_are_corrected_to_the_kbs_own_words() -> None:
    """demo-044: "upgarde" retrieved nothing; the reformulated search reads "upgrade"."""
    stop = stopwords()
    profile = profile_of([
        {"title": "Upgrading your plan", "text": "Upgrade from Starter to Scale; the upgrade "
                                                 "takes effect immediately."},
        {"title": "Invoices", "text": "Download an invoice from Billing > Invoices."},
    ], stop)
    text = "hi i want to upgarde to scale right now, does it take efect immediatly?"
    assert correct_spelling(text, profile, stop) == (
        "hi i want to upgrade to scale right now, does it take effect immediately?")
    # Known words, short words and words with no single close KB word stay as written.
    assert correct_spelling("my invoise is wrong", profile, stop) == "my invoice is wrong"
    assert correct_spelling("abcdefgh zzz", profile, stop) == "abcdefgh zzz"
    assert correct_spelling("", profile, stop) == ""


def test_salient_asks_whether_the_cited_section_is_about_the_rarest_term() -> None:
    """A passing mention ("your first annual purchase") is not what the section is about."""
    stop = stopwords()
    article = {"title": "Cancelling your subscription",
               "text": "Cancel in Dashboard > Billing > Plan. If this is your first annual "
                       "purchase and you cancel within 14 days, ask for a refund."}
    other = {"title": "Buying credits", "text": "A purchase of credits. Each purchase is final."}
    profile = profile_of([article, *SECTIONS], stop)

    def about(text: str) -> float:
        return salient(terms(text, stop), [article], profile, stop)
    assert about("how to cancel a purchase") == 0.0
    assert about("how do I cancel my subscription") == 1.0
    assert salient(terms("how to cancel a purchase", stop), [other], profile, stop) == 1.0
    # A long ask: its rarest term is often backstory, so no evidence either way.
    assert about("we bought credits last year, our purchase team wants to cancel, the "
                 "finance lead agrees, what now") == 1.0


def test_a_short_request_about_a_thing_no_section_is_about_is_named() -> None:
    """"cancel a purchase" on a KB about subscriptions: the KB mentions a purchase in passing,
    but no title or heading is about purchases; its own things (payment, subscription) are."""
    stop = stopwords()
    sections = [*SECTIONS,
                {"title": "Cancelling your subscription > What happens after you cancel",
                 "text": "If this is your first annual purchase and you cancel within 14 days, "
                         "ask for a refund."},
                {"title": "Payment methods", "text": "We accept Visa and Mastercard, or a bank "
                                                     "transfer quoting your purchase order."}]
    profile = profile_of(sections, stop)
    titles = [sections[2]["title"]]

    def thing(text: str) -> str:
        return unknown_object(text, titles, profile, stop)
    assert thing("I want to cancel a purchase, what do I have to do?") == "purchase"
    assert thing("can u ask an agent to cancel an order?") == "order"
    assert thing("how do I cancel my subscription?") == ""
    assert thing("where can I see the payment options?") == ""  # payment is a topic
    assert thing("where could i check the cancellation fee?") == ""  # cancel(lation)
    assert thing("how do I cancel?") == ""  # no object named
    # A word the KB never uses says nothing here (a typo, or what the term features see).
    assert thing("how do I cancel a parcle?") == ""
    assert thing("please cancel the account under [EMAIL], I'm the owner.") == ""
    # A description after a copula is not what a request acts on (demo-073, demo-080).
    assert thing("is Retry-After in seconds or is it an order?") == ""
    assert thing("whats the order for the v3 api?") == ""
    # A longer ticket: its determiners pick up backstory, so no reading.
    assert thing("We moved our team to a new office and bought a purchase order system last "
                 "year; how do I cancel the purchase?") == ""
    assert thing("") == ""
    # The feature the fit and the benchmark read.
    values, _ = features("how to cancel a purchase", [{**sections[2], "collection": "kb_billing"}],
                         profile, route="billing", intent_confidence=0.98, embed=_embed,
                         stop=stop)
    assert values["unknown_object"] == 1.0


@pytest.mark.parametrize("text", ["the order " * 400, "a-" * 2000 + "order?",
                                  "the " + "a-b " * 1300 + "order", "\x00\u202e" * 2000, ""])
def test_object_reading_is_quick_and_total_on_huge_or_hostile_text(text: str) -> None:
    """The confidence node reads up to 4,000 characters of any ticket with these regexes."""
    import time

    stop = stopwords()
    profile = profile_of(SECTIONS, stop)
    started = time.perf_counter()
    for _ in range(5):
        thing = unknown_object(text[:4000], [], profile, stop)
        asks = asks_about_look_alike(text[:4000])
    assert time.perf_counter() - started < 2.0
    assert isinstance(thing, str) and isinstance(asks, bool)
