"""Answerability: the probability that a reply citing these sections answers this ticket.

The score looks at the question and the sections a reply cites, never at the reply's wording,
so it holds for any provider: how close the question (and each of its parts) is to the cited
sections, whether the ticket's key terms occur in the cited sections and in the knowledge base
at all ("shipping address" does not occur in an email API's docs), whether the route agrees with
the cited collection, and how sure routing was.

A small logistic regression combines them. It is fitted on labelled development tickets (the
demo set, dev Bitext with its category routes, the S10 manual's questions on a KB-only home,
CLINC150 out-of-scope requests: `python -m benchmarks.answerability --fit`) and calibrated by
Platt scaling on cross-validated log-odds; the fit ships in `models/data/answerability_fit.json`.
Its features are relative to the home's knowledge base (key terms weighed by the KB's own
document frequencies, route against the KB's collections), so the fit transfers to a team's own
KB. The home stores the fit with its KB's term profile (`answerability.json`), written again
at `init` and after every `ingest`; the coefficients change only where labels exist (dev data).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MODEL_FILE = "answerability.json"
FORMAT = 6
"""Bumped whenever features or term stemming change: an older stored model is fitted again."""
FIT_FILE = Path(__file__).resolve().parent / "data" / "answerability_fit.json"
SHORT_ASK_TERMS = 4
"""An ask of at most this many key terms is short: its rarest term is what it is about."""
MIN_ASK_TERMS = 3
"""Fewer key terms than this in the ticket's questions: the whole ticket's terms count."""
FEATURES = ("evidence", "relevance", "title_relevance", "coverage", "term_coverage",
            "kb_terms", "route_agree", "intent", "grounding", "look_alike", "asks",
            "oos", "title_terms", "topic_terms", "part_title", "salient", "unknown_object")
"""Every signal the model may combine (shown to the reviewer, recorded in the run):
`evidence` is the best retrieved passage's score and `grounding` the share of the draft's
answer sentences the passages support (both computed by the confidence node); the rest by
`features`. `look_alike` is 1 when the ticket asks about another business's thing (an order, a
parcel, a flight: `data/off_kb_terms.txt`) that the cited sections do not mention; `asks` is
the number of questions and requests in the ticket (a multi-part ticket is rarely answered
whole by one reply); `unknown_object` is 1 when a short request is about a thing that no section
of the KB is about ("cancel a purchase" on a desk whose KB is about subscriptions)."""
KB_PREFIX = "kb_"

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_BOUNDARY = ("and|or|but|to|for|from|with|without|in|on|of|at|by|under|about|into|over|after|"
             "before|since|until|via|per|through|during|like|than|as|while|that|which|who|"
             "because|so|if|when|where|why|what|how|please|can|could|i|we|you|it|me|us|them|"
             "is|are|was|were|has|have|had|will|would|should|do|does|did")
_PHRASE = (r"\b(?:a|an|the|my|our|your|his|her|their|its|this|these|those|some|any|another)"
           rf"\s+(?!(?:{_BOUNDARY})\b)((?:[^\W\d_]+[\s-]+){{0,3}}?[^\W\d_]+)"
           rf"(?=\s*(?:[^\w\s-]|$|\b(?:{_BOUNDARY})\b))")
_NOUN_PHRASE = re.compile(_PHRASE, re.I)
"""A noun phrase after a determiner, up to the next function word or punctuation."""
# A determiner right after "if"/"when" starts a condition's subject ("if a recipient marks us
# as spam"), and one after a copula a description ("what's the base url", "is it a
# timestamp"): neither is the thing a request acts on ("cancel a purchase").
_OBJECT = re.compile(r"(?<!\bif )(?<!\bwhen )(?<!\bis )(?<!\bare )(?<!\bwas )(?<!\bwere )"
                     r"(?<!\bit )(?<!\bwhats )(?<!'s )" + _PHRASE, re.I)
_ASK = re.compile(r"\?\s*$|^(how|what|can|could|would|please|i want|i need|i'd like|we'd like|"
                  r"we want|we need|why|where|when|is|are|do|does|will|should|which)\b", re.I)


def _load_words(name: str) -> list[str]:
    text = (Path(__file__).resolve().parent / "data" / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()
            and not line.startswith("#")]


@functools.cache
def stopwords() -> frozenset[str]:
    """Function words and support small talk: never a ticket's key term."""
    return frozenset(w for line in _load_words("stopwords.txt") for w in line.split())


def stem(word: str) -> str:
    """A light suffix stripper, so 'invoices'/'invoice' and 'cancelled'/'cancel' meet."""
    w = word.lower()
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not w.endswith("ss"):
            w = w[: len(w) - len(suffix)] + keep
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiou":
        w = w[:-1]  # cancell -> cancel, billl -> bill
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]  # invoice/invoic(ed), create/creat(ed)
    return w


def terms(text: str, stop: frozenset[str]) -> list[str]:
    """The key terms of a text: stemmed content words, in order, without repeats."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if len(word) < 3 or word in stop:
            continue
        s = stem(word)
        if s not in out:
            out.append(s)
    return out


@functools.cache
def look_alike_words() -> frozenset[str]:
    """Other businesses' nouns (orders, parcels, flights), as written in the lexicon.

    When a ticket asks about one and the cited sections do not mention it, the reply answers a
    look-alike question.
    """
    return frozenset(w.lower() for line in _load_words("off_kb_terms.txt") for w in line.split())


def named_look_alikes(text: str) -> set[str]:
    """Stems of the lexicon nouns a text names, in the noun's own forms (order, orders).

    Matched by form, not by stem: "closing the books" is not a booking, "the delivered count"
    is not a delivery question the way "delivery options" is.
    """
    lexicon = look_alike_words()
    named = set()
    for word in _WORD.findall(text.lower()):
        forms = {word, word[:-1] if word.endswith("s") else word,
                 word[:-2] if word.endswith("es") else word,
                 word[:-3] + "y" if word.endswith("ies") else word}
        if forms & lexicon:
            named.add(stem(word))
    return named


def ask_parts(text: str) -> list[str]:
    """The questions and requests of a ticket; the whole text when it has none."""
    parts = [s.strip() for s in _SENTENCE.split(text) if len(s.split()) >= 3]
    asks = [s for s in parts if _ASK.search(s)][:8]
    return asks or ([text.strip()] if text.strip() else [])


_OF = re.compile(r"\s+(?:of|for)\s+(?:(?:the|a|an|my|our|your)\s+)?[^\W\d_]+(?:\s+[^\W\d_]+)?",
                 re.I)


def asks_about_look_alike(text: str) -> bool:
    """True when the questions (or a one-sentence ticket) ask about another business's thing.

    A backstory sentence ("this is costing us orders") is not a question about orders. When a
    question names things (noun phrases after a determiner, with an "of"/"for" tail: "the
    options for delivery"), the look-alike must be among them: "a key for our analytics job
    that can read delivery stats" asks about a key.
    """
    parts = [s.strip() for s in _SENTENCE.split(text) if len(s.split()) >= 3]
    asks = " ".join([s for s in parts if _ASK.search(s)] or (parts if len(parts) == 1 else []))
    if not named_look_alikes(asks):
        return False
    things = []
    for match in _NOUN_PHRASE.finditer(asks):
        tail = _OF.match(asks, match.end())
        things.append(match.group(1) + (tail.group(0) if tail else ""))
    return not things or bool(named_look_alikes(" ".join(things)))


# ---------------------------------------------------------------------- the KB's terms
@dataclass
class KbProfile:
    """Document frequency of each key term over the knowledge base's sections."""

    sections: int = 0
    df: dict[str, int] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)
    """The KB's own words, as spelt there (what a misspelt word is corrected to)."""
    topics: list[str] = field(default_factory=list)
    """Key terms of the sections' titles and headings: the things the KB is about."""

    def idf(self, term: str) -> float:
        """Rare-in-KB and absent terms weigh most: they say what a ticket is about."""
        return math.log((self.sections + 1) / (self.df.get(term, 0) + 1)) + 1.0


def kb_sections(store: Any) -> list[dict[str, Any]]:
    """Every section of every `kb_*` collection: doc id, title, text (chunks joined)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for collection in kb_collections(store):
        for _pid, payload in store.scroll_payloads(collection):
            doc_id = str(payload.get("doc_id", _pid))
            section = out.setdefault((collection, doc_id), {
                "collection": collection, "doc_id": doc_id,
                "title": str(payload.get("title", "")), "chunks": {}})
            section["chunks"][int(payload.get("chunk", 0))] = str(payload.get("text", ""))
    for section in out.values():
        section["text"] = "\n".join(t for _, t in sorted(section.pop("chunks").items()))
    return sorted(out.values(), key=lambda s: (s["collection"], s["doc_id"]))


def kb_collections(store: Any) -> list[str]:
    """The knowledge-base collections (`kb_*`) that hold at least one passage.

    An engine failure reaches the caller as the store's `RetrievalUnavailable` (every
    `KnowledgeStore` call converts it), so model code needs no import of retrieval.
    """
    names = sorted(name for name in store.collections() if name.startswith(KB_PREFIX))
    return [n for n in names if store.count(n) > 0]


def profile_of(sections: Sequence[dict[str, Any]], stop: frozenset[str]) -> KbProfile:
    """Count in how many sections each key term occurs (title and text); keep its words."""
    df: dict[str, int] = {}
    words: set[str] = set()
    topics: set[str] = set()
    for section in sections:
        topics.update(terms(section["title"], stop))
        text = f"{section['title']} {section['text']}"
        for term in set(terms(text, stop)):
            df[term] = df.get(term, 0) + 1
        words.update(w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in stop)
    return KbProfile(sections=len(sections), df=df, words=sorted(words), topics=sorted(topics))


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, swaps."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def correct_spelling(text: str, profile: KbProfile, stop: frozenset[str]) -> str:
    """The text with words the KB never uses replaced by the KB word one typo away.

    "i want to upgarde, does it take efect immediatly" -> "upgrade ... effect immediately":
    one edit for words of five to seven letters, two for longer ones; ties and short words
    are left alone. What `reformulate_and_retrieve` searches with when nothing was found.
    """
    by_length: dict[int, list[str]] = {}
    for word in profile.words:
        by_length.setdefault(len(word), []).append(word)

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        low = word.lower()
        if len(low) < 5 or low in stop or profile.df.get(stem(low)):
            return word
        budget = 1 if len(low) <= 7 else 2
        near = {w for n in range(len(low) - budget, len(low) + budget + 1)
                for w in by_length.get(n, []) if _edits(low, w) <= budget}
        return near.pop() if len(near) == 1 else word

    return _WORD.sub(fix, text)


# ---------------------------------------------------------------------- features
def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32) @ np.asarray(b, dtype=np.float32).T


def term_shares(ask_terms: Sequence[str], cited_text: str, profile: KbProfile,
                stop: frozenset[str]) -> tuple[float, float, list[str]]:
    """IDF-weighted shares of the ask's terms found in the cited text and in the KB.

    Also returns the terms the cited text lacks, those missing from the whole KB first (what
    the reviewer is told).
    """
    if not ask_terms:
        return 0.0, 0.0, []
    cited = set(terms(cited_text, stop))
    weights = [profile.idf(t) for t in ask_terms]
    total = sum(weights)
    in_cited = sum(w for t, w in zip(ask_terms, weights, strict=True) if t in cited)
    in_kb = sum(w for t, w in zip(ask_terms, weights, strict=True) if profile.df.get(t))
    missing = [t for t in ask_terms if not profile.df.get(t)]
    missing += [t for t in ask_terms if t not in cited and t not in missing]
    return in_cited / total, in_kb / total, missing


def the_ask(question: str, stop: frozenset[str]) -> tuple[str, list[str]]:
    """The ticket's questions and requests and their key terms (the whole text when too few)."""
    ask_text = " ".join(ask_parts(question))
    ask_terms = terms(ask_text, stop)
    if len(ask_terms) < MIN_ASK_TERMS:  # "which one makes sense?": the context says what
        ask_text, ask_terms = question, terms(question, stop)
    return ask_text, ask_terms


def features(question: str, cited: Sequence[Mapping[str, Any]], profile: KbProfile, *,
             route: str, intent_confidence: float, embed: Callable[[list[str]], np.ndarray],
             stop: frozenset[str], oos_score: float = 0.0) -> tuple[dict[str, float], list[str]]:
    """The answerability features of a question and the sections a reply cites.

    `cited`: passages with `title`, `text`, `collection`. Returns (features, key terms of the
    question the cited sections do not contain).
    """
    parts = ask_parts(question)
    ask_text, ask_terms = the_ask(question, stop)
    others = named_look_alikes(ask_text)
    if not cited or not parts:
        zero = dict.fromkeys(FEATURES, 0.0)
        zero["intent"] = float(intent_confidence)
        zero["oos"] = float(oos_score)
        zero["look_alike"] = float(any(t in others for t in ask_terms))
        zero["asks"] = float(len(parts))
        return zero, ask_terms
    vectors = embed([question, *parts, *(p["text"] for p in cited), *(p["title"] for p in cited)])
    q, part_vecs = vectors[0], vectors[1 : 1 + len(parts)]
    text_vecs = vectors[1 + len(parts) : 1 + len(parts) + len(cited)]
    title_vecs = vectors[1 + len(parts) + len(cited) :]
    in_cited, in_kb, missing = term_shares(
        ask_terms, " ".join(f"{p['title']} {p['text']}" for p in cited), profile, stop)
    routed = f"{KB_PREFIX}{route}"
    values = {
        "relevance": float(_cos(q[None], text_vecs).max()),
        "title_relevance": float(max(_cos(q[None], title_vecs).max(),
                                     _cos(part_vecs, title_vecs).max())),
        "coverage": float(_cos(part_vecs, text_vecs).max(axis=1).min()),
        "term_coverage": in_cited,
        "kb_terms": in_kb,
        "route_agree": float(any(p.get("collection") == routed for p in cited)),
        "intent": float(intent_confidence),
        "look_alike": float(any(t in others for t in missing)),
        "asks": float(len(parts)),
        "oos": float(oos_score),
        "title_terms": title_share(ask_terms, [str(p["title"]) for p in cited], profile, stop),
        "topic_terms": topic_share(question, [str(p["title"]) for p in cited], profile, stop),
        "part_title": float(_cos(part_vecs, title_vecs).max(axis=1).min()),
        "salient": salient(ask_terms, cited, profile, stop),
        "unknown_object": float(bool(_object_unknown(ask_text, ask_terms,
                                                     [str(p["title"]) for p in cited],
                                                     profile, stop))),
    }
    return values, missing


def salient(ask_terms: Sequence[str], cited: Sequence[Mapping[str, Any]], profile: KbProfile,
            stop: frozenset[str]) -> float:
    """For a short ask: 1 when its most specific key term is what a cited section is about.

    The most specific term is the one rarest in the KB; "about" means in a cited title or said
    at least twice, not a passing mention: "cancel a purchase" against a subscription article
    that mentions an "annual purchase" once. A longer ticket names many terms, and its rarest
    one is often backstory: 1 (no evidence either way).
    """
    known = [t for t in ask_terms if profile.df.get(t)]
    if len(ask_terms) > SHORT_ASK_TERMS:
        return 1.0
    if not known:
        return 0.0
    top = max(known, key=profile.idf)
    if top in terms(" ".join(str(p["title"]) for p in cited), stop):
        return 1.0
    said = [w for p in cited for w in _WORD.findall(str(p["text"]).lower())
            if len(w) >= 3 and w not in stop and stem(w) == top]
    return float(len(said) >= 2)


def request_objects(text: str, stop: frozenset[str]) -> list[list[str]]:
    """What a text's requests are about: the content words of each noun phrase after a determiner.

    "I want to cancel a purchase, what do I do?" -> [["purchase"]]; "see the cancellation fee"
    -> [["cancellation", "fee"]]. A shallow reading (no parser): in a long sentence it may take
    backstory for the object, so it is read on short asks only.
    """
    out = []
    for match in _OBJECT.finditer(text):
        words = [w.lower() for w in _WORD.findall(match.group(1))]
        content = [w for w in words if len(w) >= 3 and w not in stop]
        if content:
            out.append(content)
    return out


def _is_topic(word: str, topics: set[str]) -> bool:
    """The word's stem is a topic term, or starts with one ("cancellation": "cancel")."""
    s = stem(word)
    return s in topics or any(len(t) >= 4 and s.startswith(t) for t in topics)


def unknown_object(question: str, cited_titles: Sequence[str], profile: KbProfile,
                   stop: frozenset[str]) -> str:
    """The object of a short request when no section of the KB is about it, else "".

    The object is the request's first noun phrase of content words ("ask an agent to cancel a
    purchase": purchase; "cancel the account under [EMAIL], I'm the owner": account). The KB is
    about what its titles and headings name ("Cancelling your subscription"); a thing it uses
    only in passing ("if this is your first annual purchase") is not something it describes, so
    a reply citing the subscription article answers a look-alike question. A word the KB never
    uses says nothing here (a typo, or a thing the term features already see). "the payment
    options" is known (payment is a topic). Longer tickets: "" (their determiners pick up
    backstory, and their other words give the context).
    """
    ask_text, ask_terms = the_ask(question, stop)
    return _object_unknown(ask_text, ask_terms, cited_titles, profile, stop)


def _object_unknown(ask_text: str, ask_terms: Sequence[str], cited_titles: Sequence[str],
                    profile: KbProfile, stop: frozenset[str]) -> str:
    """`unknown_object` on an ask already read (`features` has it in hand)."""
    if len(ask_terms) > SHORT_ASK_TERMS:
        return ""
    objects = request_objects(ask_text, stop)
    if not objects:
        return ""
    thing = objects[0]
    topics = set(profile.topics) | set(terms(" ".join(cited_titles), stop))
    if any(_is_topic(w, topics) for w in thing) or not any(profile.df.get(stem(w))
                                                          for w in thing):
        return ""
    return " ".join(thing)


def title_share(ask_terms: Sequence[str], titles: Sequence[str], profile: KbProfile,
                stop: frozenset[str]) -> float:
    """IDF-weighted share of the ask's key terms that a cited section's title names."""
    if not ask_terms:
        return 0.0
    named = set(terms(" ".join(titles), stop))
    weights = [profile.idf(t) for t in ask_terms]
    return sum(w for t, w in zip(ask_terms, weights, strict=True) if t in named) / sum(weights)


def topic_share(question: str, titles: Sequence[str], profile: KbProfile,
                stop: frozenset[str]) -> float:
    """The best cited title's IDF-weighted share of key terms that the ticket names.

    Is the ticket about what the section is about ("Cancelling your subscription")?
    """
    asked = set(terms(question, stop))
    best = 0.0
    for title in titles:
        topic = terms(title, stop)
        if topic:
            weights = [profile.idf(t) for t in topic]
            best = max(best, sum(w for t, w in zip(topic, weights, strict=True) if t in asked)
                       / sum(weights))
    return best


# ---------------------------------------------------------------------- the model
def calibrated(logit: float, calibration: Sequence[float]) -> float:
    """Probability from log-odds through a Platt map (slope, offset)."""
    z = calibration[0] * logit + calibration[1]
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


@dataclass
class Fit:
    """A logistic regression over standardised features, with its calibration.

    The calibration has two parts: a Platt map of the log-odds, and
    `unknown_object_probability`, the share of labelled requests about a thing the KB is not
    about that were right (the rule sends those to a person whatever the log-odds say).
    """

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    calibration: list[float] = field(default_factory=lambda: [1.0, 0.0])
    report: dict[str, Any] = field(default_factory=dict)
    unknown_object_probability: float | None = None

    def logit(self, values: dict[str, float]) -> float:
        """The regression's log-odds (before calibration)."""
        return self.intercept + sum(
            c * (float(values.get(name, 0.0)) - m) / s
            for name, m, s, c in zip(self.features, self.mean, self.scale, self.coef,
                                     strict=True))

    def probability(self, values: dict[str, float]) -> float:
        """P(the reply is right and can be sent), calibrated."""
        if self.unknown_object_probability is not None and values.get("unknown_object"):
            return self.unknown_object_probability
        return calibrated(self.logit(values), self.calibration)

    def to_json(self) -> dict[str, Any]:
        """The fit as stored (shipped file and the home's copy)."""
        data = {"features": self.features, "mean": self.mean, "scale": self.scale,
                "coef": self.coef, "intercept": self.intercept,
                "calibration": self.calibration, "report": self.report}
        if self.unknown_object_probability is not None:
            data["unknown_object_probability"] = self.unknown_object_probability
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fit:
        """Raises ValueError on a fit this code cannot use (unknown feature, ragged lists)."""
        names = [str(f) for f in data["features"]]
        lists = [[float(v) for v in data[k]] for k in ("mean", "scale", "coef")]
        if any(n not in FEATURES for n in names) or any(len(v) != len(names) for v in lists):
            raise ValueError("answerability fit does not match the features")
        if any(s <= 0 for s in lists[1]):
            raise ValueError("answerability fit has a non-positive scale")
        gated = data.get("unknown_object_probability")
        if gated is not None and not 0.0 <= float(gated) <= 1.0:
            raise ValueError("answerability fit has an unknown_object_probability outside [0, 1]")
        return cls(features=names, mean=lists[0], scale=lists[1], coef=lists[2],
                   intercept=float(data["intercept"]),
                   calibration=[float(c) for c in data.get("calibration", [1.0, 0.0])],
                   report=dict(data.get("report") or {}),
                   unknown_object_probability=None if gated is None else float(gated))


def shipped_fit(path: Path = FIT_FILE) -> Fit:
    """The fit learned on labelled development tickets (`benchmarks.answerability --fit`)."""
    return Fit.from_json(json.loads(path.read_text(encoding="utf-8")))


@dataclass
class AnswerabilityModel:
    """The fit and the term profile of the home's KB it is applied to."""

    fit: Fit
    profile: KbProfile
    fingerprint: str = ""
    report: dict[str, Any] = field(default_factory=dict)

    def logit(self, values: dict[str, float]) -> float:
        """The fit's log-odds for these feature values."""
        return self.fit.logit(values)

    def probability(self, values: dict[str, float]) -> float:
        """The calibrated probability that the reply is right and can be sent."""
        return self.fit.probability(values)

    def save(self, home: Path) -> Path:
        """Write atomically to `home/answerability.json`."""
        path = Path(home) / MODEL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "fit": self.fit.to_json(), "fingerprint": self.fingerprint,
                "report": self.report,
                "profile": {"sections": self.profile.sections, "df": self.profile.df,
                            "words": self.profile.words, "topics": self.profile.topics}}
        fd, tmp = tempfile.mkstemp(prefix=".answerability-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, home: Path) -> AnswerabilityModel | None:
        """The model stored in `home`, or None when there is none (or it is unreadable)."""
        path = Path(home) / MODEL_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                return None
            profile = KbProfile(sections=int(data["profile"]["sections"]),
                                df={str(k): int(v) for k, v in data["profile"]["df"].items()},
                                words=[str(w) for w in data["profile"].get("words") or []],
                                topics=[str(t) for t in data["profile"].get("topics") or []])
            return cls(fit=Fit.from_json(data["fit"]), profile=profile,
                       fingerprint=str(data.get("fingerprint", "")),
                       report=dict(data.get("report") or {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def kb_fingerprint(sections: Sequence[dict[str, Any]]) -> str:
    """Changes whenever a section is added, removed or edited."""
    digest = hashlib.sha256()
    for s in sections:
        digest.update(f"{s['collection']}\x00{s['doc_id']}\x00{s['title']}\x00{s['text']}\x01"
                      .encode())
    return digest.hexdigest()[:16]


def fit_for_home(store: Any, home: Path, fit: Fit | None = None) -> AnswerabilityModel | None:
    """Store the fit with the home KB's term profile; None (and no file) when the KB is empty.

    The term features are re-based on the KB as it is now; the coefficients are the labelled
    development fit (a home has no labels of its own).
    """
    stop = stopwords()
    sections = kb_sections(store)
    if not sections:
        (Path(home) / MODEL_FILE).unlink(missing_ok=True)
        return None
    fit = fit or shipped_fit()
    model = AnswerabilityModel(fit=fit, profile=profile_of(sections, stop),
                               fingerprint=kb_fingerprint(sections),
                               report={"sections": len(sections),
                                       "collections": sorted({s["collection"] for s in sections}),
                                       "fit": fit.report.get("trained_on", "")})
    model.save(home)
    log.info("answerability profile of %d sections stored", len(sections))
    return model
