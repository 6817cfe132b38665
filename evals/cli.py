"""`supportgraph eval`: replay a dataset, write the report, and gate against a baseline.

Exit status: 0 done (and every gate passed), 1 a gate failed against the baseline, 2 bad input
(dataset, overrides, gates or baseline file), reported before any ticket runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SECRET_FIELDS = ("pii_salt",)
MAX_CONCURRENCY = 64


class EvalInputError(ValueError):
    """Bad input to the eval command (exit status 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `eval` subcommand's options."""
    parser.add_argument("--dataset", required=True, help="JSONL tickets with gold fields")
    parser.add_argument("--out", required=True, help="folder for report.json, report.md, plots")
    parser.add_argument("--baseline", help="an earlier report.json to compare and gate against")
    parser.add_argument("--config", action="append", default=[], metavar="FILE.toml|KEY=VALUE",
                        help="Context overrides (repeatable), e.g. confidence_threshold=0.9")
    parser.add_argument("--gates", help="TOML file of gate tolerances (see evals/gates.py)")
    parser.add_argument("--concurrency", type=int, default=4, help="tickets run at once")
    parser.add_argument("--review", choices=("gold", "wait"), default="gold",
                        help="answer reviews with the gold outcome, or leave them waiting")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    """Check every input before anything runs; raises EvalInputError with the reason."""
    from evals.config import ConfigError, parse_overrides
    from evals.dataset import DatasetError, load_dataset
    from evals.gates import GateConfigError, load_gates
    from evals.report import load_baseline

    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise EvalInputError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvalInputError(f"--out {out} exists and is not a folder")
    try:
        return {"tickets": load_dataset(args.dataset),
                "overrides": parse_overrides(args.config),
                "gates": load_gates(Path(args.gates) if args.gates else None),
                "baseline": load_baseline(Path(args.baseline)) if args.baseline else None,
                "out": out}
    except (DatasetError, ConfigError, GateConfigError, ValueError) as exc:
        raise EvalInputError(str(exc)) from None


def _meta(args: argparse.Namespace, ctx: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    dataset = Path(args.dataset)
    settings = {k: v for k, v in asdict(ctx).items() if k not in SECRET_FIELDS}
    return {"dataset": str(dataset.resolve()), "dataset_name": dataset.name,
            "dataset_sha256": hashlib.sha256(dataset.read_bytes()).hexdigest(),
            "review": args.review, "concurrency": args.concurrency, "overrides": overrides,
            "settings": settings, "home": str(ctx.home_path.resolve()),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds")}


def _headline(metrics: dict[str, Any], intervals: dict[str, list[float]]) -> str:
    from evals.report import HEADLINE

    parts = []
    for key in HEADLINE:
        value = metrics[key]
        text = "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float)
                                            else str(value))
        if key in intervals and key not in ("cost_per_ticket",):
            text += f" [{intervals[key][0]:.3f}, {intervals[key][1]:.3f}]"
        parts.append(f"{key} {text}")
    return "; ".join(parts)


def run_command(args: argparse.Namespace) -> int:
    """Run the eval; returns the exit status (see the module docstring)."""
    from evals.config import eval_context
    from evals.dataset import unknown_fields
    from evals.gates import check_gates
    from evals.plots import write_plots
    from evals.report import build_report, diff_rows, diff_text, markdown
    from evals.run import EvalSetupError, exclusive, make_home, release, run_eval
    from supportgraph.app.services import services_for
    from supportgraph.app.settings import run_context

    checked = _validate(args)
    ignored = unknown_fields(args.dataset)
    if ignored:
        print(f"supportgraph: note: ignoring dataset fields {', '.join(ignored)}",
              file=sys.stderr)
    out: Path = checked["out"]
    team = run_context()
    try:
        with exclusive(out):
            home = make_home(out)
            ctx = eval_context(team, home, checked["overrides"])
            meta = _meta(args, ctx, checked["overrides"])
            try:
                records, wall = run_eval(ctx, team, checked["tickets"],
                                         concurrency=args.concurrency, review=args.review,
                                         progress=not args.no_progress)
                meta["wall_seconds"] = round(wall, 2)
                # scored with the run's own embedder, before its root is closed
                report = build_report(records, meta,
                                      services_for(ctx.settings).embedder.encode)
            finally:
                release(ctx)
    except EvalSetupError as exc:
        raise EvalInputError(str(exc)) from None
    with (out / "records.jsonl").open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
    plots = write_plots(report, records, out)
    diff, failed = None, []
    if checked["baseline"] is not None:
        results = check_gates(checked["baseline"]["metrics"], report["metrics"],
                              checked["gates"])
        report["gates"] = [asdict(g) for g in results]
        failed = [g for g in results if not g.passed]
        diff = diff_rows(checked["baseline"]["metrics"], report["metrics"], results)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    (out / "report.md").write_text(markdown(report, plots, diff), encoding="utf-8")
    print(_headline(report["metrics"], report["intervals"]))
    print(f"report: {out / 'report.md'}")
    if diff is not None:
        print(diff_text(diff))
        for gate in failed:
            print(f"gate failed: {gate.metric} {gate.baseline} -> {gate.current}: {gate.reason}",
                  file=sys.stderr)
    return 1 if failed else 0
