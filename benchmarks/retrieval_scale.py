"""Retrieval at scale: hybrid search and learn-sized upserts on N synthetic cases.

    python -m benchmarks.retrieval_scale --points 100000 [--url http://localhost:6333]

N points of 10 tenants go into one collection through the store's own ingest path
(`upsert_chunks`, batches of `--batch`): texts of 12-40 words drawn from a synthetic
vocabulary with a Zipf-like frequency (so BM25's IDF has common and rare terms to work with),
and random unit vectors (no embedding model: this measures the engine, not MiniLM). Then the
index is built (`optimize`; `--no-optimize` searches the points as written), and:

- search: `--queries` hybrid searches (dense + BM25 prefetch, fused in Qdrant) for k=5 with a
  tenant filter, query texts of 2-6 vocabulary words and random unit vectors;
- learn: `--upserts` one-point upserts (what `learn` writes), each followed by a search of that
  tenant that must return the new point (a write is visible to the next query).

Timings are wall-clock per call on a shared 2-core machine: compare runs made side by side.
The last line is one JSON object with points, search_p50_ms, search_p95_ms, upsert_p95_ms,
rss_mb (resident set size at the end) and build_s (ingest plus index build).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.points import Chunk
from retrieval.store import open_store
from supportgraph.models.embeddings import DIMENSIONS

COLLECTION = "scale"
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pa", "de", "gu", "zen", "bri",
             "tor", "al", "ex", "um", "ir", "os", "qua")


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    """`size` distinct pronounceable pseudo-words (no stopwords, no stemmer suffixes)."""
    words: set[str] = set()
    while len(words) < size:
        parts = rng.integers(0, len(SYLLABLES), rng.integers(2, 5))
        words.add("".join(SYLLABLES[p] for p in parts) + "x")
    return sorted(words)


def texts(words: list[str], n: int, low: int, high: int, rng: np.random.Generator) -> list[str]:
    """`n` texts of `low`..`high` words, word i drawn with weight 1/(i+1) (Zipf-like)."""
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    lengths = rng.integers(low, high + 1, n)
    picks = rng.choice(len(words), size=int(lengths.sum()), p=weights)
    out, start = [], 0
    for length in lengths:
        out.append(" ".join(words[i] for i in picks[start:start + length]))
        start += length
    return out


def unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.normal(size=(n, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    return round(float(np.percentile(np.asarray(values), p)), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--upserts", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--vocabulary", type=int, default=20_000)
    parser.add_argument("--url", default=None,
                        help="a Qdrant server instead of the embedded engine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-optimize", action="store_true",
                        help="search the points as written (no index build): what `learn` "
                             "leaves between two ingests")
    args = parser.parse_args(argv)
    if not 1 <= args.points <= 10_000_000 or not 1 <= args.tenants <= 1000:
        print("retrieval_scale: --points must be 1..10M and --tenants 1..1000", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    words = vocabulary(args.vocabulary, rng)
    tenants = [f"tenant{t}" for t in range(args.tenants)]
    home = Path(tempfile.mkdtemp(prefix="sg-scale-"))
    figures: dict[str, object] = {"benchmark": "retrieval_scale", "points": args.points,
                                  "tenants": args.tenants,
                                  "engine": "server" if args.url else "embedded",
                                  "optimized": not args.no_optimize,
                                  "cpus": os.cpu_count(),
                                  "load_avg_start": round(os.getloadavg()[0], 2)}
    store = None
    try:
        store = open_store(home=home, url=args.url)  # vectors are given: no embedder needed
        store.ensure_collection(COLLECTION)
        started = time.perf_counter()
        for start in range(0, args.points, args.batch):
            n = min(args.batch, args.points - start)
            chunks = [Chunk(doc_id=f"case:{start + i}", chunk=0, text=text,
                            tenant=tenants[(start + i) % args.tenants],
                            extra={"intent": f"intent{(start + i) % 7}"})
                      for i, text in enumerate(texts(words, n, 12, 40, rng))]
            store.upsert_chunks(COLLECTION, chunks, vectors=unit_vectors(n, rng))
            if start and start % (10 * args.batch) == 0:
                print(f"  {start} points in {time.perf_counter() - started:.0f} s", flush=True)
        insert_s = time.perf_counter() - started
        if not args.no_optimize:
            store.optimize(COLLECTION)
        build_s = time.perf_counter() - started
        assert store.count(COLLECTION) == args.points
        print(f"ingested {args.points} points in {insert_s:.1f} s, index built after "
              f"{build_s:.1f} s", flush=True)

        queries = texts(words, args.queries, 2, 6, rng)
        vectors = unit_vectors(args.queries, rng)
        for i in range(min(20, args.queries)):  # warm up caches and mmaps
            store.search(COLLECTION, queries[i], k=5, tenant=tenants[i % args.tenants],
                         query_vector=vectors[i])
        search_ms = []
        for i, (query, vector) in enumerate(zip(queries, vectors, strict=True)):
            tenant = tenants[int(rng.integers(args.tenants))]
            t0 = time.perf_counter()
            hits = store.search(COLLECTION, query, k=5, tenant=tenant, query_vector=vector)
            search_ms.append((time.perf_counter() - t0) * 1000)
            assert hits and all(h.payload["tenant"] == tenant for h in hits), i

        upsert_ms = []
        new_texts = texts(words, args.upserts, 12, 40, rng)
        new_vectors = unit_vectors(args.upserts, rng)
        for i, (text, vector) in enumerate(zip(new_texts, new_vectors, strict=True)):
            tenant = tenants[i % args.tenants]
            chunk = Chunk(doc_id=f"case:new{i}", chunk=0, text=text, tenant=tenant,
                          extra={"intent": "learned"})
            t0 = time.perf_counter()
            store.upsert_chunks(COLLECTION, [chunk], vectors=vector[None, :])
            upsert_ms.append((time.perf_counter() - t0) * 1000)
            [hit] = store.search(COLLECTION, text, k=1, tenant=tenant, query_vector=vector)
            assert hit.doc_id == f"case:new{i}", "a write was not visible to the next query"
        figures.update(
            insert_s=round(insert_s, 1),
            build_s=round(build_s, 1),
            search_p50_ms=percentile(search_ms, 50),
            search_p95_ms=percentile(search_ms, 95),
            upsert_p50_ms=percentile(upsert_ms, 50),
            upsert_p95_ms=percentile(upsert_ms, 95),
            rss_mb=rss_mb(),
            load_avg_end=round(os.getloadavg()[0], 2),
        )
        print(f"search (hybrid, tenant filter, k=5): p50 {figures['search_p50_ms']} ms, "
              f"p95 {figures['search_p95_ms']} ms; one-point upsert p50 "
              f"{figures['upsert_p50_ms']} ms, p95 {figures['upsert_p95_ms']} ms; "
              f"RSS {figures['rss_mb']} MB")
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
