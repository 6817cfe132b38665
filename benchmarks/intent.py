"""Intent classifier benchmark: accuracy, out-of-scope detection, calibration and speed.

Trains and evaluates on the public datasets in ../shared/data (CLINC150 val + oos_val,
BANKING77 with a stratified 80/20 split of train.csv, Bitext routing with
benchmarks/bitext_routes.toml), next to a baseline (softmax regression on the sentence
embedding, max-probability threshold), so every figure comes with a ratio. The last printed
line is one JSON object with all figures. `--quick` subsamples (it still fine-tunes, so it
takes minutes, not seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from evals.builders import shared_data
from supportgraph.models import intent_head as head
from supportgraph.models.encoders import Encoders
from supportgraph.models.intent import IntentModel, encode
from supportgraph.models.intent_data import load_routes
from supportgraph.models.intent_tune import TuneConfig

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


def subsample(texts, labels, per_class: int | None, seed: int = SEED):
    """Keep at most `per_class` examples of each label (all when None), order preserved."""
    if per_class is None:
        return list(texts), list(labels)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    labels_arr = np.array(labels)
    for label in sorted(set(labels)):
        members = np.flatnonzero(labels_arr == label)
        keep.extend(rng.permutation(members)[:per_class])
    keep.sort()
    return [texts[i] for i in keep], [labels[i] for i in keep]


def clinc_scores(pred, gold, in_scores, oos_scores, threshold):
    """CLINC150 scoring: in-scope correct = right intent and not rejected; OOS recall."""
    accepted = in_scores < threshold
    return {
        "in_scope_accuracy": float(np.mean((pred == gold) & accepted)),
        "oos_recall": float(np.mean(oos_scores >= threshold)),
    }


def best_at_recall(pred, gold, in_scores, oos_scores, recall=0.8):
    """Diagnostic only: best in-scope accuracy among thresholds reaching `recall` on val."""
    best = 0.0
    for t in np.unique(np.concatenate([in_scores, oos_scores])):
        if np.mean(oos_scores >= t) >= recall:
            best = max(best, float(np.mean((pred == gold) & (in_scores < t))))
    return best


class Clock:
    """Wall and process CPU seconds (all threads) since creation, plus the load average."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict:
        """Seconds so far and the 1-minute load average, rounded for the report."""
        return {"wall_s": round(time.perf_counter() - self.wall, 1),
                "cpu_s": round(time.process_time() - self.cpu, 1),
                "load_average": round(os.getloadavg()[0], 1)}


def held_out_split(labels, fraction: float, seed: int = SEED + 1):
    """(train, held) indices: `fraction` of each label held back for measurement only.

    Seeded apart from the model's own internal split so the two never coincide.
    """
    index = {label: i for i, label in enumerate(sorted(set(labels)))}
    return head.stratified_split(np.array([index[x] for x in labels]), fraction, seed)


def measure_clinc(model: IntentModel, sets: dict[str, tuple[list[str], list[str]]],
                  oos_texts: list[str], encoded: dict | None = None) -> dict:
    """In-scope accuracy (right intent and accepted) per set and overall; OOS recall.

    `encoded` maps set names (and "oos") to `model.encode` output already computed by an
    identical encoder (the frozen one is shared by two models).
    """
    encoded = encoded if encoded is not None else {}
    index = {label: i for i, label in enumerate(model.labels)}
    out: dict = {}
    all_correct = []
    for name, (texts, labels) in sets.items():
        probs, scores = model.scores(encoded.get(name) or model.encode(texts))
        pred = probs.argmax(axis=1)
        gold = np.array([index[y] for y in labels])
        correct = (pred == gold) & (scores < model.oos_threshold)
        out[f"in_scope_{name}"] = float(correct.mean())
        out[f"no_rejection_{name}"] = float(np.mean(pred == gold))
        all_correct.append(correct)
    out["in_scope"] = float(np.concatenate(all_correct).mean())
    _, oos_scores = model.scores(encoded.get("oos") or model.encode(oos_texts))
    out["oos_recall"] = float(np.mean(oos_scores >= model.oos_threshold))
    out["oos_threshold"] = model.oos_threshold
    out["threshold_cv"] = model.metrics.get("threshold_cv")
    return out


TUNE = TuneConfig(min_examples=0)
"""The tuned model's fine-tuning (opt-in in the product): defaults, also on the subsamples."""


def run_clinc(quick: bool, encoders: Encoders, tuned_only: bool = False) -> dict:
    """Three models on CLINC150, trained on 80% of train.

    old: frozen encoder, 1% rejection rule (what shipped before); new: the same encoder and
    head with the cross-validated threshold from oos_train (what ships now); tuned: fine-tuned
    encoder (`TuneConfig`: all 6 layers, 3 epochs) + the cross-validated threshold (opt-in).
    Measured on val plus the held-back 20% of train; out-of-scope recall on oos_val. No
    measured text reaches training or the threshold choice. new's training time is head +
    threshold only: its encoder pass is old's.
    """
    data = json.loads((shared_data() / "clinc150" / "dev.json").read_text())
    texts, labels = subsample(*zip(*data["train"], strict=True), 25 if quick else None)
    val_t, val_y = subsample(*zip(*data["val"], strict=True), 5 if quick else None)
    train_idx, held_idx = held_out_split(labels, 0.2)
    train_t, train_y = [texts[i] for i in train_idx], [labels[i] for i in train_idx]
    sets = {"val": (list(val_t), list(val_y)),
            "held_train": ([texts[i] for i in held_idx], [labels[i] for i in held_idx])}
    oos_train = [t for t, _ in data["oos_train"]]
    oos_val = [t for t, _ in data["oos_val"]]

    clock = Clock()
    tuned = IntentModel.train(train_t, train_y, {}, oos_texts=oos_train, seed=SEED, tune=TUNE,
                              encoders=encoders)
    tuned_time = clock.read()
    result = {
        "n_train": len(train_t), "n_val": len(val_t), "n_held_train": len(held_idx),
        "n_oos_threshold": len(oos_train), "n_oos_measured": len(oos_val),
        "tune_config": TUNE.to_dict(),
        "tuned": {**measure_clinc(tuned, sets, oos_val), "train": tuned_time,
                  "tuned_layers": tuned.tuned_layers},
    }
    if tuned_only:
        return result
    clock = Clock()
    frozen = encode(train_t, encoders)
    old = IntentModel.train(train_t, train_y, {}, seed=SEED, tune=None, encoded=frozen,
                            encoders=encoders)
    old_time = clock.read()
    clock = Clock()
    new = IntentModel.train(train_t, train_y, {}, oos_texts=oos_train, seed=SEED,
                            tune=None, encoded=frozen, oos_encoded=encode(oos_train, encoders),
                            encoders=encoders)
    new_time = clock.read()
    shared = {name: old.encode(t) for name, (t, _) in sets.items()}
    shared["oos"] = old.encode(oos_val)
    result["old"] = {**measure_clinc(old, sets, oos_val, shared), "train": old_time}
    result["new"] = {**measure_clinc(new, sets, oos_val, shared), "train": new_time}
    batch = (list(val_t) + oos_val)[:500 if quick else 600]
    result["throughput"] = throughput(old, tuned, batch, encoders)
    return result


def throughput(old: IntentModel, tuned: IntentModel, texts: list[str], encoders: Encoders,
               rounds: int = 2) -> dict:
    """Texts/s of batch `predict` (old = the frozen encoder, tuned) and of the bare encoder.

    Interleaved in one run. The bare encoder is sentence-transformers' MiniLM on the same texts
    with our cache off; the ratios to it are the issue's throughput figure.
    """
    bare_model = encoders.embedder._model
    rates: dict[str, list[float]] = {"bare": [], "old": [], "tuned": []}
    for _ in range(rounds):
        for name in ("bare", "old", "tuned"):
            encoders.clear_cache()
            started = time.perf_counter()
            if name == "bare":
                bare_model.encode(texts, batch_size=64, normalize_embeddings=True)
            else:
                (old if name == "old" else tuned).predict(texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    best = {name: max(values) for name, values in rates.items()}
    latencies = []
    for text in texts[:50]:
        started = time.perf_counter()
        tuned.predict([text])
        latencies.append((time.perf_counter() - started) * 1000)
    return {"texts": len(texts), "texts_per_s": best, "all_rounds": rates,
            "ratio_tuned_to_bare": best["tuned"] / best["bare"],
            "ratio_old_to_bare": best["old"] / best["bare"],
            "tuned_single_text_p50_ms": statistics.median(latencies)}


def read_csv(path: Path, text_col: str, label_col: str):
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r[text_col] for r in rows], [r[label_col] for r in rows], rows


def split(labels, seed=SEED, fraction=0.2):
    index = {label: i for i, label in enumerate(sorted(set(labels)))}
    return head.stratified_split(np.array([index[x] for x in labels]), fraction, seed)


def run_banking(quick: bool, encoders: Encoders) -> dict:
    """Frozen and tuned encoders on BANKING77's train.csv, 80% to train and 20% measured.

    Without out-of-scope examples the new model is the old one (the threshold does not change
    accuracy), so BANKING77 compares old and tuned.
    """
    texts, labels, _ = read_csv(shared_data() / "banking77" / "train.csv", "text", "category")
    texts, labels = subsample(texts, labels, 30 if quick else None)
    tr, te = split(labels)
    out: dict = {"n_train": len(tr), "n_test": len(te), "published_bert_large": 0.9366}
    for name, tune in (("old", None), ("tuned", TUNE)):
        clock = Clock()
        model = IntentModel.train([texts[i] for i in tr], [labels[i] for i in tr], {},
                                  seed=SEED, tune=tune, encoders=encoders)
        train_time = clock.read()
        probs, scores = model.scores(model.encode([texts[i] for i in te]))
        pred = [model.labels[j] for j in probs.argmax(axis=1)]
        correct = np.array([p == labels[i] for p, i in zip(pred, te, strict=True)])
        out[name] = {"accuracy": float(correct.mean()),
                     "ece": head.expected_calibration_error(probs.max(axis=1), correct),
                     "rejected_share": float(np.mean(scores >= model.oos_threshold)),
                     "train": train_time}
    return out


def run_bitext(quick: bool, encoders: Encoders) -> dict:
    path = shared_data() / "bitext" / "bitext_customer_support_20k.csv"
    texts, intents, rows = read_csv(path, "utterance", "intent")
    category = {r["intent"]: r["category"] for r in rows}
    texts, intents = subsample(texts, intents, 60 if quick else None)
    routes = load_routes(ROOT / "benchmarks" / "bitext_routes.toml")
    tr, te = split(intents)
    started = time.perf_counter()
    model = IntentModel.train(
        [texts[i] for i in tr], [intents[i] for i in tr], routes, seed=SEED, encoders=encoders
    )
    seconds = time.perf_counter() - started
    predictions = model.predict([texts[i] for i in te])
    gold = [intents[i] for i in te]
    return {
        "n_train": len(tr), "n_test": len(te),
        "intent_accuracy": float(np.mean([p.intent == g for p, g in zip(predictions, gold,
                                                                          strict=True)])),
        "category_accuracy": float(np.mean([category[p.intent] == category[g]
                                            for p, g in zip(predictions, gold, strict=True)])),
        "route_accuracy_no_rejection": float(np.mean([
            routes.get(p.intent, "human") == routes.get(g, "human")
            for p, g in zip(predictions, gold, strict=True)])),
        "route_accuracy": float(np.mean([p.route == routes.get(g, "human")
                                         for p, g in zip(predictions, gold, strict=True)])),
        "rejected_share": float(np.mean([p.out_of_scope for p in predictions])),
        "train_seconds": seconds,
    }


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _fmt_train(t: dict) -> str:
    return f"train {t['wall_s']:.0f} s wall / {t['cpu_s']:.0f} s CPU (load {t['load_average']})"


def main() -> None:
    global TUNE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="subsample for a short run")
    parser.add_argument("--only", choices=("clinc", "banking", "bitext"), action="append",
                        help="run only these datasets (repeatable; default clinc and banking)")
    parser.add_argument("--tune-epochs", type=int, help="fine-tuning epochs of the tuned model "
                        f"(default {TUNE.epochs})")
    parser.add_argument("--tune-layers", type=int, help="top layers fine-tuned "
                        f"(default {TUNE.layers}; 6 = all of MiniLM's layers)")
    parser.add_argument("--tune-lr", type=float, help="encoder learning rate "
                        f"(default {TUNE.learning_rate})")
    parser.add_argument("--tuned-only", action="store_true",
                        help="CLINC150: train and measure only the tuned model")
    args = parser.parse_args()
    if args.tune_epochs is not None:
        TUNE = replace(TUNE, epochs=args.tune_epochs)
    if args.tune_layers is not None:
        TUNE = replace(TUNE, layers=args.tune_layers)
    if args.tune_lr is not None:
        TUNE = replace(TUNE, learning_rate=args.tune_lr)
    only = set(args.only or ("clinc", "banking"))
    started = time.perf_counter()
    report: dict = {"benchmark": "intent", "quick": args.quick}
    encoders = Encoders()  # this run's MiniLM (nothing else in the process loads one)
    if "clinc" in only:
        clinc = report["clinc150"] = run_clinc(args.quick, encoders, args.tuned_only)
        print(f"CLINC150: {clinc['n_train']} train; measured on val ({clinc['n_val']}) + held-back"
              f" 20% of train ({clinc['n_held_train']}); OOS recall on oos_val "
              f"({clinc['n_oos_measured']}); threshold from oos_train (new, tuned)"
              f"{' [quick subsample]' if args.quick else ''}")
        models = ("tuned",) if args.tuned_only else ("old", "new", "tuned")
        for name in models:
            r = clinc[name]
            print(f"  {name}  in-scope {pct(r['in_scope'])} (val {pct(r['in_scope_val'])}, "
                  f"held train {pct(r['in_scope_held_train'])})  OOS recall "
                  f"{pct(r['oos_recall'])}  no-rejection acc val "
                  f"{pct(r['no_rejection_val'])}  {_fmt_train(r['train'])}")
        for name in models[1:] if len(models) > 1 else models:
            cv = clinc[name]["threshold_cv"]
            print(f"  {name} threshold CV over {cv['folds']} folds (recall floor "
                  f"{cv['recall_floor']}): in-scope {pct(cv['in_scope_accuracy_mean'])} +- "
                  f"{pct(cv['in_scope_accuracy_sd'])}, OOS recall {pct(cv['oos_recall_mean'])} "
                  f"+- {pct(cv['oos_recall_sd'])}, fold recalls {cv['fold_oos_recall']}, "
                  f"thresholds {cv['fold_thresholds']} -> {clinc[name]['oos_threshold']:.5f}")
        print("  targets: in-scope >= 96.50% and OOS recall >= 80% at one threshold; "
              "training <= 600 s")
        tp = clinc.get("throughput")
        if tp:
            rates = tp["texts_per_s"]
            print(f"  batch throughput on {tp['texts']} texts: bare encoder {rates['bare']:.0f}, "
                  f"old/new {rates['old']:.0f}, tuned {rates['tuned']:.0f} texts/s; ratios to "
                  f"bare {tp['ratio_old_to_bare']:.3f} / {tp['ratio_tuned_to_bare']:.3f} "
                  f"(target >= 0.90); tuned single-text p50 "
                  f"{tp['tuned_single_text_p50_ms']:.1f} ms")
    if "banking" in only:
        banking = report["banking77"] = run_banking(args.quick, encoders)
        print(f"BANKING77 80/20 split of train.csv ({banking['n_train']}/{banking['n_test']}); "
              "target >= 94.00%")
        for name in ("old", "tuned"):
            r = banking[name]
            print(f"  {name}  accuracy {pct(r['accuracy'])}  ECE {r['ece']:.4f}  "
                  f"{_fmt_train(r['train'])}")
    if "bitext" in only:
        bitext = report["bitext"] = run_bitext(args.quick, encoders)
        print(f"Bitext 80/20 ({bitext['n_train']}/{bitext['n_test']}): category accuracy "
              f"{pct(bitext['category_accuracy'])}, route accuracy {pct(bitext['route_accuracy'])} "
              f"({pct(bitext['route_accuracy_no_rejection'])} without OOS rejection, "
              f"{pct(bitext['rejected_share'])} rejected), intent accuracy "
              f"{pct(bitext['intent_accuracy'])}")
    total = time.perf_counter() - started
    report["total_seconds"] = total
    report["load_average"] = os.getloadavg()[0]
    print(f"total {total:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
