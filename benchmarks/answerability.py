"""Does `confidence` know when a reply answers the ticket? Auto-send precision, ECE, KB-only.

Builds its sets from the public data in `../shared/data` (never copied into the repo):

- `demo`: the shipped demo tickets (evals/datasets/demo_tickets.jsonl), demo home;
- `bitext`: "dev Bitext", `--per-intent` utterances of each Bitext intent (Bitext customer
  support dataset, CDLA-Sharing-1.0), gold route from `benchmarks/bitext_routes.toml`, gold
  outcome `sent` unless the route is `human`; demo home;
- `s10`: a KB-only deployment (`init --no-demo`, the Galaxy S10 manual of E-Manual QA, Nandy et
  al. 2021, ingested into `kb_technical`), its 50 questions; right when a cited section is the
  gold one;
- `offtopic`: on that same S10 home, CLINC150 `oos_val` requests (Larson et al. 2019, CC BY 3.0)
  and demo tickets about another product (Relaypoint billing and API questions): all wrong.

Every ticket runs through the real workflow (offline provider). The confidence threshold is then
chosen by k-fold cross-validation over all sets pooled (the lowest threshold whose training-fold
auto-send precision is >= the target), and the held-out figures and the spread across folds are
reported. Auto-send at a threshold t is simulated from the recorded confidence (a ticket that
reached `confidence` without a forced review, with confidence >= t), then the figures at the
chosen threshold are printed. The last line is one JSON object.

    python -m benchmarks.answerability --short     # a few minutes: smaller sets
    python -m benchmarks.answerability             # the full measurement
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEMO = ROOT / "evals" / "datasets" / "demo_tickets.jsonl"
TARGET_PRECISION = 0.97
# Reasons a run gives when it reached `confidence` and only the score held it back.
SCORE_REASONS = {None, "low_answer_confidence", "off_knowledge_base"}


def _cli(home: Path, *args: str) -> None:
    env = {"SUPPORTGRAPH_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false"}
    result = subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT,
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
    from app.runner import Runner
    from app.settings import Settings
    from graph.context import Context
    from graph.resources import reset_resources

    reset_resources()
    runner = Runner(Context().with_settings(Settings(home=str(home))))
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
        signals = (state.get("confidence") or {}).get("signals") or {}
        out.append({**{k: v for k, v in item.items() if k != "ticket"},
                    "id": item["ticket"]["id"], "body": item["ticket"]["body"][:200],
                    "status": summary["status"], "route_out": summary.get("route"),
                    "reason": summary.get("review_reason"), "confidence": conf,
                    "eligible": eligible(conf, summary.get("review_reason"), signals),
                    "right": right, "cited_titles": titles,
                    "signals": (state.get("confidence") or {}).get("signals")})
    reset_resources()
    return out


def raw_logit(r: dict[str, Any]) -> float | None:
    """The home model's log-odds before calibration (recorded in the confidence signals)."""
    from models.answerability import CALIBRATION

    if r["confidence"] is None:
        return None
    signals = r.get("signals") or {}
    if "logit" in signals:
        return float(signals["logit"])
    p = min(max(r["confidence"], 1e-6), 1 - 1e-6)
    return (math.log(p / (1 - p)) - CALIBRATION[1]) / CALIBRATION[0]


def fit_calibration(records: list[dict[str, Any]]) -> tuple[float, float]:
    """Platt scaling: the slope and offset that map log-odds to the observed rate of right."""
    from sklearn.linear_model import LogisticRegression

    scored = [r for r in records if r["confidence"] is not None]
    x = np.array([[raw_logit(r)] for r in scored])
    y = np.array([int(r["right"]) for r in scored])
    model = LogisticRegression(C=1e4).fit(x, y)
    return float(model.coef_[0][0]), float(model.intercept_[0])


def recalibrated(records: list[dict[str, Any]], calibration: tuple[float, float]
                 ) -> list[dict[str, Any]]:
    from models.answerability import calibrated

    return [{**r, "confidence": None if r["confidence"] is None
             else calibrated(raw_logit(r), calibration)} for r in records]


def eligible(conf: float | None, reason: str | None, signals: dict[str, Any]) -> bool:
    """Reached `confidence` and only the score decides (a look-alike term forces a person)."""
    from models.answerability import look_alike_terms

    if conf is None or reason not in SCORE_REASONS:
        return False
    return not any(t in look_alike_terms() for t in signals.get("missing_terms") or [])


def sent_at(r: dict[str, Any], t: float) -> bool:
    return bool(r["eligible"] and r["confidence"] is not None and r["confidence"] >= t)


def precision(records: list[dict[str, Any]], t: float) -> tuple[float | None, int]:
    sent = [r for r in records if sent_at(r, t)]
    return (sum(r["right"] for r in sent) / len(sent) if sent else None), len(sent)


def choose_threshold(records: list[dict[str, Any]], target: float = TARGET_PRECISION) -> float:
    """The lowest threshold whose auto-send precision on `records` reaches `target`."""
    for t in (float(t) for t in np.round(np.arange(0.3, 0.995, 0.01), 2)):
        p, n = precision(records, t)
        if p is not None and p >= target:
            return t
    return 0.99


def cross_validate(records: list[dict[str, Any]], folds: int = 5, seed: int = 16
                   ) -> dict[str, Any]:
    """Per fold: calibration and threshold from the other folds, figures on this one."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    chosen, held, eces, rates = [], [], [], []
    for f in range(folds):
        test = [records[i] for i in order[f::folds]]
        train = [records[i] for n, i in enumerate(order) if n % folds != f]
        calibration = fit_calibration(train)
        t = choose_threshold(recalibrated(train, calibration))
        test = recalibrated(test, calibration)
        p, n = precision(test, t)
        chosen.append(t)
        held.append(p)
        eces.append(ece([r for r in test if r["set"] in ("demo", "bitext")]))
        rates.append(n / len(test))
    return {"thresholds": chosen, "threshold": float(np.median(chosen)),
            "threshold_spread": [min(chosen), max(chosen)],
            "heldout_precision": [None if p is None else round(p, 4) for p in held],
            "heldout_ece_demo_bitext": eces,
            "heldout_auto_send_rate": [round(r, 4) for r in rates]}


def ece(records: list[dict[str, Any]], bins: int = 10) -> float | None:
    scored = [r for r in records if r["confidence"] is not None]
    if not scored:
        return None
    conf = np.array([r["confidence"] for r in scored])
    right = np.array([float(r["right"]) for r in scored])
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
        if mask.any():
            total += mask.sum() / len(conf) * abs(conf[mask].mean() - right[mask].mean())
    return round(float(total), 4)


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
    parser.add_argument("--records", default="",
                        help="analyse per-ticket records written by --out instead of running")
    args = parser.parse_args(argv)
    if args.records:
        records = [json.loads(line) for line in Path(args.records).read_text().splitlines()]
        for r in records:
            r["eligible"] = eligible(r["confidence"], r["reason"], r.get("signals") or {})
        return report(records, short=args.short, started=time.perf_counter())
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
                      + bitext_tickets(2 if short else 6))
    records += run_set(s10, s10_tickets(20 if short else None)
                       + offtopic_tickets(20 if short else 50))
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in records))
    code = report(records, short=short, started=started)
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)
    return code


def report(records: list[dict[str, Any]], *, short: bool, started: float) -> int:
    """Cross-validate, print the wrongly auto-sent tickets and the figures (last line JSON)."""
    cv = cross_validate(records)
    t = cv["threshold"]
    calibration = fit_calibration(records)
    from models.answerability import CALIBRATION

    shipped = recalibrated(records, CALIBRATION)
    records = recalibrated(records, calibration)
    result = {"threshold": t, "calibration": [round(c, 4) for c in calibration], "cv": cv,
              **figures(records, t),
              "with_shipped_calibration": {"calibration": list(CALIBRATION),
                                           **figures(shipped, t)},
              "seconds": round(time.perf_counter() - started, 1), "short": short}
    for r in records:
        if sent_at(r, t) and not r["right"]:
            print(f"wrongly auto-sent [{r['set']}] {r['id']} conf={r['confidence']}: "
                  f"{r['body'][:90]!r} -> {r['cited_titles'][:2]}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
