"""Retrieval quality and speed on a real manual nobody here wrote (E-Manual QA, Galaxy S10).

    python -m benchmarks.retrieval [--quick] [--corpus PATH --questions PATH]

Quality: the manual's sections are ingested as JSONL records (id = section id, title, text =
the section's lines), each question is asked, and a retrieved section counts as correct when
its title, or one of its lines (the manual's sub-headings are lines of their own), equals the
last part of the question's `section_path` (compared case- and whitespace-insensitively).
Recall@1/@5 over distinct sections, for the plain dense baseline (MiniLM over whole sections)
and for the store's hybrid search, side by side.

Fusion (chosen here, `retrieval.store.DEFAULT_FUSION`): Qdrant fuses the dense and BM25
prefetches itself. Measured side by side against the previous in-process convex min-max fusion
(same corpus, same chunks): 50 questions R@1/R@5 0.86/0.96 with DBSF vs 0.86/0.96 convex, 0.76/0.92
RRF (k=60); 300 generated questions 0.713/0.943 DBSF vs 0.720/0.950 convex, 0.693/0.937 RRF.
DBSF, like min-max, keeps how far ahead a candidate is; RRF keeps ranks only.

Speed: ingest rate, query latency (p50/p95, including the query embedding) at `--scale`
chunks in local mode, and micro-batched vs one-at-a-time embedding throughput with 32
concurrent callers. The last printed line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from evals.builders import shared_data
from retrieval.ingest import MAX_WORDS, ingest_paths
from retrieval.store import Chunk, embedding_text, open_store
from supportgraph.models.embeddings import Embedder
from supportgraph.models.encoders import Encoders

REPO = Path(__file__).resolve().parents[1]



def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def load(corpus: Path, questions: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    sections = json.loads(corpus.read_text(encoding="utf-8"))
    with questions.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    qs = []
    for row in rows:
        target = norm(row["section_path"].split(">")[-1])
        gold = {
            sid for sid, sec in sections.items()
            if norm(sec.get("title", "")) == target
            or any(norm(line) == target for line in sec.get("text", []))
        }
        qs.append({"id": row.get("question_id", str(len(qs))), "question": row["question"],
                   "gold": gold, "target": target})
    return sections, qs


def generated_questions(sections: dict[str, dict[str, Any]], limit: int) -> list[tuple[str, set]]:
    """Sample `limit` of the corpus's generated questions (two a section, seeded).

    They are the part of `t5_para` after the section text; gold is every section with the
    source section's title.
    """
    by_title: dict[str, set] = {}
    for sid, sec in sections.items():
        by_title.setdefault(norm(sec.get("title", "")), set()).add(sid)
    pairs = []
    for sec in sections.values():
        para, body = sec.get("t5_para") or "", " ".join(sec.get("text", []))
        if not para.startswith(body):
            continue
        questions = [q.strip() + "?" for q in para[len(body):].split("?")
                     if len(q.strip().split()) >= 4]
        pairs.extend((q, by_title[norm(sec.get("title", ""))]) for q in questions[:2])
    random.Random(0).shuffle(pairs)
    return pairs[:limit]


def recall(rankings: list[list[str]], qs: list[dict[str, Any]]) -> dict[str, float]:
    r1 = np.mean([bool(r[:1]) and r[0] in q["gold"] for r, q in zip(rankings, qs, strict=True)])
    r5 = np.mean([bool(set(r[:5]) & q["gold"]) for r, q in zip(rankings, qs, strict=True)])
    return {"r1": round(float(r1), 3), "r5": round(float(r5), 3)}


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def throughput(embedder: Embedder, texts: list[str], callers: int, micro_batching: bool
               ) -> float:
    """Texts per second when `callers` threads each embed their share one text at a time."""
    embedder.configure(micro_batching=micro_batching)
    shares = [texts[i::callers] for i in range(callers)]
    barrier = threading.Barrier(callers + 1)

    def work(share: list[str]) -> None:
        barrier.wait()
        for text in share:
            embedder.encode_one(text)

    threads = [threading.Thread(target=work, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    embedder.configure(micro_batching=True)
    return len(texts) / seconds


def main(argv: list[str] | None = None) -> int:
    data = shared_data() / "emanual_s10"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scale test (< ~2 min)")
    parser.add_argument("--corpus", type=Path, default=data / "s10_manual_corpus.json")
    parser.add_argument("--questions", type=Path, default=data / "s10_50_questions.csv")
    parser.add_argument("--scale", type=int, default=None, help="chunks for the latency test")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args(argv)
    from supportgraph.app.settings import apply_library_defaults

    apply_library_defaults(quiet=True)  # as the CLI does, before any model loads
    scale = args.scale or (4_000 if args.quick else 20_000)
    figures: dict[str, Any] = {"benchmark": "retrieval", "quick": args.quick,
                               "corpus": args.corpus.name, "cpus": os.cpu_count(),
                               "load_avg_start": round(os.getloadavg()[0], 2)}

    sections, qs = load(args.corpus, args.questions)
    questions = [q["question"] for q in qs]
    home = Path(tempfile.mkdtemp(prefix="sg-bench-"))
    embedder = Encoders().embedder  # this run's MiniLM (nothing else in the process loads one)
    store = None
    try:
        store = open_store(home=home, embedder=embedder)
        embedder.configure(cache_size=0)  # measure the model, not the embedding cache
        embedder.encode(["warm up"])

        # ---- ingest the manual as JSONL records
        records = home / "sections.jsonl"
        with records.open("w", encoding="utf-8") as out:
            for sid, sec in sections.items():
                text = "\n".join(line for line in sec.get("text", []) if line.strip())
                if text.strip():
                    out.write(json.dumps({"id": sid, "title": sec.get("title", ""),
                                          "text": text}) + "\n")
        report = ingest_paths(store, "manual", [records])
        figures.update(sections=report.documents, chunks=report.chunks,
                       ingest_seconds=round(report.seconds, 2),
                       ingest_chunks_per_s=round(report.chunks / report.seconds, 1))
        print(f"ingested {report.documents} sections as {report.chunks} chunks in "
              f"{report.seconds:.1f} s ({figures['ingest_chunks_per_s']} chunks/s)")

        # ---- baseline: plain dense MiniLM over whole sections. A section stored as one chunk
        # whose embedded text is the whole section already has that vector: reuse it (BERT
        # tokenisation ignores the whitespace the chunker normalises), embed only the rest.
        ids = [sid for sid in sections]
        stored = store.scroll_points("manual")
        per_doc: dict[str, list[Any]] = {}
        for point in stored:
            per_doc.setdefault(str(point[1]["doc_id"]), []).append(point)
        full = {sid: "\n".join(sections[sid].get("text", [])) or sections[sid]["title"]
                for sid in ids}
        reuse = {}
        for sid in ids:
            points = per_doc.get(sid, [])
            if len(points) == 1:
                payload = points[0][1]
                if embedding_text(payload["title"], payload["text"]).split() == \
                        full[sid].split():
                    reuse[sid] = points[0][2]
        todo = [sid for sid in ids if sid not in reuse]
        fresh = dict(zip(todo, embedder.encode([full[sid] for sid in todo]), strict=True))
        whole = np.stack([reuse[sid] if sid in reuse else fresh[sid] for sid in ids])
        qv = embedder.encode(questions)
        baseline = [[ids[j] for j in np.argsort(-(whole @ v))[:args.k]] for v in qv]
        figures["baseline"] = recall(baseline, qs)

        # ---- ours, and its parts
        variants = (("dense, chunks", "dense", "dense", "dbsf"),
                    ("BM25 only", "lexical", "lexical", "dbsf"),
                    ("hybrid, RRF k=60", "hybrid_rrf", "hybrid", "rrf"),
                    ("hybrid, DBSF (ours)", "hybrid", "hybrid", "dbsf"))
        for _label, key, mode, fusion in variants:
            results = store.best_documents_many("manual", questions, k=args.k,
                                                query_vectors=qv, mode=mode, fusion=fusion)
            figures[key] = recall([[h.doc_id for h in hits] for hits in results], qs)
        base, ours = figures["baseline"], figures["hybrid"]
        figures["ratio_r1"] = round(ours["r1"] / base["r1"], 3) if base["r1"] else None
        figures["ratio_r5"] = round(ours["r5"] / base["r5"], 3) if base["r5"] else None
        print(f"{'method':<30}{'R@1':>7}{'R@5':>7}")
        for label, key in (("dense, whole sections (base)", "baseline"),
                           *((label, key) for label, key, _, _ in variants)):
            print(f"{label:<30}{figures[key]['r1']:>7.3f}{figures[key]['r5']:>7.3f}")
        print(f"ratio ours/baseline: R@1 x{figures['ratio_r1']}  R@5 x{figures['ratio_r5']}")

        # ---- a second, larger query set from the same data: the corpus's machine-generated
        # questions per section (`t5_para`, after the section text), where dense beats BM25;
        # a fusion that only suits the 50 questions would show here. Full mode only.
        generated = [] if args.quick else generated_questions(sections, limit=300)
        if generated:
            gqs = [{"question": q, "gold": gold} for q, gold in generated]
            gvec = embedder.encode([q for q, _ in generated])
            held: dict[str, Any] = {"n": len(gqs)}
            for _label, key, mode, fusion in variants:
                results = store.best_documents_many("manual", [q["question"] for q in gqs],
                                                    k=args.k, query_vectors=gvec, mode=mode,
                                                    fusion=fusion)
                held[key] = recall([[h.doc_id for h in hits] for hits in results], gqs)
            figures["generated_questions"] = held
            print(f"generated questions (n={held['n']}): " + ", ".join(
                f"{label} R@1 {held[key]['r1']:.3f} R@5 {held[key]['r5']:.3f}"
                for label, key, _, _ in variants))

        # ---- chunk size: the same search over the manual cut at other window sizes
        if not args.quick:
            sweep = {}
            for words in (80, 320):
                name = f"manual_w{words}"
                rep = ingest_paths(store, name, [records], max_words=words, overlap=words // 5)
                results = store.best_documents_many(name, questions, k=args.k, query_vectors=qv)
                sweep[str(words)] = {"chunks": rep.chunks, **recall(
                    [[h.doc_id for h in hits] for hits in results], qs)}
            sweep[str(MAX_WORDS)] = {"chunks": report.chunks, **figures["hybrid"]}
            figures["chunk_words"] = sweep
            for words, row in sorted(sweep.items(), key=lambda kv: int(kv[0])):
                print(f"chunks of <= {words:>3} words: {row['chunks']:>4} chunks, "
                      f"R@1 {row['r1']:.3f}, R@5 {row['r5']:.3f}")

        # ---- scale: copies of the manual's chunks (vectors reused) up to `scale` chunks
        base_points = stored
        store.ensure_collection("scale")
        copies = 0
        started = time.perf_counter()
        total = 0
        while total < scale:
            chunks, vectors = [], []
            for _pid, payload, vector in base_points:
                if total + len(chunks) >= scale:
                    break
                chunks.append(Chunk(doc_id=f"copy{copies}/{payload['doc_id']}",
                                    chunk=int(payload["chunk"]), text=payload["text"],
                                    title=payload["title"], source="bench"))
                vectors.append(vector)
            store.upsert_chunks("scale", chunks, vectors=np.asarray(vectors, dtype=np.float32))
            total += len(chunks)
            copies += 1
        upsert_seconds = time.perf_counter() - started
        points = store.count("scale")
        started = time.perf_counter()
        store.best_documents("scale", "warm up the lexical index", k=args.k)
        figures["bm25_index_build_s"] = round(time.perf_counter() - started, 2)
        rounds = 1 if args.quick else 3
        latencies = []
        for _ in range(rounds):
            for question in questions:
                start = time.perf_counter()
                store.best_documents("scale", question, k=args.k)
                latencies.append((time.perf_counter() - start) * 1000)
        figures.update(
            scale_points=points,
            scale_upsert_points_per_s=round(points / upsert_seconds, 1),
            query_p50_ms=round(percentile(latencies, 50), 1),
            query_p95_ms=round(percentile(latencies, 95), 1),
        )
        print(f"{points} chunks in local mode: query p50 {figures['query_p50_ms']} ms, "
              f"p95 {figures['query_p95_ms']} ms (incl. embedding; {len(latencies)} queries); "
              f"BM25 index build {figures['bm25_index_build_s']} s; "
              f"upsert without embedding {figures['scale_upsert_points_per_s']} points/s")

        # ---- micro-batching throughput with 32 concurrent callers
        per_caller = 3 if args.quick else 8
        texts = [f"{q} (variant {i})" for i in range(per_caller) for q in questions][
            : 32 * per_caller]
        single = throughput(embedder, texts, 32, micro_batching=False)
        passes = embedder.stats.forward_passes
        batched = throughput(embedder, texts, 32, micro_batching=True)
        passes = embedder.stats.forward_passes - passes
        figures.update(
            embed_one_at_a_time_per_s=round(single, 1),
            embed_micro_batched_per_s=round(batched, 1),
            embed_forward_passes_batched=passes,
            embed_texts=len(texts),
            micro_batch_ratio=round(batched / single, 2),
        )
        print(f"embedding, 32 concurrent callers, {len(texts)} texts: one-at-a-time "
              f"{single:.1f}/s, micro-batched {batched:.1f}/s ({passes} forward passes) "
              f"-> x{figures['micro_batch_ratio']}")
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(home, ignore_errors=True)
    figures["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(f"machine: {figures['cpus']} CPUs, 1-min load average {figures['load_avg_start']} at "
          f"start, {figures['load_avg_end']} at end (other work on the box slows every figure)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
