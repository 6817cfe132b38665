"""The lexical half of hybrid retrieval: an in-memory BM25 index over chunk payloads.

Dense MiniLM vectors miss exact product words (a setting's name, an error code, `rp_live_`);
BM25 catches them. The index is built from the payloads Qdrant already stores, so it works the
same against local mode and a server, and needs no extra vectors at ingest time. The index keeps
raw term counts and weighs them at query time, so the store can add or drop a few documents
after a write (`LexicalIndex.spliced`) instead of re-tokenising the whole collection.

Title terms count `title_weight` times (a cheap BM25F): headings name what a passage is about.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

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
    """BM25 over a list of (title, text) documents; never mutated (`spliced` makes a new one).

    It keeps raw term frequencies (per term: the rows that contain it and how often), the
    document lengths and the document count, and applies the BM25 weighting at query time to
    the query's terms only. IDF and the average length depend on the whole collection, so
    precomputed weights would all change with one added document; raw counts do not, which is
    what lets `spliced` add and remove documents without touching the others. A spliced index
    scores exactly like one built from scratch over the same rows in the same order.
    """

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
        self.k1, self.b, self.title_weight = k1, b, title_weight
        size = len(texts)
        counts = [_term_counts(title, text, title_weight)
                  for title, text in zip(titles, texts, strict=True)]
        vocabulary: dict[str, int] = {}
        rows, cols, freqs, lengths = _entries(counts, np.arange(size), vocabulary)
        order = np.argsort(cols, kind="stable")  # entries grouped by term (column)
        self._assemble(
            vocabulary, cols[order], rows[order], freqs[order], lengths,
            _tenant_array(tenants if tenants is not None else [None] * size),
        )

    def _assemble(
        self,
        vocabulary: dict[str, int],
        cols: np.ndarray,
        rows: np.ndarray,
        freqs: np.ndarray,
        lengths: np.ndarray,
        tenants: np.ndarray,
    ) -> None:
        """Set the index's arrays; `cols` ascending, `rows`/`freqs` aligned with it."""
        self.vocabulary = vocabulary
        self.size = len(lengths)
        self.lengths = lengths
        self.tenants = tenants
        self._cols, self._rows, self._freqs = cols, rows, freqs
        per_term = np.bincount(cols, minlength=len(vocabulary))
        self._indptr = np.concatenate(([0], np.cumsum(per_term))).astype(np.intp)
        self.avg_length = (float(lengths.mean()) if self.size else 0.0) or 1.0

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for `query` (zeros where no term matches)."""
        scores = np.zeros(self.size, dtype=np.float64)
        # terms in a fixed (alphabetical) order, not by column number: a spliced index numbers
        # its terms differently from a fresh one, and float sums depend on the order
        for term in sorted({t for t in tokenize(query) if t in self.vocabulary}):
            col = self.vocabulary[term]
            start, end = self._indptr[col], self._indptr[col + 1]
            df = int(end - start)
            if df == 0:  # only in documents removed since the term was first seen
                continue
            rows, tf = self._rows[start:end], self._freqs[start:end]
            idf = math.log((self.size - df + 0.5) / (df + 0.5) + 1.0)
            norm = self.k1 * (1.0 - self.b + self.b * self.lengths[rows] / self.avg_length)
            scores[rows] += idf * tf * (self.k1 + 1.0) / (tf + norm)  # rows distinct per term
        return scores.astype(np.float32)

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

    def spliced(
        self,
        keep: np.ndarray,
        positions: Sequence[int],
        titles: Sequence[str],
        texts: Sequence[str],
        tenants: Sequence[str | None],
    ) -> LexicalIndex:
        """A new index: the rows where `keep` is False dropped, then documents inserted.

        `positions` are `np.insert`'s: document i goes before kept row `positions[i]`
        (ascending). Only the inserted documents are tokenised; everything else is array
        copies, so the cost does not grow with the collection in Python work.
        """
        positions = np.asarray(positions, dtype=np.intp)
        counts = [_term_counts(title, text, self.title_weight)
                  for title, text in zip(titles, texts, strict=True)]
        # where every kept row and every inserted document ends up (np.insert's layout)
        kept_index = np.cumsum(keep) - 1
        moved = kept_index + np.searchsorted(positions, kept_index, side="right")
        inserted_at = positions + np.arange(len(positions))
        vocabulary = self.vocabulary
        if any(t not in vocabulary for c in counts for t in c):
            vocabulary = dict(vocabulary)  # the old index keeps its own
        rows, cols, freqs, lengths = _entries(counts, inserted_at, vocabulary)
        alive = keep[self._rows]
        old_cols = self._cols[alive]
        order = np.argsort(cols, kind="stable")
        at = np.searchsorted(old_cols, cols[order], side="right")  # merge, columns ascending
        new = object.__new__(LexicalIndex)
        new.k1, new.b, new.title_weight = self.k1, self.b, self.title_weight
        new._assemble(
            vocabulary,
            np.insert(old_cols, at, cols[order]),
            np.insert(moved[self._rows[alive]], at, rows[order]),
            np.insert(self._freqs[alive], at, freqs[order]),
            np.insert(self.lengths[keep], positions, lengths),
            np.insert(self.tenants[keep], positions, _tenant_array(tenants)),
        )
        return new


def _term_counts(title: str, text: str, title_weight: float) -> Counter[str]:
    """Term frequencies of one document, title terms counting `title_weight` times."""
    counts: Counter[str] = Counter()
    for token in tokenize(text):
        counts[token] += 1.0
    for token in tokenize(title or ""):
        counts[token] += title_weight
    return counts


def _entries(
    counts: Sequence[Counter[str]], rows: np.ndarray, vocabulary: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, frequency) entries and lengths of documents; new terms join `vocabulary`."""
    entry_rows: list[int] = []
    cols: list[int] = []
    freqs: list[float] = []
    lengths = np.zeros(len(counts), dtype=np.float64)
    for i, (row, doc) in enumerate(zip(rows.tolist(), counts, strict=True)):
        lengths[i] = sum(doc.values())
        for token, tf in doc.items():
            entry_rows.append(row)
            cols.append(vocabulary.setdefault(token, len(vocabulary)))
            freqs.append(tf)
    return (np.asarray(entry_rows, dtype=np.intp), np.asarray(cols, dtype=np.intp),
            np.asarray(freqs, dtype=np.float64), lengths)


def _tenant_array(tenants: Sequence[str | None]) -> np.ndarray:
    """Tenants as an object array, "" for none (what `top` compares against)."""
    out = np.empty(len(tenants), dtype=object)
    out[:] = [t if t is not None else "" for t in tenants]
    return out
