"""Knowledge-base sentence vectors computed at ingest, so drafting never embeds them per ticket.

The offline answerer scores every sentence of the retrieved passages against the ticket. The
knowledge base changes only at ingest, so its sentences are embedded there, once, and kept in
the home (`cache/kb-sentences.npz`); the composition root pins them into its embedder when it
opens the store. Measured before this existed: 185 ms of a 480 ms offline ticket went to
re-embedding sentences, and 8 of its 10 embeddings. A missing, stale or unreadable file only
costs speed: sentences it lacks are embedded on demand, as before.

The file holds a float32 matrix and the sentences as JSON bytes (no pickle is ever loaded).
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from supportgraph.models.embeddings import DIMENSIONS, MODEL_NAME, Embedder
from supportgraph.models.offline import passage_sentences

log = logging.getLogger(__name__)

FILE = Path("cache") / "kb-sentences.npz"
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
"""What a damaged, truncated or foreign file raises on reading."""


def cache_path(home: Path) -> Path:
    """Where a home keeps its sentence vectors."""
    return Path(home) / FILE


def _read(path: Path) -> tuple[list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        if bytes(data["model"]).decode() != MODEL_NAME:
            raise ValueError("made by another embedding model")
        texts = json.loads(bytes(data["texts"]).decode("utf-8"))
        vectors = np.asarray(data["vectors"], dtype=np.float32)
    if not isinstance(texts, list) or vectors.shape != (len(texts), DIMENSIONS):
        raise ValueError("texts and vectors do not match")
    return texts, vectors


def load(home: Path, embedder: Embedder) -> int:
    """Pin the home's sentence vectors into `embedder` (the root's); returns how many."""
    path = cache_path(home)
    if not path.is_file():
        return 0
    try:
        texts, vectors = _read(path)
    except _UNREADABLE as exc:
        log.warning("ignoring %s (%s); knowledge-base sentences are embedded on demand", path, exc)
        return 0
    return embedder.pin(texts, vectors)


def build(store: Any, home: Path, collections: Iterable[str]) -> int:
    """Embed the sentences of `collections` that the home's file lacks; returns how many are new.

    Sentences already in the file are kept (an old sentence costs 1.5 KB and a miss nothing
    worse than one embedding), so ingesting one collection never drops another's.
    """
    path = cache_path(home)
    known: list[str] = []
    vectors = np.zeros((0, DIMENSIONS), dtype=np.float32)
    if path.is_file():
        try:
            known, vectors = _read(path)
        except _UNREADABLE as exc:
            log.warning("rebuilding %s (%s)", path, exc)
    seen = set(known)
    fresh: list[str] = []
    for collection in collections:
        if not store.exists(collection):
            continue
        for _, payload in store.scroll_payloads(collection):
            for sentence in passage_sentences(str(payload.get("text") or "")):
                if sentence not in seen:
                    seen.add(sentence)
                    fresh.append(sentence)
    if fresh:
        vectors = np.concatenate([vectors, store.embedder.encode(fresh)]).astype(np.float32)
        known = known + fresh
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, vectors=vectors, texts=np.frombuffer(json.dumps(known).encode(), np.uint8),
                 model=np.frombuffer(MODEL_NAME.encode(), np.uint8))
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    store.embedder.pin(known, vectors)
    return len(fresh)
