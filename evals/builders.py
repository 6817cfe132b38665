"""Build eval datasets from the public data in ../shared/data (read there, never copied).

    python -m evals.builders bitext --out bitext_eval.jsonl [--limit 500]
    python -m evals.builders clinc150 --out oos_eval.jsonl [--limit 100]
    python -m evals.builders emanual --out s10_eval.jsonl
    python -m evals.builders emanual-kb --out s10_manual.jsonl

- `bitext`: Bitext customer-support utterances; `expected_route` from the intent's category via
  `benchmarks/bitext_routes.toml` (unlisted intents go to a human), `expected_outcome` is
  `human` for the human route and `sent` otherwise. No reference answers. Evaluating it means
  an intent model trained on Bitext's intents (`--config intent_model_dir=...`).
- `clinc150`: CLINC150 out-of-scope utterances (`oos_val`, then `oos_train`): expected intent
  `out_of_scope`, route and outcome `human`. Any intent model should send all of them to a
  person.
- `emanual`: the 50 Galaxy S10 questions of E-Manual QA, route `technical`, outcome `sent`,
  the manual's answer as reference, and `expected_doc_ids`: the manual sections whose title or
  one of whose lines equals the last part of the question's `section_path` (the gold rule of
  `benchmarks/retrieval.py`). The ids are the corpus's section ids, which are the doc ids of
  the `emanual-kb` records once ingested (`supportgraph ingest --collection kb_technical
  s10_manual.jsonl`), so `gold_citation_precision` measures a KB-only deployment of the manual.
- `emanual-kb`: the manual itself as ingest JSONL records `{"id", "title", "text"}`.

A `--limit` takes a seeded random sample (kept in file order), so small sets still cover
every category. The folder is `$SUPPORTGRAPH_SHARED_DATA`, else `../shared/data` beside the
repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supportgraph.app.settings import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
BITEXT_ROUTES = REPO / "benchmarks" / "bitext_routes.toml"
SEED = 7


class BuildError(RuntimeError):
    """The source data is missing or not what the builder expects."""


def shared_data() -> Path:
    """The shared datasets folder: $SUPPORTGRAPH_SHARED_DATA, else ../shared/data."""
    override = shared_data_dir()
    return Path(override) if override else (REPO / ".." / "shared" / "data").resolve()


def _sample(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    if limit is None or limit >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def load_route_map(path: Path = BITEXT_ROUTES) -> dict[str, str]:
    """Intent -> route from a routes TOML (`[routes]` route = [intents])."""
    try:
        routes = tomllib.loads(path.read_text(encoding="utf-8"))["routes"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"{path}: cannot read [routes]: {exc}") from None
    return {intent: route for route, intents in routes.items() for intent in intents}


def build_bitext(data: Path, limit: int | None = None, seed: int = SEED) -> list[dict[str, Any]]:
    """Eval rows from the Bitext CSV (flags, utterance, category, intent)."""
    path = data / "bitext" / "bitext_customer_support_20k.csv"
    if not path.is_file():
        raise BuildError(f"{path}: not found (set SUPPORTGRAPH_SHARED_DATA)")
    routes = load_route_map()
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"utterance", "category", "intent"} - set(reader.fieldnames or ())
        if missing:
            raise BuildError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for number, row in enumerate(reader, start=1):
            text = (row["utterance"] or "").strip()
            if not text:
                continue
            route = routes.get(row["intent"], "human")
            rows.append({"id": f"bitext-{number:05d}", "channel": "chat", "body": text,
                         "expected_intent": row["intent"], "expected_route": route,
                         "expected_outcome": "human" if route == "human" else "sent",
                         "reference_answer": "",
                         "tags": ["bitext", f"category:{row['category'].lower()}"]})
    return _sample(rows, limit, seed)


def build_clinc150_oos(data: Path, limit: int | None = None,
                       seed: int = SEED) -> list[dict[str, Any]]:
    """Eval rows from CLINC150's out-of-scope utterances: all expected to reach a human."""
    path = data / "clinc150" / "dev.json"
    if not path.is_file():
        raise BuildError(f"{path}: not found (set SUPPORTGRAPH_SHARED_DATA)")
    try:
        sets = json.loads(path.read_text(encoding="utf-8"))
        items = [(split, i, text) for split in ("oos_val", "oos_train")
                 for i, (text, _label) in enumerate(sets[split], start=1)]
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"{path}: not the CLINC150 layout: {exc}") from None
    rows = [{"id": f"clinc-{split}-{i:03d}", "channel": "chat", "body": text.strip(),
             "expected_intent": "out_of_scope", "expected_route": "human",
             "expected_outcome": "human", "reference_answer": "",
             "tags": ["oos", "clinc150"]}
            for split, i, text in items if text.strip()]
    return _sample(rows, limit, seed)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _emanual(data: Path) -> tuple[dict[str, dict[str, Any]], Path]:
    folder = data / "emanual_s10"
    corpus = folder / "s10_manual_corpus.json"
    if not corpus.is_file():
        raise BuildError(f"{corpus}: not found (set SUPPORTGRAPH_SHARED_DATA)")
    try:
        sections = json.loads(corpus.read_text(encoding="utf-8"))
        if not isinstance(sections, dict) or not all(
                isinstance(s, dict) and isinstance(s.get("text", []), list)
                for s in sections.values()):
            raise TypeError("expected {section id: {title, text: [lines]}}")
    except (ValueError, TypeError) as exc:
        raise BuildError(f"{corpus}: not the E-Manual corpus layout: {exc}") from None
    return sections, folder / "s10_50_questions.csv"


def build_emanual(data: Path, limit: int | None = None, seed: int = SEED) -> list[dict[str, Any]]:
    """Eval rows from the S10 questions, with the gold manual sections as expected_doc_ids."""
    sections, questions = _emanual(data)
    if not questions.is_file():
        raise BuildError(f"{questions}: not found (set SUPPORTGRAPH_SHARED_DATA)")
    rows = []
    with questions.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"question_id", "question", "section_path", "answer"} - set(
            reader.fieldnames or ())
        if missing:
            raise BuildError(f"{questions}: missing columns {', '.join(sorted(missing))}")
        for row in reader:
            target = _norm(row["section_path"].split(">")[-1])
            gold = sorted(sid for sid, sec in sections.items()
                          if _norm(str(sec.get("title", ""))) == target
                          or any(_norm(str(line)) == target for line in sec.get("text", [])))
            question = (row["question"] or "").strip()
            if not question or not gold:
                continue  # a question the manual has no section for cannot be scored
            rows.append({"id": f"s10-{row['question_id']}", "channel": "chat", "body": question,
                         "expected_route": "technical", "expected_outcome": "sent",
                         "reference_answer": (row["answer"] or "").strip(),
                         "expected_doc_ids": gold[:50], "tags": ["emanual_s10"]})
    return _sample(rows, limit, seed)


def build_emanual_kb(data: Path, limit: int | None = None,
                     seed: int = SEED) -> list[dict[str, Any]]:
    """The S10 manual as ingest records; their ids are what `emanual` rows expect cited."""
    sections, _ = _emanual(data)
    rows = [{"id": sid, "title": str(sec.get("title") or sid),
             "text": "\n".join(str(line) for line in sec.get("text", []))}
            for sid, sec in sections.items()]
    return _sample([r for r in rows if r["text"].strip()], limit, seed)


BUILDERS = {"bitext": build_bitext, "clinc150": build_clinc150_oos, "emanual": build_emanual,
            "emanual-kb": build_emanual_kb}


def write_jsonl(rows: list[dict[str, Any]], out: Path) -> None:
    """One JSON object a line, UTF-8."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build one dataset; exit 2 with one line on stderr on bad input."""
    parser = argparse.ArgumentParser(prog="python -m evals.builders",
                                     description="Build an eval set from the shared data.")
    parser.add_argument("source", choices=sorted(BUILDERS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, help="a seeded sample of at most N rows")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("evals.builders: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        rows = BUILDERS[args.source](shared_data(), args.limit, args.seed)
    except BuildError as exc:
        print(f"evals.builders: {exc}", file=sys.stderr)
        return 2
    write_jsonl(rows, Path(args.out))
    print(f"{args.out}: {len(rows)} {'records' if args.source.endswith('-kb') else 'tickets'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
