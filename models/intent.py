"""Intent classifier: MiniLM sentence embeddings plus a trained head, with an out-of-scope score.

The workflow's routing depends on it: the intent decides the route (billing / technical /
human), the calibrated confidence decides whether a person must look, and the out-of-scope
flag keeps tickets that are not about the product away from automatic answers. A model is a
directory of plain files (JSON + npz, never pickle) so it can be inspected and reproduced.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from models import intent_head as head
from models.intent_data import (
    ROUTES,
    TrainingDataError,
    data_fingerprint,
    load_routes,
    read_labelled,
    read_texts,
    validate_training_set,
)

__all__ = [
    "IntentModel",
    "IntentPrediction",
    "TrainingDataError",
    "classify_file",
    "default_model_dir",
    "ensure_default_model",
    "load_routes",
    "read_labelled",
    "train_from_files",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_META_FILE = "model.json"
_WEIGHTS_FILE = "head.npz"
_PACKAGE_DATA = Path(__file__).resolve().parent / "data"
DEMO_DATA = _PACKAGE_DATA / "demo_intents.jsonl"
DEMO_ROUTES = _PACKAGE_DATA / "demo_routes.toml"
_BATCH = 256


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


def _embedding_model_name() -> str:
    from models.embeddings import MODEL_NAME

    return MODEL_NAME


def encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return (sentence embeddings, head features) for texts; see `models.intent_encoder`."""
    from models.intent_encoder import get_layer_encoder

    return get_layer_encoder().encode(texts)


def _feature_recipe() -> str:
    from models.intent_encoder import FEATURES

    return FEATURES


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
    ) -> IntentModel:
        """Train on labelled texts; hold out a validation split to calibrate and set thresholds.

        `encoded` / `oos_encoded` (the output of `encode` for the same texts) let benchmarks
        and tests reuse the expensive encoder pass.
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
        sentence, features = encode(list(texts)) if encoded is None else encoded
        oos = None
        if oos_texts:
            oos = encode(oos_texts) if oos_encoded is None else oos_encoded
        fitted = head.fit(features, sentence, y, len(labels), config, seed, oos)
        return cls(
            labels=labels,
            routes={label: routes.get(label, "human") for label in labels},
            weight=fitted.weight,
            bias=fitted.bias,
            bank=fitted.bank,
            temperature=fitted.temperature,
            oos_threshold=fitted.threshold,
            config=config,
            metrics={**fitted.metrics, "n_examples": len(texts), "n_intents": len(labels),
                     "n_oos_examples": len(oos_texts)},
            data_sha256=data_fingerprint(texts, intents, routes, oos_texts),
            embedding_model=_embedding_model_name(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )

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
            probs, oos = self.scores(encode([texts[i] for i in chunk]))
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
            directory / _WEIGHTS_FILE,
            weight=self.weight,
            bias=self.bias,
            bank=self.bank.astype(np.float16),
        )
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": "supportgraph-intent",
            "embedding_model": self.embedding_model,
            "features": _feature_recipe(),
            "labels": self.labels,
            "routes": self.routes,
            "temperature": self.temperature,
            "oos_threshold": self.oos_threshold,
            "config": self.config.to_dict(),
            "metrics": self.metrics,
            "data_sha256": self.data_sha256,
            "created": self.created,
        }
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> IntentModel:
        """Load a model directory, refusing missing/corrupt files or another embedding model."""
        directory = Path(directory)
        meta_path, weights_path = directory / _META_FILE, directory / _WEIGHTS_FILE
        if not directory.is_dir():
            raise FileNotFoundError(f"intent model directory not found: {directory}")
        if not meta_path.is_file() or not weights_path.is_file():
            raise ValueError(
                f"not an intent model directory (needs {_META_FILE} and {_WEIGHTS_FILE}): "
                f"{directory}"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with np.load(weights_path, allow_pickle=False) as arrays:
                weight, bias, bank = arrays["weight"], arrays["bias"], arrays["bank"]
            config = head.HeadConfig(**meta["config"])
            labels = meta["labels"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"corrupt intent model in {directory}: {exc}") from exc
        expected = _embedding_model_name()
        if meta.get("embedding_model") != expected:
            raise ValueError(
                f"intent model in {directory} was trained with embedding model "
                f"{meta.get('embedding_model')!r}, but this build uses {expected!r}; retrain it"
            )
        if meta.get("features") != _feature_recipe():
            raise ValueError(
                f"intent model in {directory} uses features {meta.get('features')!r}, this build "
                f"computes {_feature_recipe()!r}; retrain it"
            )
        if weight.shape[0] != len(labels) or bias.shape[0] != len(labels):
            raise ValueError(f"corrupt intent model in {directory}: weights do not match labels")
        return cls(
            labels=labels,
            routes=meta["routes"],
            weight=weight,
            bias=bias,
            bank=bank.astype(np.float32),
            temperature=meta["temperature"],
            oos_threshold=meta["oos_threshold"],
            config=config,
            metrics=meta.get("metrics", {}),
            data_sha256=meta.get("data_sha256", ""),
            embedding_model=meta["embedding_model"],
            created=meta.get("created", ""),
        )


# ---------------------------------------------------------------------- files
def train_from_files(
    data: Path, routes: Path, out: Path, *, oos_data: Path | None = None
) -> dict:
    """Train from a labelled file and a routes file into `out`; return a report for the CLI."""
    started = time.perf_counter()
    texts, intents = read_labelled(data)
    mapping = load_routes(routes)
    oos_texts = read_texts(oos_data) if oos_data is not None else None
    model = IntentModel.train(texts, intents, mapping, oos_texts=oos_texts)
    model.save(Path(out))
    return {
        "out": str(out),
        "n_examples": len(texts),
        "intents": len(model.labels),
        "val_accuracy": model.metrics.get("val_accuracy"),
        "ece": model.metrics.get("ece"),
        "oos_threshold": model.oos_threshold,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _ticket_text(row: dict) -> object:
    """Text to classify from an input row: `text`, else a ticket's subject + body."""
    if "text" in row:
        return row["text"]
    if isinstance(row.get("body"), str):
        subject = row.get("subject")
        return f"{subject}\n{row['body']}" if isinstance(subject, str) else row["body"]
    return None


def classify_file(model_dir: Path, input: Path, output: Path) -> dict:  # noqa: A002
    """Classify a JSONL file; keep input order and every field, add intent/confidence/route.

    A malformed line is written through with an "error" field and counted, never dropped, so
    the output lines up with the input.
    """
    model = IntentModel.load(Path(model_dir))
    records: list[dict] = []
    texts: list[str] = []
    positions: list[int] = []
    errors = 0
    with Path(input).open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                records.append({"raw": line.rstrip("\n"), "error": f"line {number}: invalid "
                                f"JSON ({exc.msg})"})
                errors += 1
                continue
            if not isinstance(row, dict):
                records.append({"raw": row, "error": f"line {number}: expected a JSON object"})
                errors += 1
                continue
            text = _ticket_text(row)
            if not isinstance(text, str):
                records.append({**row, "error": f"line {number}: 'text' missing or not a string"})
                errors += 1
                continue
            positions.append(len(records))
            texts.append(text)
            records.append(row)
    predictions = model.predict(texts)
    routes = {route: 0 for route in ROUTES}
    oos = 0
    for position, prediction in zip(positions, predictions, strict=True):
        records[position].update(
            intent=prediction.intent,
            confidence=round(prediction.confidence, 6),
            route=prediction.route,
            out_of_scope=prediction.out_of_scope,
        )
        routes[prediction.route] += 1
        oos += prediction.out_of_scope
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {"n": len(records), "classified": len(predictions), "errors": errors,
            "out_of_scope": oos, "routes": routes}


# -------------------------------------------------------------- default model
def default_model_dir(home: Path) -> Path:
    """Where the demo model lives under SUPPORTGRAPH_HOME."""
    return Path(home) / "models" / "intent-default"


def _stored_fingerprint(directory: Path) -> str | None:
    try:
        meta = json.loads((directory / _META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (directory / _WEIGHTS_FILE).is_file():
        return None
    if meta.get("embedding_model") != _embedding_model_name():
        return None
    if meta.get("features") != _feature_recipe():
        return None
    return meta.get("data_sha256")


def ensure_default_model(
    home: Path, data: Path | None = None, routes: Path | None = None
) -> Path:
    """Train the demo model on first use, or again when its training data changed.

    Trained locally from the package's demo tickets (never downloaded); a file lock keeps two
    processes from training at once, and the new model replaces the old one atomically.
    """
    import fcntl

    data = Path(data) if data is not None else DEMO_DATA
    routes = Path(routes) if routes is not None else DEMO_ROUTES
    target = default_model_dir(home)
    texts, intents = read_labelled(data)
    mapping = load_routes(routes)
    wanted = data_fingerprint(texts, intents, mapping)
    if _stored_fingerprint(target) == wanted:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _stored_fingerprint(target) == wanted:
            return target
        logger.info("training the default intent model from %s", data)
        model = IntentModel.train(texts, intents, mapping)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        model.save(staging)
        if target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    return target
