import statistics
import threading
import time

import numpy as np

from retrieval.ingest import markdown_sections, slugify, split_words
from retrieval.points import Chunk, content_hash, embedding_text, point_id
from retrieval.sparse import AVG_LEN, K1, B, document_vector, query_vector, stem, tokenize


def test_tokenize_drops_stopwords_and_stems_plurals():
    assert tokenize("How can I see my Notifications?") == ["see", "notification"]
    assert stem("settings") == stem("setting") == "set"
    assert stem("enabled") == stem("enable") == stem("enabling")


def test_split_words_bounds_chunk_size_and_overlaps():
    words = [f"w{i}" for i in range(500)]
    text = " ".join(words[:200]) + "\n\n" + " ".join(words[200:])
    chunks = split_words(text, max_words=100, overlap=20)
    assert all(len(c.split()) <= 100 for c in chunks)
    assert " ".join(chunks).count("w499") >= 1
    first, second = chunks[0].split(), chunks[1].split()
    assert first[-20:] == second[:20]
    assert split_words("short text") == ["short text"]


def test_markdown_sections_by_heading_with_slugs_and_titles():
    text = (
        "# Guide\n\nintro\n\n## Set up\n\nstep one\n\n### Keys\n\nkey text\n\n"
        "```\n# not a heading\n```\n\n## Set up\n\nagain\n\n## Empty\n"
    )
    sections = markdown_sections("docs/guide.md", text)
    assert [s.doc_id for s in sections] == [
        "docs/guide.md#guide",
        "docs/guide.md#set-up",
        "docs/guide.md#keys",
        "docs/guide.md#set-up-1",
    ]
    assert sections[0].title == "Guide"
    assert sections[2].title == "Guide > Set up > Keys"
    assert "# not a heading" in sections[2].text
    assert slugify("Adding a VAT ID / PO number!") == "adding-a-vat-id-po-number"


def test_point_ids_and_hashes_are_deterministic():
    assert point_id("a.md#x", 0) == point_id("a.md#x", 0) != point_id("a.md#x", 1)
    # the tenant is part of the id; no tenant keeps the id every older home stored
    assert point_id("case:t1", 0, "acme") != point_id("case:t1", 0, "globex")
    assert point_id("case:t1", 0, None) == point_id("case:t1", 0) != point_id("case:t1", 0, "")
    assert point_id("a\x1eb", 0) != point_id("b", 0, "a")
    chunk = Chunk(doc_id="d", chunk=0, text="t", title="T")
    assert content_hash(chunk) == content_hash(Chunk(doc_id="d", chunk=0, text="t", title="T"))
    assert content_hash(chunk) != content_hash(Chunk(doc_id="d", chunk=0, text="u", title="T"))
    assert embedding_text("Refunds", "Refunds are ...") == "Refunds are ..."
    assert embedding_text("Refunds", "Annual plans ...") == "Refunds\nAnnual plans ..."


def test_micro_batching_merges_concurrent_callers_into_few_forward_passes(embedder):
    embedder.configure(micro_batching=True, max_wait_ms=3.0)
    texts = [f"how do I rotate api key number {i}" for i in range(32)]
    expected = embedder._forward(texts)
    barrier = threading.Barrier(32)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        barrier.wait()
        results[i] = embedder.encode_one(texts[i])

    before = embedder.stats.forward_passes
    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    passes = embedder.stats.forward_passes - before
    assert passes <= 6, passes
    for i in range(32):
        assert np.allclose(results[i], expected[i], atol=1e-4)


def test_lone_call_is_not_delayed_by_batching(embedder):
    embedder.configure(micro_batching=True, max_wait_ms=3.0)
    embedder.encode_one("warm up")
    waits = []
    for i in range(5):
        before = embedder.stats.forward_passes
        embedder.encode_one(f"where is my invoice number {i} {time.time()}")
        assert embedder.stats.forward_passes == before + 1
        waits.append(embedder.stats.last_wait_ms)
    # the only delay batching adds is the leader's wait for company, bounded by max_wait_ms
    assert statistics.median(waits) < 20, waits


def test_repeated_texts_come_from_the_cache_without_a_forward_pass(embedder):
    texts = [f"cache probe {time.time()} {i}" for i in range(3)]
    first = embedder.encode(texts)
    before = embedder.stats.forward_passes
    again = embedder.encode([texts[2], texts[0]])
    assert embedder.stats.forward_passes == before
    assert np.array_equal(again, first[[2, 0]])


def test_large_batches_go_straight_through(embedder):
    before = embedder.stats.forward_passes
    vectors = embedder.encode([f"text {i}" for i in range(40)])
    assert vectors.shape == (40, 384)
    assert embedder.stats.forward_passes - before == 1
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def textbook_bm25(docs: list[tuple[str, str]], query: str, k1=K1, b=B, title_weight=2.0):
    """Plain-Python BM25 (title terms count `title_weight` times, fixed average length)."""
    from collections import Counter
    from math import log

    counts = []
    for title, text in docs:
        c: Counter[str] = Counter()
        for t in tokenize(text):
            c[t] += 1.0
        for t in tokenize(title):
            c[t] += title_weight
        counts.append(c)
    n = len(docs)
    out = []
    for c in counts:
        length = sum(c.values())
        score = 0.0
        for term in set(tokenize(query)):
            df = sum(1 for other in counts if term in other)
            if term in c:
                idf = log((n - df + 0.5) / (df + 0.5) + 1.0)
                tf = c[term]
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / AVG_LEN))
        out.append(score)
    return np.array(out)


WORDS = ("refund refunds charge invoice plan billing setting settings enabled webhook signature "
         "api key rotate export seat upgrade cancel tax vat receipt sso error timeout").split()


def test_sparse_vectors_with_qdrants_idf_score_textbook_bm25():
    """Document weights times Qdrant's IDF (ln((N - df + 0.5) / (df + 0.5) + 1)) is BM25."""
    import random
    from math import log

    rng = random.Random(5)
    docs = [(" ".join(rng.choices(WORDS, k=rng.randrange(0, 3))),
             " ".join(rng.choices(WORDS + [f"rare{rng.randrange(500)}"],
                                  k=rng.randrange(0, 25)))) for _ in range(60)]
    vectors = [dict(zip(*document_vector(t, x), strict=True)) for t, x in docs]
    df: dict[int, int] = {}
    for vector in vectors:
        for index in vector:
            df[index] = df.get(index, 0) + 1
    for query in ("refund settings", "api key rotate rotate", "rare7 vat", "nothing here", ""):
        indices, values = query_vector(query)
        assert values == [1.0] * len(indices) and indices == sorted(set(indices))
        ours = [sum(v * vec.get(i, 0.0) * log((60 - df.get(i, 0) + 0.5) / (df.get(i, 0) + 0.5)
                                              + 1.0)
                    for i, v in zip(indices, values, strict=True)) for vec in vectors]
        assert np.allclose(ours, textbook_bm25(docs, query), rtol=1e-6, atol=1e-9), query
    assert document_vector("", "") == ([], [])
    assert query_vector("the and of") == ([], [])


def test_sparse_dimensions_are_deterministic_and_unsigned_32_bit():
    indices, values = document_vector("Webhooks", "rotate the webhook signing secret " * 50)
    assert indices == sorted(indices) and all(0 <= i < 2**32 for i in indices)
    assert document_vector("Webhooks", "rotate the webhook signing secret " * 50) == (
        indices, values)
    assert all(0 < v < K1 + 1 for v in values)  # saturates however often a term repeats
    huge = document_vector("", "x" * 100_000 + " \x00 \ud800 emoji 🎉 " * 1000)
    assert len(huge[0]) == len(huge[1]) < 10
