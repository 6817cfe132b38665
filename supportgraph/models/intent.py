"""Intent classifier: MiniLM sentence embeddings plus a trained head, with an out-of-scope score.

The workflow's routing depends on it: the intent decides the route (billing / technical /
human), the calibrated confidence decides whether a person must look, and the out-of-scope
flag keeps tickets that are not about the product away from automatic answers. A model is a
directory of plain files (JSON + npz, never pickle) so it can be inspected and reproduced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from supportgraph.models.intent_data import (
    ROUTES,
    TrainingDataError,
    data_fingerprint,
    load_routes,
    read_labelled,
    read_texts,
)
from supportgraph.models.intent_model import (
    META_FILE,
    TUNED_SUFFIX,
    WEIGHTS_FILE,
    IntentModel,
    IntentPrediction,
    embedding_model_name,
    encode,
    feature_recipe,
)

if TYPE_CHECKING:
    from supportgraph.models.encoders import Encoders

__all__ = [
    "IntentModel",
    "IntentPrediction",
    "TrainingDataError",
    "classify_file",
    "default_model_dir",
    "encode",
    "ensure_default_model",
    "load_routes",
    "read_labelled",
    "train_from_files",
]

logger = logging.getLogger(__name__)

_PACKAGE_DATA = Path(__file__).resolve().parent / "data"
DEMO_DATA = _PACKAGE_DATA / "demo_intents.jsonl"
DEMO_ROUTES = _PACKAGE_DATA / "demo_routes.toml"


# ---------------------------------------------------------------------- files
def train_from_files(
    data: Path, routes: Path, out: Path, *, encoders: Encoders, oos_data: Path | None = None
) -> dict:
    """Train from a labelled file and a routes file into `out`; return a report for the CLI."""
    started = time.perf_counter()
    texts, intents = read_labelled(data)
    mapping = load_routes(routes)
    oos_texts = read_texts(oos_data) if oos_data is not None else None
    model = IntentModel.train(texts, intents, mapping, oos_texts=oos_texts, encoders=encoders)
    model.save(Path(out))
    return {
        "out": str(out),
        "n_examples": len(texts),
        "intents": len(model.labels),
        "val_accuracy": model.metrics.get("val_accuracy"),
        "ece": model.metrics.get("ece"),
        "oos_threshold": model.oos_threshold,
        **({"threshold_cv": model.metrics["threshold_cv"]}
           if "threshold_cv" in model.metrics else {}),
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


def classify_file(model_dir: Path, input: Path, output: Path, *, encoders: Encoders) -> dict:
    """Classify a JSONL file; keep input order and every field, add intent/confidence/route.

    A malformed line is written through with an "error" field and counted, never dropped, so
    the output lines up with the input.
    """
    model = IntentModel.load(Path(model_dir), encoders=encoders)
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
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (directory / WEIGHTS_FILE).is_file():
        return None
    if meta.get("embedding_model") != embedding_model_name():
        return None
    features = meta.get("features")
    if not isinstance(features, str) or not (
        features == feature_recipe() or features.startswith(feature_recipe() + TUNED_SUFFIX)
    ):
        return None
    return meta.get("data_sha256")


def ensure_default_model(
    home: Path, *, encoders: Encoders, data: Path | None = None, routes: Path | None = None
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
        model = IntentModel.train(texts, intents, mapping, encoders=encoders)
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
