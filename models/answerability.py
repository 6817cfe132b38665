"""Answerability: the probability that a reply citing these sections answers this ticket.

The score looks at the question and the sections a reply cites, never at the reply's wording,
so it holds for any provider: how close the question (and each of its parts) is to the cited
sections, whether the ticket's key terms occur in the cited sections and in the knowledge base
at all ("shipping address" does not occur in an email API's docs), whether the route agrees with
the cited collection, and how sure routing was.

A small logistic regression combines them. It is fitted in the user's home, from the user's own
knowledge base, at `init` and after every `ingest` (no labelled data needed): questions written
from each section's title and text are positives when retrieval finds their section again and
negatives when it does not; shipped off-topic requests and look-alikes (a section's question
with its key term swapped for one the KB does not contain) are negatives.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MODEL_FILE = "answerability.json"
FORMAT = 3
"""Bumped whenever features or term stemming change: an older stored model is fitted again."""
MIN_ASK_TERMS = 3
"""Fewer key terms than this in the ticket's questions: the whole ticket's terms count."""
FEATURES = ("relevance", "title_relevance", "coverage", "term_coverage", "kb_terms",
            "route_agree", "intent")
"""Every signal computed (shown to the reviewer, recorded in the run)."""
MODEL_FEATURES = ("relevance", "title_relevance", "route_agree")
"""The signals the fitted model combines. Chosen on development tickets (demo set, Bitext, the
S10 manual, off-topic; `python -m benchmarks.answerability`): fitted on a home's own synthetic
questions, models with the key-term shares ranked real tickets worse (AUROC 0.59 vs 0.77 on
the demo desk) because written questions always contain their section's words. The term
shares still send look-alike tickets to a person (`nodes/confidence.py`)."""
KB_PREFIX = "kb_"
MAX_SECTIONS = 100
"""Sections sampled to write training questions from (fit time grows with it)."""
SEED = 16

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
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
def look_alike_terms() -> frozenset[str]:
    """Stems of other businesses' nouns (orders, parcels, flights).

    When a ticket asks about one and the cited sections do not mention it, the reply answers a
    look-alike question.
    """
    return frozenset(stem(w) for line in _load_words("off_kb_terms.txt") for w in line.split())


def ask_parts(text: str) -> list[str]:
    """The questions and requests of a ticket; the whole text when it has none."""
    parts = [s.strip() for s in _SENTENCE.split(text) if len(s.split()) >= 3]
    asks = [s for s in parts if _ASK.search(s)][:8]
    return asks or ([text.strip()] if text.strip() else [])


# ---------------------------------------------------------------------- the KB's terms
@dataclass
class KbProfile:
    """Document frequency of each key term over the knowledge base's sections."""

    sections: int = 0
    df: dict[str, int] = field(default_factory=dict)

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
    """The knowledge-base collections (`kb_*`) that hold at least one passage."""
    from retrieval.store import RetrievalUnavailable

    try:
        listed = store.collections()
    except RetrievalUnavailable:
        raise
    except Exception as exc:  # the engine raises many types; all mean "cannot answer"
        raise RetrievalUnavailable(f"could not list collections: {type(exc).__name__}") from exc
    names = sorted(name for name in listed if name.startswith(KB_PREFIX))
    return [n for n in names if store.count(n) > 0]


def profile_of(sections: Sequence[dict[str, Any]], stop: frozenset[str]) -> KbProfile:
    """Count in how many sections each key term occurs (title and text)."""
    df: dict[str, int] = {}
    for section in sections:
        for term in set(terms(f"{section['title']} {section['text']}", stop)):
            df[term] = df.get(term, 0) + 1
    return KbProfile(sections=len(sections), df=df)


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


def features(question: str, cited: Sequence[dict[str, Any]], profile: KbProfile, *,
             route: str, intent_confidence: float, embed: Callable[[list[str]], np.ndarray],
             stop: frozenset[str]) -> tuple[dict[str, float], list[str]]:
    """The answerability features of a question and the sections a reply cites.

    `cited`: passages with `title`, `text`, `collection`. Returns (features, key terms of the
    question the cited sections do not contain).
    """
    parts = ask_parts(question)
    ask_terms = terms(" ".join(parts), stop)
    if len(ask_terms) < MIN_ASK_TERMS:  # "which one makes sense?": the context says what
        ask_terms = terms(question, stop)
    if not cited or not parts:
        zero = dict.fromkeys(FEATURES, 0.0)
        zero["intent"] = float(intent_confidence)
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
    }
    return values, missing


# ---------------------------------------------------------------------- the model
CALIBRATION = (1.5783, 0.1132)
"""Slope and offset applied to the log-odds. The home's model is fitted on questions written
from the KB, which are easier than real tickets; this maps its log-odds to the rate at which
real replies are right. Chosen by cross-validation on development tickets (demo set, Bitext,
the S10 manual, off-topic requests: `python -m benchmarks.answerability`), like a threshold."""


def calibrated(logit: float, calibration: tuple[float, float] = CALIBRATION) -> float:
    """Probability from log-odds through the calibration map."""
    z = calibration[0] * logit + calibration[1]
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


@dataclass
class AnswerabilityModel:
    """Logistic regression over `MODEL_FEATURES`, with the KB's term profile it was fitted on."""

    coef: list[float]
    intercept: float
    profile: KbProfile
    fingerprint: str = ""
    report: dict[str, Any] = field(default_factory=dict)

    def logit(self, values: dict[str, float]) -> float:
        """The fitted model's log-odds (before calibration)."""
        return self.intercept + sum(c * values[name] for c, name in zip(self.coef,
                                                                        MODEL_FEATURES,
                                                                        strict=True))

    def probability(self, values: dict[str, float]) -> float:
        """P(a reply citing these sections is right and can be sent), calibrated."""
        return calibrated(self.logit(values))

    def save(self, home: Path) -> Path:
        """Write atomically to `home/answerability.json`."""
        path = Path(home) / MODEL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "features": list(MODEL_FEATURES), "coef": self.coef,
                "intercept": self.intercept, "fingerprint": self.fingerprint,
                "report": self.report,
                "profile": {"sections": self.profile.sections, "df": self.profile.df}}
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
            if data.get("format") != FORMAT or data.get("features") != list(MODEL_FEATURES):
                return None
            profile = KbProfile(sections=int(data["profile"]["sections"]),
                                df={str(k): int(v) for k, v in data["profile"]["df"].items()})
            return cls(coef=[float(c) for c in data["coef"]],
                       intercept=float(data["intercept"]), profile=profile,
                       fingerprint=str(data.get("fingerprint", "")),
                       report=dict(data.get("report") or {}))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def kb_fingerprint(sections: Sequence[dict[str, Any]]) -> str:
    """Changes whenever a section is added, removed or edited."""
    digest = hashlib.sha256()
    for s in sections:
        digest.update(f"{s['collection']}\x00{s['doc_id']}\x00{s['title']}\x00{s['text']}\x01"
                      .encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------- training data
_TEMPLATES = ("How do I {t}?", "Question about {t}", "Can you help me with {t}?",
              "I need help with {t}.", "What about {t}?", "{t}?")


def _heading(title: str) -> str:
    return title.split(" > ")[-1].strip()


def synthetic_questions(sections: Sequence[dict[str, Any]], profile: KbProfile,
                        stop: frozenset[str], rng: random.Random
                        ) -> list[tuple[str, str | None]]:
    """(question, source doc id or None for a negative) pairs written from the KB itself."""
    sample = list(sections)
    rng.shuffle(sample)
    sample = sample[:MAX_SECTIONS]
    off_terms = [t for line in _load_words("off_kb_terms.txt") for t in line.split()
                 if not profile.df.get(stem(t))]
    out: list[tuple[str, str | None]] = []
    for section in sample:
        heading = _heading(section["title"])
        out.append((rng.choice(_TEMPLATES).format(t=heading.lower()), section["doc_id"]))
        sentences = [s for s in _SENTENCE.split(section["text"]) if 6 <= len(s.split()) <= 40]
        if sentences:
            words = rng.choice(sentences).split()
            kept = [w for w in words if rng.random() > 0.35] or words[:6]
            out.append((" ".join(kept), section["doc_id"]))
        heading_terms = [w for w in re.findall(r"\w+", heading) if w.lower() not in stop]
        if off_terms and heading_terms:
            swapped = heading.replace(rng.choice(heading_terms), rng.choice(off_terms), 1)
            out.append((rng.choice(_TEMPLATES).format(t=swapped.lower()), None))
    for text in _load_words("off_kb_questions.txt"):
        ask = terms(text, stop)
        if ask and not all(profile.df.get(t) for t in ask):
            out.append((text, None))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[list[float], float]:
    """L2-regularised logistic regression (a few coefficients; liblinear is deterministic)."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        raise ValueError("need both right and wrong examples to fit")
    model = LogisticRegression(C=1.0, class_weight="balanced", solver="liblinear")
    model.fit(x, y)
    return [float(c) for c in model.coef_[0]], float(model.intercept_[0])


Router = Callable[[list[str]], list[tuple[str, float]]]
"""Routes texts as classify would: (route, intent confidence) per text."""


def labelled_features(store: Any, sections: Sequence[dict[str, Any]], profile: KbProfile,
                      router: Router, *, k: int, min_relevance: float,
                      stop: frozenset[str], rng: random.Random
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features and labels of the synthetic questions, retrieved as the workflow would."""
    from models.embeddings import get_embedder

    embedder = get_embedder()
    pairs = synthetic_questions(sections, profile, stop, rng)
    texts = [q for q, _ in pairs]
    routes = router(texts)
    vectors = embedder.encode(texts)
    memo: dict[str, np.ndarray] = dict(zip(texts, vectors, strict=True))

    def embed(batch: list[str]) -> np.ndarray:
        """Each section's text and title is embedded once, not once per question."""
        missing = list(dict.fromkeys(t for t in batch if t not in memo))
        if missing:
            memo.update(zip(missing, embedder.encode(missing), strict=True))
        return np.stack([memo[t] for t in batch])
    collections = kb_collections(store)
    # one batched search per collection; each question keeps the hits of the collections
    # the workflow would search for its route
    found = {c: store.search_many(c, texts, k=k, query_vectors=vectors) for c in collections}
    cited_of = []
    for n, (route, _confidence) in enumerate(routes):
        searched = [f"{KB_PREFIX}{route}"] if f"{KB_PREFIX}{route}" in collections else collections
        hits = [h for c in searched for h in found[c][n] if h.dense_score >= min_relevance]
        hits.sort(key=lambda h: h.score, reverse=True)
        cited_of.append([{"title": h.title, "text": h.text, "collection": h.collection,
                          "doc_id": h.doc_id} for h in hits[:1]])

    def collect(batch: list[str]) -> np.ndarray:
        wanted.update(t for t in batch if t not in memo)
        return np.zeros((len(batch), vectors.shape[1]), dtype=np.float32)

    wanted: set[str] = set()
    for (text, _), (route, confidence), cited in zip(pairs, routes, cited_of, strict=True):
        features(text, cited, profile, route=route, intent_confidence=confidence,
                 embed=collect, stop=stop)
    embed(sorted(wanted))  # one batched pass over every text the features need
    rows, labels = [], []
    for (text, source), (route, confidence), cited in zip(pairs, routes, cited_of, strict=True):
        values, _ = features(text, cited, profile, route=route, intent_confidence=confidence,
                             embed=embed, stop=stop)
        rows.append([values[f] for f in MODEL_FEATURES])
        labels.append(int(source is not None and bool(cited) and cited[0]["doc_id"] == source))
    return np.asarray(rows, dtype=np.float64), np.asarray(labels), texts


def fit_for_home(store: Any, home: Path, router: Router, *, k: int = 4,
                 min_relevance: float = 0.3) -> AnswerabilityModel | None:
    """Fit the model on questions written from the home's KB and store it; None if no KB."""
    stop = stopwords()
    sections = kb_sections(store)
    if not sections:
        (Path(home) / MODEL_FILE).unlink(missing_ok=True)
        return None
    profile = profile_of(sections, stop)
    x, y, _ = labelled_features(store, sections, profile, router, k=k,
                                min_relevance=min_relevance, stop=stop,
                                rng=random.Random(SEED))
    try:
        coef, intercept = fit_logistic(x, y)
    except ValueError:
        # A KB too small to have both classes (say one document): a prior that asks for a
        # close, well-covered match, rather than no model.
        coef, intercept = [5.0, 2.5, 1.5], -5.0
    model = AnswerabilityModel(coef=coef, intercept=intercept, profile=profile,
                               fingerprint=kb_fingerprint(sections),
                               report={"examples": len(y), "positives": int(y.sum()),
                                       "sections": len(sections)})
    model.save(home)
    log.info("answerability model fitted on %d questions from %d sections", len(y),
             len(sections))
    return model
