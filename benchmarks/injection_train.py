"""Fit the learned injection detector (models/data/injection_head.json) and measure it.

    python -m benchmarks.injection_train --data PATH/prompt_injection.json [--out HEAD.json]
        [--build-dev DEV.jsonl]

Positives: the English `user_input` prompts of Meta's CyberSecEval prompt-injection benchmark
(PurpleLlama, `CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection.json`, MIT
licence; fetch it yourself, it is not part of this repository), and the payloads of
benchmarks/injection_data.py, alone and put inside Bitext support questions. Negatives: Bitext
customer-support utterances (CDLA-Sharing-1.0), BANKING77 (CC BY 4.0), Stanford Politeness
requests (Apache-2.0), pairs of those, and the shipped knowledge base's sentences.

Everything is split by a hash of the text: a third of the CyberSecEval prompts, of our
payloads and of the Bitext questions form the dev split, never seen in training. The decision
threshold is chosen by 5-fold cross-validation on the training split (the lowest threshold
whose benign false-flag rate stays under `--max-benign-flag` in a fold; the median over folds),
and the spread is reported. `--build-dev` writes the dev split as eval tickets (JSONL in the
`supportgraph eval` format) for an end-to-end run.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.injection_data import embed, payloads
from evals.builders import shared_data

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_data()
HEAD = ROOT / "supportgraph" / "models" / "data" / "injection_head.json"
SOURCE = ("meta-llama/PurpleLlama CybersecurityBenchmarks/datasets/prompt_injection/"
          "prompt_injection.json")


class DataError(ValueError):
    """Training data that cannot be used; reported as one line."""


def _split(text: str) -> str:
    return "dev" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3 == 0 else "train"


def load_cyberseceval(path: Path) -> list[str]:
    """English injected user inputs of the CyberSecEval prompt-injection set."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of test cases")
    out = [r["user_input"] for r in rows if isinstance(r, dict)
           and isinstance(r.get("user_input"), str) and r.get("speaking_language",
                                                                  "English") == "English"]
    if len(out) < 50:
        raise DataError(f"{path}: only {len(out)} English user_input prompts (need >= 50)")
    return out


def load_benign(shared: Path, rng: random.Random) -> dict[str, list[str]]:
    """Benign texts by source: support questions, banking questions, polite requests, KB."""
    def read_csv(path: Path, column: str) -> list[str]:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return [row[column] for row in csv.DictReader(fh) if row.get(column)]

    bitext = sorted(set(read_csv(shared / "bitext" / "bitext_customer_support_20k.csv",
                                 "utterance")))
    banking = read_csv(shared / "banking77" / "train.csv", "text")
    polite = read_csv(shared / "politeness" / "wikipedia.annotated.no_turkids.csv", "Request")
    kb = []
    for path in sorted((ROOT / "retrieval" / "kb").rglob("*.md")):
        kb += [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", path.read_text("utf-8"))
               if len(s.split()) >= 5 and not s.startswith("#")]
    rng.shuffle(banking)
    rng.shuffle(polite)
    return {"bitext": bitext, "banking77": banking[:3000], "politeness": polite[:2500],
            "kb": kb}


def build(data: Path, shared: Path, seed: int) -> dict[str, list[tuple[str, int, str]]]:
    """(text, label, group) examples of the train and dev splits."""
    rng = random.Random(seed)
    cse = load_cyberseceval(data)
    benign = load_benign(shared, rng)
    questions = {s: [q for q in benign["bitext"] if _split(q) == s] for s in ("train", "dev")}
    out: dict[str, list[tuple[str, int, str]]] = {"train": [], "dev": []}
    for split in ("train", "dev"):
        attacks = [(f"cse:{_split(t)}:{i}", t) for i, t in enumerate(cse) if _split(t) == split]
        attacks += [(f"own:{family}:{i}", t) for i, (family, t) in enumerate(payloads(split))]
        qs = questions[split]
        for group, text in attacks:
            out[split].append((text, 1, group))
            for position in range(3):
                out[split].append((embed(rng.choice(qs), text, position), 1, group))
        n_bitext = 6000 if split == "train" else 1500
        for q in rng.sample(qs, min(n_bitext, len(qs))):
            out[split].append((q, 0, f"bitext:{q[:40]}"))
        for i in range(n_bitext // 3):
            a, b = rng.sample(qs, 2)
            out[split].append((f"{a} {b}" if i % 2 else f"{a}\n\n{b}", 0, f"pair:{i}"))
        for name in ("banking77", "politeness", "kb"):
            for text in benign[name]:
                if _split(text) == split:
                    out[split].append((text, 0, f"{name}:{text[:40]}"))
    return out


def fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    model.fit(x, y)
    return model


def pick_threshold(probs: np.ndarray, y: np.ndarray, max_benign_flag: float) -> float:
    """The lowest threshold whose false-flag rate on the benign rows is at most the bound."""
    benign = np.sort(probs[y == 0])
    k = int(np.floor(max_benign_flag * len(benign)))
    return float(benign[len(benign) - k - 1]) + 1e-6 if k < len(benign) else 0.0


def rates(probs: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = probs >= threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    return {"precision": round(tp / max(1, tp + fp), 4),
            "recall": round(tp / max(1, int((y == 1).sum())), 4),
            "benign_flag_rate": round(fp / max(1, int((y == 0).sum())), 4)}


def cross_validate(x, y, groups, c, max_benign_flag, folds=5, seed=0):
    """Grouped k-fold: a payload and its ticket versions stay in one fold."""
    unique = sorted(set(groups))
    random.Random(seed).shuffle(unique)
    fold_of = {g: i % folds for i, g in enumerate(unique)}
    fold = np.array([fold_of[g] for g in groups])
    thresholds, results = [], []
    for k in range(folds):
        train, test = fold != k, fold == k
        model = fit(x[train], y[train], c)
        inner = model.predict_proba(x[train])[:, 1]
        t = pick_threshold(inner, y[train], max_benign_flag)
        thresholds.append(t)
        results.append(rates(model.predict_proba(x[test])[:, 1], y[test], t))
    return thresholds, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path,
                        help="CyberSecEval prompt_injection.json (MIT), fetched by you")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=HEAD)
    parser.add_argument("--build-dev", type=Path, default=None)
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--max-benign-flag", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    from supportgraph.app.settings import apply_library_defaults

    apply_library_defaults(quiet=True)  # as the CLI does, before any model loads
    try:
        examples = build(args.data, args.shared, args.seed)
    except (DataError, OSError, KeyError) as exc:
        print(f"injection_train: {exc}", file=sys.stderr)
        return 2
    if args.build_dev:
        write_dev(examples["dev"], args.build_dev)
    from supportgraph.models.embeddings import MODEL_NAME
    from supportgraph.models.encoders import Encoders

    embedder = Encoders().embedder
    started = time.perf_counter()
    vectors = {s: embedder.encode([t for t, _, _ in examples[s]]) for s in ("train", "dev")}
    print(f"embedded {sum(len(v) for v in vectors.values())} texts in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    x, y = vectors["train"], np.array([label for _, label, _ in examples["train"]])
    groups = [g for _, _, g in examples["train"]]
    thresholds, folds = cross_validate(x, y, groups, args.c, args.max_benign_flag)
    threshold = float(np.median(thresholds))
    model = fit(x, y, args.c)
    dev_y = np.array([label for _, label, _ in examples["dev"]])
    dev = rates(model.predict_proba(vectors["dev"])[:, 1], dev_y, threshold)
    spread = {k: [f[k] for f in folds] for k in folds[0]}
    report = {
        "cv_thresholds": [round(t, 4) for t in thresholds], "threshold": round(threshold, 4),
        "cv": {k: {"mean": round(float(np.mean(v)), 4), "min": min(v), "max": max(v)}
               for k, v in spread.items()},
        "dev": dev,
        "counts": {s: {"injection": sum(1 for _, lab, _ in examples[s] if lab == 1),
                       "benign": sum(1 for _, lab, _ in examples[s] if lab == 0)}
                   for s in ("train", "dev")},
    }
    head = {
        "embedding_model": MODEL_NAME,
        "weight": [round(float(w), 6) for w in model.coef_[0]],
        "bias": round(float(model.intercept_[0]), 6),
        "threshold": round(threshold, 4),
        "provenance": {
            "positives": [f"{SOURCE} (MIT licence, Meta Platforms): English user_input prompts "
                          "of the train split", "benchmarks/injection_data.py payloads (train "
                          "split), alone and inside Bitext questions"],
            "negatives": ["Bitext customer support 20k utterances (CDLA-Sharing-1.0)",
                          "BANKING77 train (CC BY 4.0)",
                          "Stanford Politeness Wikipedia requests (Apache-2.0)",
                          "retrieval/kb sentences (this project)"],
            "data_sha256": hashlib.sha256(args.data.read_bytes()).hexdigest(),
            "recipe": f"sklearn LogisticRegression(C={args.c}, class_weight='balanced') on "
                      "L2-normalised MiniLM sentence embeddings; threshold: median over 5 "
                      f"grouped CV folds of the lowest one flagging <= {args.max_benign_flag:.1%}"
                      " of benign training texts",
            "command": "python -m benchmarks.injection_train --data PATH/prompt_injection.json",
        },
        "report": report,
    }
    args.out.write_text(json.dumps(head, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))
    return 0


def write_dev(rows: list[tuple[str, int, str]], path: Path) -> None:
    """The dev split as eval tickets: injections expect a human, benign texts are unlabelled."""
    with path.open("w", encoding="utf-8") as fh:
        for i, (text, label, group) in enumerate(rows):
            fh.write(json.dumps({"id": f"injdev-{i:05d}", "channel": "chat", "body": text,
                                 "injection": bool(label), "group": group},
                                ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
