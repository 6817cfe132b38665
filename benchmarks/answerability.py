"""Does `confidence` know when a reply answers the ticket? Auto-send precision, ECE, KB-only.

Builds its sets from the public data in `../shared/data` (never copied into the repo):

- `demo`: the shipped demo tickets (evals/datasets/demo_tickets.jsonl), demo home;
- `bitext`: "dev Bitext", `--per-intent` (6) utterances of each Bitext intent (Bitext customer
  support dataset, CDLA-Sharing-1.0), gold route from `benchmarks/bitext_routes.toml`, gold
  outcome `sent` unless the route is `human`; demo home;
- `s10`: a KB-only deployment (`init --no-demo`, the Galaxy S10 manual of E-Manual QA, Nandy et
  al. 2021, ingested into `kb_technical`), its 50 questions; right when a cited section is the
  gold one;
- `offtopic`: on that same S10 home, CLINC150 `oos_val` requests (Larson et al. 2019, CC BY 3.0)
  and demo tickets about another product (Relaypoint billing and API questions): all wrong.

Every ticket runs through the real workflow (offline provider, planner on), and the per-ticket
records keep what the eval sees: the final status, route and confidence signals. From them:

- `as_run.real_outcomes`: what the workflow did (status `sent` = auto-sent), per set: auto-send
  precision and rate, billing auto-send rate, route accuracy; the issue's targets;
- `cv`: the answerability model refitted and its threshold chosen by repeated stratified 5-fold
  cross-validation (5 seeds): per fold, the model, its Platt calibration and the lowest threshold
  whose auto-send precision on the training folds' desks (demo + Bitext) stays >= 0.97; the
  shipped threshold is the folds' upper quartile. Reported: fold threshold spread, held-out
  precision and auto-send rate, the out-of-fold ECE, leave-one-set-out transfer;
- `refit`: the model fitted on every record at that threshold (`--fit FILE` writes it).

The shipped fit (`models/data/answerability_fit.json`) was made in two steps: its regression and
threshold by `--records RUN6.jsonl --fit FILE` on a 6-per-intent run, then its calibration by
`--records RUN16.jsonl --recalibrate FILE` on a `--per-intent 16` run (more labelled desk
tickets; the threshold is mapped through the new calibration so that no decision changes).
A request about a thing the KB is not about (`unknown_object`) goes to a person whatever its
score: such records are never counted as sendable.

The last line is one JSON object; wrongly auto-sent tickets are listed on stderr.

    python -m benchmarks.answerability --short     # a few minutes: smaller sets
    python -m benchmarks.answerability --out run.jsonl   # the full measurement (~10 min)
    python -m benchmarks.answerability --records run.jsonl [--fit FILE]   # analysis only
    python -m benchmarks.answerability --records run16.jsonl --recalibrate FILE
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evals.builders import shared_data

ROOT = Path(__file__).resolve().parents[1]
DATA = shared_data()
DEMO = ROOT / "evals" / "datasets" / "demo_tickets.jsonl"
TARGET_PRECISION = 0.97
PER_INTENT = 6
"""Dev Bitext utterances per intent (x 27 intents), the set the shipped regression and threshold
come from (its calibration comes from --per-intent 16). With 10 bins, a perfectly calibrated
score on its ~250 scored tickets plus the demo set shows an ECE of about 0.05 (median over
simulated labels): measure ECE with --per-intent 16 too."""
# Reasons a run gives when it reached `confidence` and only the score held it back.
SCORE_REASONS = {None, "low_answer_confidence", "off_knowledge_base"}


def _cli(home: Path, *args: str) -> None:
    env = {"SUPPORTGRAPH_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false"}
    result = subprocess.run([sys.executable, "-m", "supportgraph", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"supportgraph {' '.join(args)} failed: {result.stderr[-2000:]}")
    print(result.stdout.strip().splitlines()[-1], file=sys.stderr)


def demo_tickets(limit: int | None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line]
    return [{"set": "demo", "ticket": {k: r[k] for k in ("id", "channel", "body", "subject",
                                                         "tenant", "customer_id") if k in r},
             "right_if": "sent" if r["expected_outcome"] == "sent" else "never",
             "route": r["expected_route"]} for r in rows[:limit]]


def bitext_tickets(per_intent: int, seed: int = 16) -> list[dict[str, Any]]:
    routes = tomllib.loads((ROOT / "benchmarks" / "bitext_routes.toml").read_text())["routes"]
    route_of = {intent: route for route, intents in routes.items() for intent in intents}
    by_intent: dict[str, list[str]] = {}
    with (DATA / "bitext" / "bitext_customer_support_20k.csv").open(encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            if row["intent"] in route_of:
                by_intent.setdefault(row["intent"], []).append(row["utterance"])
    rng = random.Random(seed)
    out = []
    for intent in sorted(by_intent):
        for n, text in enumerate(rng.sample(by_intent[intent], per_intent)):
            route = route_of[intent]
            out.append({"set": "bitext", "ticket": {"id": f"bitext-{intent}-{n}",
                                                    "channel": "chat", "body": text},
                        "right_if": "never" if route == "human" else "sent", "route": route,
                        "intent": intent})
    return out


def s10_home(base: Path) -> Path:
    """`init --no-demo`, then the manual's sections ingested into kb_technical."""
    corpus = json.loads((DATA / "emanual_s10" / "s10_manual_corpus.json").read_text())
    docs = base / "s10_docs"
    docs.mkdir(parents=True)
    for key, section in corpus.items():
        text = "\n".join(line for line in section["text"] if line.strip())
        (docs / f"{key}.md").write_text(f"# {section['title']}\n\n{text}\n", encoding="utf-8")
    home = base / "s10_home"
    _cli(home, "init", "--no-demo")
    _cli(home, "ingest", "--collection", "kb_technical", str(docs))
    return home


def s10_tickets(limit: int | None) -> list[dict[str, Any]]:
    with (DATA / "emanual_s10" / "s10_50_questions.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    return [{"set": "s10", "ticket": {"id": f"s10-{r['question_id']}", "channel": "chat",
                                      "body": r["question"]},
             "right_if": "gold_title", "gold_title": r["section_path"].split(">")[-1].strip(),
             "route": "technical"} for r in rows]


def offtopic_tickets(n: int) -> list[dict[str, Any]]:
    clinc = json.loads((DATA / "clinc150" / "dev.json").read_text())["oos_val"][:n]
    other = [t for t in demo_tickets(None) if t["right_if"] == "sent"][::3][:n]
    out = [{"set": "offtopic", "ticket": {"id": f"oos-{i}", "channel": "chat", "body": text},
            "right_if": "never", "route": "human", "kind": "clinc_oos"}
           for i, (text, _) in enumerate(clinc)]
    out += [{"set": "offtopic", "ticket": {**t["ticket"], "id": f"other-{t['ticket']['id']}"},
             "right_if": "never", "route": "human", "kind": "other_product"} for t in other]
    return out


def run_set(home: Path, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run each ticket through the workflow in `home`; what a threshold sweep needs."""
    from graph.context import Context
    from supportgraph.app.runner import Runner
    from supportgraph.app.services import close_services
    from supportgraph.app.settings import Settings

    close_services()
    # Learning off, as in the eval: a ticket's outcome must not depend on which tickets (of this
    # run or of an earlier run in a kept --workdir) were sent before it.
    runner = Runner(replace(Context(), learn_enabled=False).with_settings(
        Settings(home=str(home))))
    out = []
    for item in items:
        ticket = {**item["ticket"], "id": f"{item['ticket']['id']}-{time.time_ns()}"}
        outcome = runner.run(ticket)
        summary = outcome.summary
        state = runner.graph.get_state({"configurable": {"thread_id": outcome.thread_id}}).values
        passages = {p["doc_id"]: p["title"] for p in state.get("passages") or []}
        drafts = state.get("drafts") or []
        cited = drafts[-1]["citations"] if drafts else []
        titles = [passages.get(d, "") for d in cited]
        if item["right_if"] == "sent":
            right = True
        elif item["right_if"] == "gold_title":
            right = item["gold_title"] in titles
        else:
            right = False
        conf = (state.get("confidence") or {}).get("score")
        out.append({**{k: v for k, v in item.items() if k != "ticket"},
                    "id": item["ticket"]["id"], "body": item["ticket"]["body"][:200],
                    "status": summary["status"], "route_out": summary.get("route"),
                    "reason": summary.get("review_reason"), "confidence": conf,
                    "eligible": eligible(conf, summary.get("review_reason"),
                                         (state.get("confidence") or {}).get("signals")),
                    "right": right, "cited_titles": titles, "cited": cited,
                    "oos": (state.get("intent") or {}).get("oos_score"),
                    "planner": [s["action"] for s in state.get("planner_steps") or []],
                    "signals": (state.get("confidence") or {}).get("signals")})
    close_services()
    return out


MODEL_FEATURES = ["evidence", "relevance", "title_relevance", "coverage", "intent",
                  "route_agree", "look_alike", "asks"]
"""The signals the shipped fit combines: those whose direction agrees across the dev sets.
The key-term shares (`term_coverage`, `kb_terms`) rank Bitext tickets backwards (AUROC 0.42 and
0.27: customers' own words such as "purchase" occur in the SaaS KB) and `grounding` is constant
for offline drafts. Tried by cross-validation and left out: `oos` (the intent model's
out-of-scope score: held-out figures within the fold spread, and its coefficient came out with
the wrong sign next to `intent`), `salient`, `title_terms`, `topic_terms`, `part_title` (no
better held-out precision or ECE). All are still recorded for the reviewer."""


def fit_features(records: list[dict[str, Any]]) -> list[str]:
    """The model's features that every scored record carries."""
    scored = [r for r in records if r["confidence"] is not None]
    return [f for f in MODEL_FEATURES if all(f in (r.get("signals") or {}) for r in scored)]


def matrix(records: list[dict[str, Any]], names: list[str]) -> np.ndarray:
    return np.array([[float((r.get("signals") or {})[f]) for f in names] for r in records])


def fit_model(records: list[dict[str, Any]], names: list[str], folds: int = 5,
              seed: int = 16) -> Any:
    """Logistic regression on standardised features; Platt map fitted on out-of-fold log-odds."""
    from sklearn.linear_model import LogisticRegression

    from supportgraph.models.answerability import Fit

    scored = [r for r in records if r["confidence"] is not None]
    x = matrix(scored, names)
    y = np.array([int(r["right"]) for r in scored])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale

    def regression(zs: np.ndarray, ys: np.ndarray) -> Any:
        return LogisticRegression(C=1.0, max_iter=2000).fit(zs, ys)

    out_of_fold = np.zeros(len(y))
    order = np.random.default_rng(seed).permutation(len(y))
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        out_of_fold[test] = regression(z[train], y[train]).decision_function(z[test])
    model = regression(z, y)
    fit = Fit(features=list(names), mean=[round(float(v), 6) for v in mean],
              scale=[round(float(v), 6) for v in scale],
              coef=[round(float(c), 6) for c in model.coef_[0]],
              intercept=round(float(model.intercept_[0]), 6),
              report={"examples": int(len(y)), "right": int(y.sum())})
    return calibrate(fit, scored, list(out_of_fold))


def calibrate(fit: Any, scored: list[dict[str, Any]], logits: list[float]) -> Any:
    """The fit with its calibration fitted on the desks' tickets (demo, dev Bitext).

    Two parts, because the rule decides one group whatever the score: a request about a thing
    the KB is not about (`unknown_object`) gets the share of such desk tickets that were right
    (add-one smoothed); every other ticket a Platt map of the regression's log-odds (`logits`,
    out of fold when the regression was fitted on these tickets), fitted on the other desk
    tickets. The ECE target is on the desks; the manual and off-topic sets have other labels.
    """
    from sklearn.linear_model import LogisticRegression

    desks = [(r, v) for r, v in zip(scored, logits, strict=True)
             if r["set"] in ("demo", "bitext")]
    gated = [r for r, _ in desks if (r.get("signals") or {}).get("unknown_object")]
    rest = [(r, v) for r, v in desks if not (r.get("signals") or {}).get("unknown_object")]
    platt = LogisticRegression(C=1e4).fit(np.array([[v] for _, v in rest]),
                                          np.array([int(r["right"]) for r, _ in rest]))
    fit.calibration = [round(float(platt.coef_[0][0]), 6), round(float(platt.intercept_[0]), 6)]
    fit.unknown_object_probability = round((sum(r["right"] for r in gated) + 1)
                                           / (len(gated) + 2), 6)
    fit.report.update(calibrated_on={"desk_tickets": len(rest), "unknown_object": len(gated)})
    return fit


def recalibrate(records: list[dict[str, Any]], out: str) -> dict[str, Any]:
    """Keep the shipped regression; refit its calibration on these records' desk tickets.

    The threshold moves with the calibration so that every decision stays the same: the log-odds
    at the shipped threshold are mapped through the new calibration (the CV chose the threshold;
    a monotone map of the score does not change which tickets clear it).
    """
    import math

    from supportgraph.models.answerability import calibrated, shipped_fit

    fit = shipped_fit()
    old = float(fit.report["threshold"])
    a, b = fit.calibration

    def log_odds(t: float) -> float:
        return (math.log(t / (1 - t)) - b) / a
    scored = [r for r in records if r["confidence"] is not None]
    fit = calibrate(fit, scored, [fit.logit(r.get("signals") or {}) for r in scored])
    # Rounded up (4 places): never sends a ticket the shipped threshold held back.
    new = math.ceil(calibrated(log_odds(old), fit.calibration) * 10000) / 10000
    if "threshold_spread" in fit.report:  # the CV folds' thresholds, on the new scale too
        fit.report["threshold_spread"] = [round(calibrated(log_odds(float(t)), fit.calibration),
                                                2) for t in fit.report["threshold_spread"]]
        fit.report["threshold_median"] = round(calibrated(
            log_odds(float(fit.report["threshold_median"])), fit.calibration), 2)
    fit.report.update(threshold=new, recalibrated_from=old,
                      recalibrated_on={n: sum(r["set"] == n for r in scored)
                                       for n in ("demo", "bitext")})
    Path(out).write_text(json.dumps(fit.to_json(), indent=1) + "\n", encoding="utf-8")
    return {"threshold": new, "was": old, "calibration": fit.calibration,
            "unknown_object_probability": fit.unknown_object_probability,
            "ece_demo_bitext": ece([r for r in rescored(records, fit)
                                    if r["set"] in ("demo", "bitext")])}


def rescored(records: list[dict[str, Any]], fit: Any) -> list[dict[str, Any]]:
    """Records with `confidence` recomputed by `fit` from the recorded signals."""
    return [{**r, "confidence": None if r["confidence"] is None
             else fit.probability(r.get("signals") or {})} for r in records]


def eligible(conf: float | None, reason: str | None,
             signals: dict[str, float] | None = None) -> bool:
    """Reached `confidence` and only the score decides (no flag or rule forced a review).

    A request about a thing the KB is not about (`unknown_object`) goes to a person whatever
    the score.
    """
    return (conf is not None and reason in SCORE_REASONS
            and not (signals or {}).get("unknown_object"))


def sent_at(r: dict[str, Any], t: float) -> bool:
    return bool(r["eligible"] and r["confidence"] is not None and r["confidence"] >= t)


def precision(records: list[dict[str, Any]], t: float) -> tuple[float | None, int]:
    sent = [r for r in records if sent_at(r, t)]
    return (sum(r["right"] for r in sent) / len(sent) if sent else None), len(sent)


def choose_threshold(records: list[dict[str, Any]]) -> float:
    """The lowest threshold at and above which every target holds on these records.

    The targets: the desks' pooled auto-send precision >= 0.97 (the outcome-labelled support
    sets, demo and dev Bitext: the issue's precision row), the KB-only manual's gold-citation
    precision >= 0.90 and at most 5% of off-topic tickets auto-sent. A set these records do not
    hold sets no bound. Before the rule that sends requests about things the KB is not about to
    a person, the desks alone decided (the "cancel a purchase" tickets held them at 0.75+);
    without that rule, the desks alone would now pick thresholds at which the manual's precision
    falls below 0.90 (0.71 on the 6-per-intent run).
    """
    grid = [float(t) for t in np.round(np.arange(0.3, 0.995, 0.01), 2)]
    desks = [r for r in records if r["set"] in ("demo", "bitext")]
    manual = [r for r in records if r["set"] == "s10"]
    offtopic = [r for r in records if r["set"] == "offtopic"]

    def ok(t: float) -> bool:
        p, _ = precision(desks, t)
        m, _ = precision(manual, t)
        sent = sum(sent_at(r, t) for r in offtopic)
        return ((p is None or p >= TARGET_PRECISION) and (m is None or m >= 0.90)
                and sent <= 0.05 * len(offtopic))
    for n, t in enumerate(grid):
        if all(ok(u) for u in grid[n: n + 5]):
            return t
    return 0.99


def folds_of(records: list[dict[str, Any]], folds: int, seed: int) -> list[list[int]]:
    """Folds stratified by set: every fold holds a share of each set."""
    rng = random.Random(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    for name in sorted({r["set"] for r in records}):
        idx = [i for i, r in enumerate(records) if r["set"] == name]
        rng.shuffle(idx)
        for n, i in enumerate(idx):
            out[n % folds].append(i)
    return out


def cross_validate(records: list[dict[str, Any]], names: list[str], folds: int = 5,
                   repeats: int = 5) -> dict[str, Any]:
    """Repeated k-fold: model, calibration and threshold from the other folds, figures on this one.

    The shipped threshold is the upper quartile of the fold thresholds: three folds in four
    reach the target at or below it (one fold's threshold is noisy: a few tickets decide it).
    Also leave-one-set-out (fit on the other sets): does the fit transfer to a set it never saw?
    """
    chosen, held, rates = [], [], []
    out_of_fold: list[dict[str, Any]] = []
    for seed in range(repeats):
        for test_idx in folds_of(records, folds, seed):
            keep = set(test_idx)
            train = [r for i, r in enumerate(records) if i not in keep]
            fit = fit_model(train, names)
            t = choose_threshold(rescored(train, fit))
            test = rescored([records[i] for i in test_idx], fit)
            p, n = precision(test, t)
            chosen.append(t)
            held.append(p)
            rates.append(n / len(test))
            if seed == 0:
                out_of_fold += test
    threshold = float(np.percentile(chosen, 75))
    transfer = {}
    for name in sorted({r["set"] for r in records}):
        train = [r for r in records if r["set"] != name]
        test = rescored([r for r in records if r["set"] == name], fit_model(train, names))
        p, n = precision(test, threshold)
        transfer[name] = {"auto_send_precision": None if p is None else round(p, 4),
                          "auto_send_rate": round(n / len(test), 4), "ece": ece(test)}
    known = [p for p in held if p is not None]
    return {"threshold": round(threshold, 2), "fold_thresholds": chosen,
            "threshold_median": float(np.median(chosen)),
            "threshold_spread": [min(chosen), max(chosen)],
            "heldout_precision": {"median": round(float(np.median(known)), 4),
                                  "min": round(min(known), 4), "max": round(max(known), 4)},
            "heldout_auto_send_rate": {"median": round(float(np.median(rates)), 4),
                                       "min": round(min(rates), 4), "max": round(max(rates), 4)},
            "out_of_fold_ece_demo_bitext": ece([r for r in out_of_fold
                                                if r["set"] in ("demo", "bitext")]),
            "out_of_fold_at_threshold": figures(out_of_fold, threshold),
            "leave_one_set_out": transfer}


def ece(records: list[dict[str, Any]], bins: int = 10) -> float | None:
    """ECE of the records' confidence against `right`, as the eval's report computes it."""
    from evals.evaluators import calibration_bins

    pairs = [(float(r["confidence"]), float(r["right"])) for r in records
             if r["confidence"] is not None]
    return calibration_bins(pairs, bins)["ece"] if pairs else None


def figures(records: list[dict[str, Any]], t: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("demo", "bitext", "s10", "offtopic"):
        rs = [r for r in records if r["set"] == name]
        if not rs:
            continue
        p, n = precision(rs, t)
        out[name] = {"n": len(rs), "auto_sent": n, "auto_send_rate": round(n / len(rs), 4),
                     "auto_send_precision": None if p is None else round(p, 4)}
        if name in ("demo", "bitext"):
            billing = [r for r in rs if r["route"] == "billing" and r["right_if"] == "sent"]
            out[name]["billing_auto_send_rate"] = round(
                sum(sent_at(r, t) for r in billing) / max(1, len(billing)), 4)
            out[name]["route_human_share_of_gold_human"] = round(
                sum(r["route_out"] == "human" for r in rs if r["route"] == "human")
                / max(1, sum(r["route"] == "human" for r in rs)), 4)
        if name == "s10":
            out[name]["gold_citation_precision"] = out[name].pop("auto_send_precision")
    pooled = [r for r in records if r["set"] in ("demo", "bitext")]
    out["ece_demo_bitext"] = ece(pooled)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="smaller sets (development)")
    parser.add_argument("--out", default="", help="write the per-ticket records here (JSONL)")
    parser.add_argument("--workdir", default="", help="keep homes here (default: a temp dir)")
    parser.add_argument("--per-intent", type=int, default=PER_INTENT,
                        help="dev Bitext utterances per intent (default %(default)s)")
    parser.add_argument("--records", default="",
                        help="analyse per-ticket records written by --out instead of running")
    parser.add_argument("--recalibrate", default="",
                        help="keep the shipped regression, refit its calibration on --records' "
                             "desk tickets, write it to this file (threshold mapped to keep "
                             "every decision)")
    parser.add_argument("--fit", default="",
                        help="write the model fitted on every record to this file (the "
                             "shipped fit is models/data/answerability_fit.json)")
    args = parser.parse_args(argv)
    if args.records:
        records = [json.loads(line) for line in Path(args.records).read_text().splitlines()]
        for r in records:
            r["eligible"] = eligible(r["confidence"], r["reason"], r.get("signals"))
        if args.recalibrate:
            print(json.dumps(recalibrate(records, args.recalibrate)))
            return 0
        return report(records, short=args.short, started=time.perf_counter(),
                      fit_out=args.fit)
    short = args.short
    base = Path(args.workdir or tempfile.mkdtemp(prefix="sg-answerability-"))
    base.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    demo_home = base / "demo_home"
    if not (demo_home / "answerability.json").is_file():
        _cli(demo_home, "init")
    s10 = base / "s10_home" if (base / "s10_home" / "answerability.json").is_file() \
        else s10_home(base)
    records = run_set(demo_home, demo_tickets(60 if short else None)
                      + bitext_tickets(2 if short else args.per_intent))
    records += run_set(s10, s10_tickets(20 if short else None)
                       + offtopic_tickets(20 if short else 50))
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in records))
    code = report(records, short=short, started=started, fit_out=args.fit)
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)
    return code


def real(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the workflow itself did (planner retries included): status `sent` is auto-sent."""
    out: dict[str, Any] = {}
    for name in ("demo", "bitext", "s10", "offtopic"):
        rs = [r for r in records if r["set"] == name]
        if not rs:
            continue
        sent = [r for r in rs if r["status"] == "sent"]
        out[name] = {"auto_sent": len(sent), "auto_send_rate": round(len(sent) / len(rs), 4),
                     "auto_send_precision": round(sum(r["right"] for r in sent) / len(sent), 4)
                     if sent else None}
        billing = [r for r in rs if r["route"] == "billing" and r["right_if"] == "sent"]
        if billing:
            out[name]["billing_auto_send_rate"] = round(
                sum(r["status"] == "sent" for r in billing) / len(billing), 4)
        gold_routed = [r for r in rs if r.get("route")]
        out[name]["route_accuracy"] = round(
            sum(r["route_out"] == r["route"] for r in gold_routed) / max(1, len(gold_routed)), 4)
    out["ece_demo_bitext"] = ece([r for r in records if r["set"] in ("demo", "bitext")])
    return out


def report(records: list[dict[str, Any]], *, short: bool, started: float,
           fit_out: str = "") -> int:
    """Cross-validate, print the wrongly auto-sent tickets and the figures (last line JSON).

    With `fit_out`, the model fitted on every record is written there (the shipped fit).
    """
    from supportgraph.models.answerability import shipped_fit

    names = fit_features(records)
    cv = cross_validate(records, names)
    t = cv["threshold"]
    fit = fit_model(records, names)
    fit.report.update(threshold=t, trained_on="demo set, dev Bitext, S10 manual questions, "
                      "CLINC150 oos + other-product tickets on a KB-only home "
                      "(python -m benchmarks.answerability --fit)",
                      sets={n: sum(r["set"] == n for r in records)
                            for n in sorted({r["set"] for r in records})},
                      threshold_spread=cv["threshold_spread"],
                      threshold_median=cv["threshold_median"])
    if fit_out:
        Path(fit_out).write_text(json.dumps(fit.to_json(), indent=1) + "\n", encoding="utf-8")
    shipped = shipped_fit()
    as_run = records
    records = rescored(records, fit)
    result = {"threshold": t, "features": names, "cv": cv, "refit": figures(records, t),
              "with_shipped_fit": figures(rescored(as_run, shipped), t),
              "as_run": {"simulated": figures(as_run, t), "real_outcomes": real(as_run)},
              "seconds": round(time.perf_counter() - started, 1), "short": short}
    for r in records:
        if sent_at(r, t) and not r["right"]:
            print(f"wrongly auto-sent [{r['set']}] {r['id']} conf={r['confidence']:.3f}: "
                  f"{r['body'][:90]!r} -> {r['cited_titles'][:2]}", file=sys.stderr)
    result["targets"] = targets(result)
    for row in result["targets"]:
        print(f"{row['measure']}: {row['value']} (target {row['target']}, "
              f"{'met' if row['met'] else 'NOT met'}) - {row['command']}", file=sys.stderr)
    print(json.dumps(result))
    return 0


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, as the workflow ran (planner included), with the command for each."""
    real_ = result["as_run"]["real_outcomes"]
    run = "python -m benchmarks.answerability (as_run.real_outcomes)"
    rows = []

    def add(measure: str, value: Any, target: str, met: bool, command: str = run) -> None:
        rows.append({"measure": measure, "value": value, "target": target, "met": bool(met),
                     "command": command})
    for name in ("demo", "bitext"):
        if name in real_:
            p = real_[name]["auto_send_precision"]
            add(f"{name} auto-send precision", p, ">= 0.97", p is not None and p >= 0.97)
    if "demo" in real_:
        b = real_["demo"].get("billing_auto_send_rate")
        add("demo billing auto-send rate", b, ">= 0.90", b is not None and b >= 0.90)
        add("demo route = gold route (this run's summaries; the eval's route_accuracy, "
            "`supportgraph eval --dataset evals/datasets/demo_tickets.jsonl`, is the reference)",
            real_["demo"]["route_accuracy"], ">= 0.93", real_["demo"]["route_accuracy"] >= 0.93)
    if "s10" in real_:
        p, r = real_["s10"]["auto_send_precision"], real_["s10"]["auto_send_rate"]
        add("S10 KB-only gold_citation_precision @ auto-send rate", f"{p} @ {r}",
            ">= 0.90 @ >= 0.50", p is not None and p >= 0.90 and r >= 0.50)
    if "offtopic" in real_:
        r = real_["offtopic"]["auto_send_rate"]
        add("off-topic auto-sent on the S10 home", r, "<= 0.05", r <= 0.05)
    e = real_.get("ece_demo_bitext")
    add("ECE of confidence, demo + dev Bitext", e, "<= 0.05", e is not None and e <= 0.05)
    return rows


if __name__ == "__main__":
    sys.exit(main())
