"""BM25 as Qdrant sparse vectors: our tokenizer, Qdrant's IDF.

Dense MiniLM vectors miss exact product words (a setting's name, an error code, `rp_live_`);
BM25 catches them. Each passage is stored with a sparse vector holding, per term, the BM25
term-frequency part `tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / AVG_LEN))`; the collection's
sparse vector is declared with Qdrant's IDF modifier, so Qdrant multiplies by the inverse
document frequency it keeps up to date itself, at query time. A query's vector is 1 per distinct
term, so the dot product is BM25.

Tokenizer (deterministic, no model, same in every process and backend): lowercase word tokens,
English stopwords dropped, a tiny suffix stemmer; title terms count `TITLE_WEIGHT` times (a
cheap BM25F). A term's dimension is the CRC-32 of its UTF-8 bytes (2^32 dimensions: with a
vocabulary of 10^5 terms a collision is about one pair in 10^4 queries' worth of terms and costs
only a slightly wrong IDF). `AVG_LEN` is a constant, not the collection's running average, so a
stored vector never needs rewriting when other passages arrive; it is about the mean token count
of a chunk (chunks are <= 160 words, ~40% of which are stopwords).
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict

K1 = 1.2
B = 0.75
AVG_LEN = 64.0
TITLE_WEIGHT = 2.0

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


def _dimension(term: str) -> int:
    return zlib.crc32(term.encode("utf-8", "surrogatepass"))


def document_vector(title: str, text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a passage's BM25 term weights, indices ascending."""
    counts: defaultdict[int, float] = defaultdict(float)
    for token in tokenize(text):
        counts[_dimension(token)] += 1.0
    for token in tokenize(title or ""):
        counts[_dimension(token)] += TITLE_WEIGHT
    length = sum(counts.values())
    norm = K1 * (1.0 - B + B * length / AVG_LEN)
    indices = sorted(counts)
    return indices, [counts[i] * (K1 + 1.0) / (counts[i] + norm) for i in indices]


def query_vector(query: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a query: 1 per distinct term (empty when no term survives)."""
    indices = sorted({_dimension(token) for token in tokenize(query)})
    return indices, [1.0] * len(indices)
