"""Token-count batching and the micro-batcher shared by the embedder and the intent encoder."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from supportgraph.models.batching import BatchStats, MicroBatcher, token_batches


@pytest.mark.parametrize("seed", range(5))
def test_token_batches_cover_every_text_once_within_the_padding_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 257, size=300).tolist()
    batches = token_batches(lengths, max_tokens=1024, max_texts=64)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(300))
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        # a single text longer than the budget still gets its own pass
        assert padded <= 1024 or len(batch) == 1
        assert len(batch) <= 64


def test_one_long_text_no_longer_pads_a_batch_of_short_ones() -> None:
    lengths = [12] * 63 + [256]
    batches = token_batches(lengths, max_tokens=1024, max_texts=64)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded <= 12 * 63 + 256 + 12 * 2  # fixed batches of 64 would pad to 64 * 256
    assert [len(b) for b in batches][-1] == 1


def test_micro_batcher_gives_each_caller_its_own_rows_from_shared_passes() -> None:
    stats = BatchStats()
    seen_batches: list[int] = []
    gate = threading.Event()

    def forward(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        gate.wait(5)  # hold the first pass so the others queue behind it
        seen_batches.append(len(texts))
        return (np.array([[len(t)] for t in texts]), np.array([[t.count("x")] for t in texts]))

    batcher = MicroBatcher(forward, stats=stats, max_wait_ms=20, max_batch=64)
    results: dict[int, tuple[np.ndarray, ...]] = {}

    def call(i: int) -> None:
        results[i] = batcher.submit(["x" * i, "y" * (i + 1)])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(results) == 20
    for i, (lengths, xs) in results.items():
        assert lengths[:, 0].tolist() == [i, i + 1]
        assert xs[:, 0].tolist() == [i, 0]
    assert stats.forward_passes < 20 and sum(seen_batches) == 40
    assert stats.batched_requests == 20


def test_micro_batcher_reports_a_failed_pass_to_every_caller_and_recovers() -> None:
    calls = []

    def forward(texts: list[str]) -> tuple[np.ndarray]:
        calls.append(texts)
        if any("boom" in t for t in texts):
            raise RuntimeError("model failed")
        return (np.ones((len(texts), 1)),)

    batcher = MicroBatcher(forward, stats=BatchStats())
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.submit(["boom"])
    assert batcher.submit(["fine"])[0].shape == (1, 1)  # the leader slot was released


def test_intent_encoder_batches_concurrent_tickets_without_changing_results(encoders) -> None:
    texts = [f"I was charged twice for order {i}, please refund the extra charge"
             for i in range(24)]
    alone = encoders.layer_encoder().encode(texts)
    before = encoders.layer_stats.forward_passes
    barrier = threading.Barrier(24)
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def call(i: int) -> None:
        barrier.wait()
        results[i] = encoders.features([texts[i]])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert encoders.layer_stats.forward_passes - before < 24
    for i in range(24):
        np.testing.assert_allclose(results[i][0][0], alone[0][i], atol=1e-5)
        np.testing.assert_allclose(results[i][1][0], alone[1][i], atol=1e-5)


def test_classifying_a_ticket_hands_its_vector_to_the_embedder(encoders) -> None:
    embedder = encoders.embedder
    text = "Our webhook deliveries stopped after we rotated the signing secret yesterday"
    encoders.features([text])
    before = embedder.stats.forward_passes
    vector = embedder.encode_one(text)
    assert embedder.stats.forward_passes == before  # no second pass for the same text
    embedder.configure(cache_size=0)
    try:
        np.testing.assert_allclose(vector, embedder.encode_one(text), atol=1e-5)
    finally:
        embedder.configure(cache_size=20_000)
