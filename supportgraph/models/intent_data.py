"""Reading and validating intent training data and routes files.

Training data comes from support teams' own exports, so every problem is reported as one clear
line (with line numbers or label names) instead of a stack trace deep inside model training.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tomllib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

ROUTES = ("billing", "technical", "human")
"""The only route names the workflow knows; anything else in a routes file is a typo."""

_TEXT_COLUMNS = ("text", "utterance")
_LABEL_COLUMNS = ("intent", "category", "label")
_MAX_REPORTED = 5


class TrainingDataError(ValueError):
    """Bad training data or routes file; the message is one line a user can act on."""


def _describe_lines(problems: list[str]) -> str:
    shown = "; ".join(problems[:_MAX_REPORTED])
    more = len(problems) - _MAX_REPORTED
    return shown + (f"; and {more} more" if more > 0 else "")


def load_routes(path: str | Path) -> dict[str, str]:
    """Read a TOML routes file (`[routes]` route -> [intents]) and return intent -> route.

    Rejects unknown route names, an intent listed under two routes and malformed TOML, so a
    typo cannot silently send a whole intent to the wrong team.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TrainingDataError(f"routes file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"malformed routes file {path}: {exc}") from exc
    table = raw.get("routes")
    if not isinstance(table, dict):
        raise TrainingDataError(f"routes file {path} has no [routes] table")
    unknown = sorted(set(table) - set(ROUTES))
    if unknown:
        raise TrainingDataError(
            f"unknown route names in {path}: {', '.join(unknown)} (allowed: {', '.join(ROUTES)})"
        )
    mapping: dict[str, str] = {}
    duplicated: list[str] = []
    for route, intents in table.items():
        if not isinstance(intents, list) or not all(isinstance(i, str) for i in intents):
            raise TrainingDataError(
                f"routes file {path}: '{route}' must be a list of intent names (strings)"
            )
        for intent in intents:
            if intent in mapping and mapping[intent] != route:
                duplicated.append(f"{intent} ({mapping[intent]}, {route})")
            mapping[intent] = route
    if duplicated:
        raise TrainingDataError(
            f"intents listed under two routes in {path}: {', '.join(duplicated)}"
        )
    return mapping


def _read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    intents: list[str] = []
    problems: list[str] = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: invalid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                problems.append(f"line {number}: expected an object with 'text' and 'intent'")
                continue
            text, intent = row.get("text"), row.get("intent")
            if not isinstance(text, str) or not text.strip():
                problems.append(f"line {number}: 'text' missing or not a non-empty string")
                continue
            if not isinstance(intent, str) or not intent.strip():
                problems.append(f"line {number}: 'intent' missing or not a non-empty string")
                continue
            texts.append(text)
            intents.append(intent.strip())
    if problems:
        raise TrainingDataError(f"bad rows in {path}: {_describe_lines(problems)}")
    return texts, intents


def _read_csv(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        text_col = next((c for c in _TEXT_COLUMNS if c in columns), None)
        label_col = next((c for c in _LABEL_COLUMNS if c in columns), None)
        if text_col is None or label_col is None:
            raise TrainingDataError(
                f"{path}: CSV needs a 'text' column and an 'intent' or 'category' column "
                f"(found: {', '.join(columns) or 'none'})"
            )
        original = dict(zip(columns, reader.fieldnames or [], strict=True))
        texts: list[str] = []
        intents: list[str] = []
        problems: list[str] = []
        for row in reader:
            number = reader.line_num
            text = (row.get(original[text_col]) or "").strip()
            intent = (row.get(original[label_col]) or "").strip()
            if not text or not intent:
                problems.append(f"line {number}: empty {'text' if not text else label_col}")
                continue
            texts.append(text)
            intents.append(intent)
    if problems:
        raise TrainingDataError(f"bad rows in {path}: {_describe_lines(problems)}")
    return texts, intents


def read_labelled(path: str | Path) -> tuple[list[str], list[str]]:
    """Read labelled examples from JSONL (`{"text", "intent"}`) or CSV (text + intent|category).

    Every bad row is reported with its line number in one error, so a user can fix the file in
    one pass instead of one row per run.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"training data file not found: {path}")
    if path.stat().st_size == 0:
        raise TrainingDataError(f"empty training data file: {path}")
    try:
        if path.suffix.lower() == ".csv":
            texts, intents = _read_csv(path)
        else:
            texts, intents = _read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise TrainingDataError(f"{path} is not UTF-8 text: {exc}") from exc
    if not texts:
        raise TrainingDataError(f"empty training data file (no examples): {path}")
    return texts, intents


def read_texts(path: str | Path) -> list[str]:
    """Read unlabelled out-of-scope examples: JSONL objects with "text", CSV, or plain lines."""
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"out-of-scope data file not found: {path}")
    try:
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.DictReader(handle))
            return [r.get("text", "").strip() for r in rows
                    if isinstance(r.get("text"), str) and r["text"].strip()]
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TrainingDataError(f"out-of-scope data file {path} is not UTF-8 text: {exc}") from exc
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix.lower() == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"{path} line {number}: invalid JSON ({exc.msg})") from exc
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise TrainingDataError(f"{path} line {number}: 'text' missing or empty")
            texts.append(text)
        else:
            texts.append(line.strip())
    return texts


def validate_training_set(intents: list[str], routes: dict[str, str]) -> list[str]:
    """Check the label distribution and the routes file against the data; return sorted labels.

    A classifier cannot learn from one intent, nor calibrate and pick thresholds with a single
    example of one, and a routes file naming intents absent from the data is almost always a typo.
    """
    if not intents:
        raise TrainingDataError("no training examples")
    counts = Counter(intents)
    if len(counts) < 2:
        only = next(iter(counts))
        raise TrainingDataError(
            f"need at least 2 intents to train a classifier, found 1 ({only})"
        )
    thin = sorted(label for label, n in counts.items() if n < 2)
    if thin:
        raise TrainingDataError(
            f"intents with fewer than 2 examples (need at least 2 each): {', '.join(thin)}"
        )
    unknown = sorted(set(routes) - set(counts))
    if unknown:
        raise TrainingDataError(f"unknown labels in routes file: {', '.join(unknown)}")
    bad_routes = sorted({r for r in routes.values() if r not in ROUTES})
    if bad_routes:
        raise TrainingDataError(f"unknown route names: {', '.join(bad_routes)}")
    return sorted(counts)


def data_fingerprint(
    texts: Iterable[str],
    intents: Iterable[str],
    routes: dict[str, str],
    oos_texts: Iterable[str] | None = None,
) -> str:
    """Return the sha256 of the training examples, routes and OOS examples.

    Stored with a model so a prediction can be traced to its data and edits trigger retraining.
    """
    digest = hashlib.sha256()
    for text, intent in zip(texts, intents, strict=True):
        digest.update(json.dumps([text, intent], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    digest.update(json.dumps(sorted(routes.items())).encode("utf-8"))
    for text in oos_texts or ():
        digest.update(b"oos:" + text.encode("utf-8") + b"\n")
    return digest.hexdigest()
