"""The retrieval embedder loads its weights only for a text no cache holds (cold start)."""

from __future__ import annotations

import numpy as np

from supportgraph.models.embeddings import DIMENSIONS, Embedder


def test_shared_vectors_are_served_without_loading_the_model() -> None:
    embedder = Embedder()
    assert embedder._loaded is None  # constructing it loads nothing
    vector = np.zeros(DIMENSIONS, dtype=np.float32)
    vector[3] = 1.0
    embedder.remember(["where is my invoice?"], vector[None, :])
    got = embedder.encode(["where is my invoice?"])
    assert np.array_equal(got[0], vector)
    assert embedder._loaded is None
    fresh = embedder.encode(["a text nobody encoded before"])
    assert embedder._loaded is not None  # loaded once, on the first miss
    assert fresh.shape == (1, DIMENSIONS)
    assert abs(float(np.linalg.norm(fresh[0])) - 1.0) < 1e-4
