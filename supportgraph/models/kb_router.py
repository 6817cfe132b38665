"""Routing by retrieval evidence: the `kb_*` collection that best answers a ticket is its route.

For a team that brings only its documents (no labelled intents): each `kb_<route>` collection is
searched and the ticket goes to the route whose collection holds the closest passage. When no
collection holds a passage at least `min_evidence` close, the ticket is out of scope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

KB_PREFIX = "kb_"
MIN_EVIDENCE = 0.35
"""Cosine of the closest passage below which no collection answers the ticket."""
TEMPERATURE = 0.05
"""Softmax temperature over the collections' best cosines (route confidence)."""


@dataclass(frozen=True)
class RetrievalRoute:
    """What retrieval routing decided for one text (the fields of an intent prediction)."""

    intent: str
    confidence: float
    route: str
    out_of_scope: bool
    oos_score: float
    evidence: float


def route_texts(store: Any, texts: list[str], collections: list[str], *,
                min_evidence: float = MIN_EVIDENCE,
                vectors: np.ndarray | None = None) -> list[RetrievalRoute]:
    """Route each text to the collection with the closest passage (human when none is close)."""
    if not collections:
        return [RetrievalRoute("no_knowledge_base", 0.0, "human", True, 1.0, 0.0)
                for _ in texts]
    if vectors is None:
        vectors = store.embedder.encode(list(texts))
    best = np.zeros((len(texts), len(collections)), dtype=np.float64)
    for j, collection in enumerate(collections):
        hits = store.search_many(collection, texts, k=3, query_vectors=vectors)
        for i, found in enumerate(hits):
            scores = [h.dense_score for h in found if not math.isnan(h.dense_score)]
            best[i, j] = max(scores, default=0.0)
    out = []
    for i, text in enumerate(texts):
        j = int(np.argmax(best[i]))
        evidence = float(best[i, j])
        weights = np.exp((best[i] - evidence) / TEMPERATURE)
        confidence = float(weights[j] / weights.sum())
        route = collections[j].removeprefix(KB_PREFIX)
        out_of_scope = evidence < min_evidence or not text.strip()
        out.append(RetrievalRoute(
            intent=f"kb:{route}", confidence=round(confidence, 4),
            route="human" if out_of_scope else route, out_of_scope=out_of_scope,
            oos_score=round(1.0 - evidence, 4), evidence=round(evidence, 4)))
    return out
