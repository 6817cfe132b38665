"""The lexical half of hybrid retrieval: an in-memory BM25 index over chunk payloads.

Dense MiniLM vectors miss exact product words (a setting's name, an error code, `rp_live_`);
BM25 catches them. The index is built from the payloads Qdrant already stores, so it works the
same against local mode and a server, and needs no extra vectors at ingest time. Scoring is a
sparse matrix product, a few milliseconds at tens of thousands of chunks.

Title terms count `title_weight` times (a cheap BM25F): headings name what a passage is about.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)

STOPWORDS = frozenset(
    """a about above after again all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves please hi hello thanks thank regards dear want need get way""".split()
)


def stem(token: str) -> str:
    """Strip common English inflections so 'notifications' meets 'notification'.

    Deliberately tiny and predictable (no dictionary): plural -s/-es/-ies, -ing, -ed, a final
    -e, and a doubled final consonant left behind ('setting' -> 'set').
    """
    word = token
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    else:
        if len(word) > 3 and word.endswith("e"):
            word = word[:-1]
        return word
    if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]
    elif len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lowercased, stemmed word tokens without stopwords."""
    tokens = []
    for match in _TOKEN.findall(text.lower()):
        word = match.replace("’", "'")
        if word.endswith("'s"):
            word = word[:-2]
        if word in STOPWORDS or not word:
            continue
        tokens.append(stem(word))
    return tokens


class LexicalIndex:
    """BM25 over a fixed list of (title, text) documents; rebuilt, never mutated."""

    def __init__(
        self,
        titles: Sequence[str],
        texts: Sequence[str],
        tenants: Sequence[str | None] | None = None,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        title_weight: float = 2.0,
    ) -> None:
        self.size = len(texts)
        self.tenants = np.array(
            [t if t is not None else "" for t in (tenants or [None] * self.size)], dtype=object
        )
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        freqs: list[float] = []
        lengths = np.zeros(self.size, dtype=np.float64)
        for row, (title, text) in enumerate(zip(titles, texts, strict=True)):
            counts: Counter[str] = Counter()
            for token in tokenize(text):
                counts[token] += 1.0
            for token in tokenize(title or ""):
                counts[token] += title_weight
            lengths[row] = sum(counts.values())
            for token, tf in counts.items():
                col = vocabulary.setdefault(token, len(vocabulary))
                rows.append(row)
                cols.append(col)
                freqs.append(tf)
        self.vocabulary = vocabulary
        if not rows:
            self.weights = sparse.csc_matrix((self.size, 0), dtype=np.float32)
            return
        tf = np.asarray(freqs, dtype=np.float64)
        row_idx = np.asarray(rows)
        col_idx = np.asarray(cols)
        df = np.bincount(col_idx, minlength=len(vocabulary)).astype(np.float64)
        idf = np.log((self.size - df + 0.5) / (df + 0.5) + 1.0)
        avg = float(lengths.mean()) or 1.0
        norm = k1 * (1.0 - b + b * lengths[row_idx] / avg)
        values = idf[col_idx] * tf * (k1 + 1.0) / (tf + norm)
        self.weights = sparse.csc_matrix(
            (values.astype(np.float32), (row_idx, col_idx)), shape=(self.size, len(vocabulary))
        )

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for `query` (zeros where no term matches)."""
        cols = sorted({self.vocabulary[t] for t in tokenize(query) if t in self.vocabulary})
        if not cols or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.weights[:, cols].sum(axis=1)).ravel()

    def top(
        self, query: str, limit: int, *, tenant: str | None = None, any_tenant: bool = True
    ) -> list[tuple[int, float]]:
        """Best `limit` (row, score) pairs with a positive score, optionally for one tenant."""
        scores = self.scores(query)
        if not any_tenant:
            scores = np.where(self.tenants == (tenant or ""), scores, 0.0)
        positive = int(np.count_nonzero(scores > 0))
        if positive == 0:
            return []
        limit = min(limit, positive)
        candidates = np.argpartition(-scores, limit - 1)[:limit]
        ordered = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(int(i), float(scores[i])) for i in ordered if scores[i] > 0]

