"""Measure injection screening: rules, the learned head, both; and end to end through the graph.

    python -m benchmarks.injection --dev DEV.jsonl [--workflow N [--workflow-only]] [--home DIR]

`DEV.jsonl` is the dev split written by `python -m benchmarks.injection_train --build-dev`
(injected and benign tickets never used in training). Screening figures: share of injected
tickets flagged (recall) and of benign ones flagged, by detector, plus the clean and injection
tickets of evals/datasets. `--workflow N` runs N injected and N benign dev tickets (every k-th,
deterministic) through the real workflow with the offline provider in a fresh home and counts
injected tickets auto-sent and benign tickets sent to review with reason `possible_injection`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SALT = "benchmark-salt-0123456789"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def screen(tickets: list[dict]) -> list[dict]:
    """Rules and learned verdicts for each ticket, on the text intake screens."""
    from supportgraph.app.services import shared_weights
    from supportgraph.models.encoders import Encoders
    from supportgraph.models.injection import InjectionHead
    from supportgraph.text.pii import redact
    from supportgraph.text.screening import injection_signals, normalise_for_screening

    head = InjectionHead.load()
    encode = Encoders(shared_weights()).embedder.encode  # the weights the runs use too
    out = []
    for t in tickets:
        text = (f"{redact(t.get('subject') or '', salt=SALT)}\n"
                f"{redact(t['body'], salt=SALT)}").strip()
        probability, _ = head.score(normalise_for_screening(text), encode)
        rules = bool(injection_signals(text))
        learned = probability >= head.threshold
        out.append({"rules": rules, "learned": learned, "either": rules or learned})
    return out


def rates(verdicts: list[dict]) -> dict[str, float]:
    n = max(1, len(verdicts))
    return {k: round(sum(v[k] for v in verdicts) / n, 4) for k in ("rules", "learned", "either")}


def workflow(injected: list[dict], benign: list[dict], home: Path) -> dict:
    from graph.context import Context
    from supportgraph.app.runner import Runner
    from supportgraph.app.settings import Settings

    runner = Runner(Context().with_settings(Settings(home=str(home), pii_salt=SALT)))

    def run(ticket: dict) -> dict:
        return runner.run({"id": ticket["id"], "channel": "chat", "body": ticket["body"]}).summary

    injected_runs = [(t["id"], run(t)) for t in injected]
    benign_runs = [run(t) for t in benign]
    sent_ids = [tid for tid, summary in injected_runs if summary["status"] == "sent"]
    result = {"injected": len(injected), "injected_auto_sent": len(sent_ids),
              "benign": len(benign),
              "benign_review_for_injection": sum(s.get("review_reason") == "possible_injection"
                                                 for s in benign_runs),
              "benign_sent": sum(s["status"] == "sent" for s in benign_runs),
              "auto_sent_ids": sent_ids}
    result["injected_auto_sent_rate"] = round(
        result["injected_auto_sent"] / max(1, len(injected)), 4)
    result["benign_review_for_injection_rate"] = round(
        result["benign_review_for_injection"] / max(1, len(benign)), 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev", required=True, type=Path)
    parser.add_argument("--workflow", type=int, default=0)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--offset", type=int, default=0,
                        help="start the every-k-th workflow sample here (a second, unseen sample)")
    parser.add_argument("--workflow-only", action="store_true",
                        help="skip the screening figures (minutes of MiniLM scoring)")
    args = parser.parse_args(argv)
    from supportgraph.app.settings import apply_library_defaults

    apply_library_defaults(quiet=True)  # as the CLI does, before any model loads
    try:
        dev = _read(args.dev)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"injection: cannot read {args.dev}: {exc}", file=sys.stderr)
        return 2
    if not dev or not all(isinstance(t.get("body"), str) and "injection" in t for t in dev):
        print(f"injection: {args.dev} is not a dev split from injection_train", file=sys.stderr)
        return 2
    datasets = ROOT / "evals" / "datasets"
    demo = _read(datasets / "demo_tickets.jsonl")
    sets = {
        "dev_injected": [t for t in dev if t["injection"]],
        "dev_benign": [t for t in dev if not t["injection"]],
        "demo_clean": [t for t in demo if "injection" not in t.get("tags", [])],
        "repo_injections": ([t for t in demo if "injection" in t.get("tags", [])]
                            + _read(datasets / "injection_tickets.jsonl")
                            + _read(datasets / "injection_heldout.jsonl")),
    }
    started = time.perf_counter()
    report: dict = {}
    if not args.workflow_only:
        report.update({name: {"n": len(ts), "flagged": rates(screen(ts))}
                       for name, ts in sets.items()})
        families: dict[str, list[dict]] = {}
        for t, v in zip(sets["dev_injected"], screen(sets["dev_injected"]), strict=True):
            families.setdefault(t["group"].split(":")[0 if t["group"].startswith("cse") else 1],
                                []).append(v)
        report["dev_injected_by_family"] = {k: {"n": len(v), **rates(v)}
                                            for k, v in sorted(families.items())}
        report["screening_seconds"] = round(time.perf_counter() - started, 1)
    if args.workflow:
        inj, ben = sets["dev_injected"], sets["dev_benign"]

        def pick(ts: list[dict]) -> list[dict]:
            step = max(1, len(ts) // args.workflow)
            return ts[args.offset % step:: step][: args.workflow]

        with tempfile.TemporaryDirectory() as tmp:
            home = args.home or Path(tmp) / "home"
            started = time.perf_counter()
            report["workflow"] = workflow(pick(inj), pick(ben), home)
            report["workflow"]["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
