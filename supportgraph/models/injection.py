"""Learned prompt-injection detector: a logistic-regression head on MiniLM sentence embeddings.

Beside the rules of supportgraph/text/screening.py, which name known attack wordings, this head
recognises instruction-like text addressed to the assistant in wordings no rule lists. A ticket
is scored as a whole and sentence window by sentence window (an attack appended to a real
question is one window), and the highest probability counts. The head is a small JSON file of
coefficients (`models/data/injection_head.json`) fitted by
`python -m benchmarks.injection_train`, which records where its data came from, its licence
and its cross-validated threshold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEAD_FILE = Path(__file__).resolve().parent / "data" / "injection_head.json"
MAX_SEGMENTS = 24
MAX_SEGMENT_CHARS = 600
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+|\n+|(?<=\S)\s*(?:#{2,}|={3,}|-{3,}|\*{3,})\s*")


def segments(text: str) -> list[str]:
    """The whole text and its windows of one and two consecutive sentences (bounded)."""
    text = (text or "").strip()
    if not text:
        return []
    sentences = [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]
    windows = [text[:MAX_SEGMENT_CHARS * 2]]
    for i, sentence in enumerate(sentences):
        windows.append(sentence[:MAX_SEGMENT_CHARS])
        if i + 1 < len(sentences):
            windows.append(f"{sentence} {sentences[i + 1]}"[:MAX_SEGMENT_CHARS])
    # The end of a ticket is where appended attacks sit: keep it when trimming.
    if len(windows) > MAX_SEGMENTS:
        windows = windows[:1] + windows[-(MAX_SEGMENTS - 1):]
    return list(dict.fromkeys(windows))


@dataclass(frozen=True)
class InjectionHead:
    """Fitted coefficients and the decision threshold chosen by cross-validation."""

    weight: np.ndarray
    bias: float
    threshold: float
    embedding_model: str

    @classmethod
    def load(cls, path: Path = HEAD_FILE) -> InjectionHead:
        """Read a head written by benchmarks/injection_train.py."""
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
        weight = np.asarray(meta["weight"], dtype=np.float32)
        if weight.ndim != 1:
            raise ValueError(f"{path}: weight must be a vector")
        return cls(weight=weight, bias=float(meta["bias"]), threshold=float(meta["threshold"]),
                   embedding_model=str(meta["embedding_model"]))

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """P(injection) for each row of sentence embeddings."""
        logits = np.asarray(vectors, dtype=np.float32) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def score(self, text: str, encode: Callable[[list[str]], np.ndarray]) -> tuple[float, str]:
        """Highest P(injection) over the text's segments, and that segment."""
        parts = segments(text)
        if not parts:
            return 0.0, ""
        probs = self.probabilities(encode(parts))
        best = int(np.argmax(probs))
        return float(probs[best]), parts[best]
