"""The trained intent model: prediction, persistence and the prediction record.

A model is a directory of plain files (model.json with labels, routes, thresholds, calibration,
metrics and data hash; head.npz with weights), never pickle, so it can be inspected, diffed and
reproduced, and loading refuses models made for other features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from supportgraph.models import intent_head as head
from supportgraph.models.intent_data import (
    TrainingDataError,
    data_fingerprint,
    validate_training_set,
)
from supportgraph.models.intent_tune import TuneConfig

if TYPE_CHECKING:
    from supportgraph.models.encoders import Encoders

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "model.json"
WEIGHTS_FILE = "head.npz"
ENCODER_FILE = "encoder.npz"
"""Fine-tuned top layers of MiniLM (float32 arrays), present only when the encoder was tuned."""
TUNED_SUFFIX = "+tuned-top-"
_BATCH = 2048
"""Texts encoded per call in `predict`: large, so the encoder batches them by token count
with little padding (within 256-text chunks CLINC150 val padded 25% more tokens than whole)."""


@dataclass(frozen=True)
class IntentPrediction:
    """One classification: what the text asks for, how sure we are, and where it goes."""

    intent: str
    """Best in-scope label, even when `out_of_scope` is True."""
    confidence: float
    """Calibrated probability that `intent` is right, in [0, 1]."""
    route: str
    """billing | technical | human; human when out of scope or the intent is unmapped."""
    out_of_scope: bool
    oos_score: float
    """Higher means more likely out of scope; compared with the model's `oos_threshold`."""


def embedding_model_name() -> str:
    """Name of the sentence-embedding model the features come from."""
    from supportgraph.models.embeddings import MODEL_NAME

    return MODEL_NAME


def encode(texts: list[str], encoders: Encoders) -> tuple[np.ndarray, np.ndarray]:
    """Return (sentence embeddings, head features) for texts, from the untuned encoder."""
    return encoders.features(texts)


def feature_recipe(tuned_layers: int = 0) -> str:
    """Name of the feature recipe: `encode`'s, plus how many top layers were fine-tuned."""
    from supportgraph.models.intent_encoder import FEATURES

    return FEATURES + (f"{TUNED_SUFFIX}{tuned_layers}" if tuned_layers else "")


def _fingerprint(tuned: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tuned):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tuned[name], dtype=np.float32).tobytes())
    return digest.hexdigest()


class IntentModel:
    """A trained intent classifier; build with `train` or `load`, use with `predict`."""

    def __init__(
        self,
        *,
        labels: list[str],
        routes: dict[str, str],
        weight: np.ndarray,
        bias: np.ndarray,
        bank: np.ndarray,
        temperature: float,
        oos_threshold: float,
        config: head.HeadConfig,
        metrics: dict,
        data_sha256: str,
        embedding_model: str,
        created: str,
        tuned: dict[str, np.ndarray] | None = None,
        tune_config: TuneConfig | None = None,
        encoders: Encoders,
    ) -> None:
        self.labels = list(labels)
        self.routes = dict(routes)
        self.weight = weight.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self.bank = bank.astype(np.float32)
        self.temperature = float(temperature)
        self.oos_threshold = float(oos_threshold)
        self.config = config
        self.metrics = dict(metrics)
        self.data_sha256 = data_sha256
        self.embedding_model = embedding_model
        self.created = created
        self.tuned = tuned or None
        """Fine-tuned top layers of the encoder (None: the bundled MiniLM as shipped)."""
        self.tune_config = tune_config
        self.encoder_key = _fingerprint(self.tuned) if self.tuned else ""
        self.encoders = encoders
        """Where the features come from (the composition root's; see models/encoders.py)."""

    @property
    def tuned_layers(self) -> int:
        """How many of the encoder's top layers this model fine-tuned (0 = none)."""
        from supportgraph.models.intent_encoder import tuned_layer_count

        return tuned_layer_count(self.tuned) if self.tuned else 0

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(sentence embeddings, head features) from this model's encoder (tuned or not)."""
        if self.tuned:
            self.encoders.layer_encoder(self.encoder_key, self.tuned)
        return self.encoders.features(texts, self.encoder_key)

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        texts: list[str],
        intents: list[str],
        routes: dict[str, str],
        *,
        oos_texts: list[str] | None = None,
        seed: int = 0,
        config: head.HeadConfig | None = None,
        encoded: tuple[np.ndarray, np.ndarray] | None = None,
        oos_encoded: tuple[np.ndarray, np.ndarray] | None = None,
        tune: TuneConfig | None = None,
        encoders: Encoders,
    ) -> IntentModel:
        """Train on labelled texts; hold out a validation split to calibrate and set thresholds.

        With `tune` (and at least `tune.min_examples` texts) the encoder is fine-tuned first
        (`supportgraph.models.intent_tune`), on the training part of the split only. It is
        opt-in: at full size on CLINC150 and BANKING77 it gained 0.3-1.1 points of accuracy but
        did not reach either target at the cross-validated threshold, for about 10 times the
        training time; by default the bundled encoder stays frozen. `encoded` / `oos_encoded`
        (the output of `encode` for the same texts) let benchmarks and tests reuse the
        expensive encoder pass of a frozen encoder.
        """
        config = config or head.HeadConfig()
        if len(texts) != len(intents):
            raise TrainingDataError(
                f"texts and intents differ in length ({len(texts)} vs {len(intents)})"
            )
        labels = validate_training_set(intents, routes)
        oos_texts = [t for t in (oos_texts or []) if isinstance(t, str) and t.strip()]
        index = {label: i for i, label in enumerate(labels)}
        y = np.array([index[i] for i in intents], dtype=np.int64)
        split = head.stratified_split(y, config.val_fraction, seed)
        tuned, tuned_examples = None, 0
        if tune is not None and len(texts) >= tune.min_examples and encoded is None:
            # The held-back split never reaches the tuning, so the threshold is chosen on
            # scores of texts the encoder has not seen, as at run time.
            from supportgraph.models.intent_tune import tune_top_layers

            train_idx = split[0]
            if len(train_idx) > tune.max_texts:
                keep = head.stratified_split(y[train_idx], tune.max_texts / len(train_idx),
                                             seed)[1]
                keep = np.random.default_rng(seed).permutation(keep)[: tune.max_texts]
                train_idx = train_idx[np.sort(keep)]
            tuned_examples = len(train_idx)
            tuned = tune_top_layers(encoders.layer_encoder(), [texts[i] for i in train_idx],
                                    y[train_idx], len(labels), tune, seed, log=logger.info)
        else:
            tune = None
        model = cls(
            labels=labels,
            routes={label: routes.get(label, "human") for label in labels},
            weight=np.zeros((len(labels), 1), np.float32),
            bias=np.zeros(len(labels), np.float32),
            bank=np.zeros((1, 1), np.float32),
            temperature=1.0,
            oos_threshold=0.0,
            config=config,
            metrics={},
            data_sha256=data_fingerprint(texts, intents, routes, oos_texts),
            embedding_model=embedding_model_name(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            tuned=tuned,
            tune_config=tune,
            encoders=encoders,
        )
        sentence, features = model.encode(list(texts)) if encoded is None else encoded
        oos = None
        if oos_texts:
            oos = model.encode(oos_texts) if oos_encoded is None else oos_encoded
        fitted = head.fit(features, sentence, y, len(labels), config, seed, oos, split)
        model.weight, model.bias, model.bank = fitted.weight, fitted.bias, fitted.bank
        model.temperature, model.oos_threshold = fitted.temperature, fitted.threshold
        model.metrics = {**fitted.metrics, "n_examples": len(texts), "n_intents": len(labels),
                         "n_oos_examples": len(oos_texts), "tuned_layers": model.tuned_layers,
                         "tuned_examples": tuned_examples}
        return model

    # ---------------------------------------------------------------- prediction
    def scores(self, encoded: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Return (calibrated probabilities, OOS scores) for the output of `encode`."""
        sentence, features = encoded
        return head.score(
            features, sentence, self.weight, self.bias, self.bank, self.temperature, self.config
        )

    def predict(self, texts: list[str]) -> list[IntentPrediction]:
        """Classify a batch; empty or non-text inputs are out of scope with confidence 0."""
        valid = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        results: list[IntentPrediction | None] = [None] * len(texts)
        for start in range(0, len(valid), _BATCH):
            chunk = valid[start : start + _BATCH]
            probs, oos = self.scores(self.encode([texts[i] for i in chunk]))
            for row, i in enumerate(chunk):
                best = int(np.argmax(probs[row]))
                intent = self.labels[best]
                out = bool(oos[row] >= self.oos_threshold)
                route = "human" if out else self.routes.get(intent, "human")
                results[i] = IntentPrediction(
                    intent=intent,
                    confidence=float(probs[row, best]),
                    route=route,
                    out_of_scope=out,
                    oos_score=float(oos[row]),
                )
        empty = IntentPrediction(
            intent=self.labels[0], confidence=0.0, route="human", out_of_scope=True,
            oos_score=math.inf,
        )
        return [r if r is not None else empty for r in results]

    # ------------------------------------------------------------- persistence
    def save(self, directory: Path) -> None:
        """Write the model as model.json (metadata, thresholds, metrics) + head.npz (weights)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            directory / WEIGHTS_FILE,
            weight=self.weight,
            bias=self.bias,
            bank=self.bank.astype(np.float16),
        )
        if self.tuned:
            np.savez_compressed(directory / ENCODER_FILE, **self.tuned)  # type: ignore[arg-type]
        elif (directory / ENCODER_FILE).exists():
            (directory / ENCODER_FILE).unlink()
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": "supportgraph-intent",
            "embedding_model": self.embedding_model,
            "features": feature_recipe(self.tuned_layers),
            "tune_config": self.tune_config.to_dict() if self.tune_config else None,
            "labels": self.labels,
            "routes": self.routes,
            "temperature": self.temperature,
            "oos_threshold": self.oos_threshold,
            "config": self.config.to_dict(),
            "metrics": self.metrics,
            "data_sha256": self.data_sha256,
            "created": self.created,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, *, encoders: Encoders) -> IntentModel:
        """Load a model directory, refusing missing/corrupt files or another embedding model."""
        directory = Path(directory)
        meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
        if not directory.is_dir():
            raise FileNotFoundError(f"intent model directory not found: {directory}")
        if not meta_path.is_file() or not weights_path.is_file():
            raise ValueError(
                f"not an intent model directory (needs {META_FILE} and {WEIGHTS_FILE}): "
                f"{directory}"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError(f"{META_FILE} is not a JSON object")
        except (OSError, ValueError) as exc:
            raise ValueError(f"corrupt intent model in {directory}: {exc}") from exc
        expected = embedding_model_name()
        if meta.get("embedding_model") != expected:
            raise ValueError(
                f"intent model in {directory} was trained with embedding model "
                f"{meta.get('embedding_model')!r}, but this build uses {expected!r}; retrain it"
            )
        features = meta.get("features")
        tuned_layers = 0
        if isinstance(features, str) and features.startswith(feature_recipe() + TUNED_SUFFIX):
            tail = features[len(feature_recipe() + TUNED_SUFFIX):]
            tuned_layers = int(tail) if tail.isdigit() else -1
        if features != feature_recipe(tuned_layers):
            raise ValueError(
                f"intent model in {directory} uses features {features!r}, this build "
                f"computes {feature_recipe()!r}; retrain it"
            )
        try:
            with np.load(weights_path, allow_pickle=False) as arrays:
                weight, bias, bank = arrays["weight"], arrays["bias"], arrays["bank"]
            tuned = None
            if tuned_layers:
                with np.load(directory / ENCODER_FILE, allow_pickle=False) as arrays:
                    tuned = {name: arrays[name].astype(np.float32) for name in arrays.files}
                _check_tuned(tuned, tuned_layers)
            tune_config = meta.get("tune_config")
            model = cls(
                labels=meta["labels"],
                routes=meta["routes"],
                weight=weight,
                bias=bias,
                bank=bank.astype(np.float32),
                temperature=meta["temperature"],
                oos_threshold=meta["oos_threshold"],
                config=head.HeadConfig(**meta["config"]),
                metrics=meta.get("metrics", {}),
                data_sha256=meta.get("data_sha256", ""),
                embedding_model=meta["embedding_model"],
                created=meta.get("created", ""),
                tuned=tuned,
                tune_config=TuneConfig(**tune_config) if tune_config else None,
                encoders=encoders,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"corrupt intent model in {directory}: {exc!r}") from exc
        n = len(model.labels)
        if model.weight.shape[0] != n or model.bias.shape[0] != n or model.bank.ndim != 2:
            raise ValueError(f"corrupt intent model in {directory}: weights do not match labels")
        return model


def _check_tuned(tuned: dict[str, np.ndarray], layers: int) -> None:
    """Refuse tuned weights that are not exactly MiniLM's top `layers` layers."""
    from supportgraph.models.intent_encoder import reference_layer_shapes, tuned_layer_count

    expected = reference_layer_shapes(layers)
    if tuned_layer_count(tuned) != layers or {n: v.shape for n, v in tuned.items()} != expected:
        raise ValueError(f"{ENCODER_FILE} does not hold MiniLM's top {layers} layers")
    if not all(np.isfinite(v).all() for v in tuned.values()):
        raise ValueError(f"{ENCODER_FILE} holds non-finite weights")
