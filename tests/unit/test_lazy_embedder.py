"""The retrieval embedder loads its weights only for a text no cache holds (cold start)."""

from __future__ import annotations

import numpy as np

from supportgraph.models.embeddings import DIMENSIONS
from supportgraph.models.encoders import Encoders, MiniLMWeights


def test_shared_vectors_are_served_without_loading_the_model() -> None:
    weights = MiniLMWeights()
    embedder = Encoders(weights).embedder
    assert not weights.sentence_loaded  # constructing it loads nothing
    vector = np.zeros(DIMENSIONS, dtype=np.float32)
    vector[3] = 1.0
    embedder.remember(["where is my invoice?"], vector[None, :])
    got = embedder.encode(["where is my invoice?"])
    assert np.array_equal(got[0], vector)
    assert not weights.sentence_loaded
    fresh = embedder.encode(["a text nobody encoded before"])
    assert weights.sentence_loaded  # loaded once, on the first miss
    assert fresh.shape == (1, DIMENSIONS)
    assert abs(float(np.linalg.norm(fresh[0])) - 1.0) < 1e-4


def test_two_roots_share_the_weights_but_not_their_caches(encoders) -> None:
    """One copy of the model per process; what a root caches or pins stays its own."""
    other = Encoders(encoders.weights)
    text = "how do I export my invoices as CSV?"
    first = encoders.embedder.encode([text])
    assert other.embedder._model is encoders.embedder._model  # the same loaded weights
    other.embedder.pin(["a pinned KB sentence"], np.ones((1, DIMENSIONS), np.float32))
    assert other.embedder.pinned_count == 1
    assert "a pinned KB sentence" not in encoders.embedder._pinned
    assert text not in other.embedder._cache
    np.testing.assert_allclose(other.embedder.encode([text]), first, atol=1e-5)
