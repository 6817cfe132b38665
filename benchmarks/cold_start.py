"""Cold and warm time of `supportgraph run`, side by side with the bare imports.

    python -m benchmarks.cold_start [--home DIR] [--repeats N] [--warm N]

Cold: a new process runs one new ticket (`supportgraph run --text ... --quiet`), wall time.
Baseline, alternated with it in the same loop: `python -c "import torch,
sentence_transformers, langgraph, qdrant_client"`. Target: cold <= baseline + 1.5 s.
Warm: one process runs `--warm` new tickets one after another (offline provider, SQLite);
the first is left out; target p50 <= 100 ms. Medians over `--repeats`. The last line is JSON.
Timings depend on the machine's load: compare the two columns of one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.workload import load_average, pct, prepare_home
from supportgraph.app.settings import child_environment

REPO = Path(__file__).resolve().parents[1]
IMPORTS = "import torch, sentence_transformers, langgraph, qdrant_client"
TEXTS = ["Where can I download the PDF of last month's invoice?",
         "The app crashes when I upload a photo, what can I do?",
         "I was charged twice this month, can you refund one payment?",
         "How do I reset my password?"]
TARGET_COLD_EXTRA_S = 1.5
TARGET_WARM_P50_MS = 100.0


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed: {result.stderr[-2000:]}")
    return elapsed


def warm_child(n: int) -> None:
    """In this process: run `n` new tickets and print their wall times (ms) as JSON."""
    from graph.context import Context
    from supportgraph.app.runner import Runner

    runner = Runner(Context())
    times = []
    for i in range(n):
        started = time.perf_counter()
        runner.run({"id": f"warm-{uuid.uuid4().hex[:10]}", "channel": "chat",
                    "body": TEXTS[i % len(TEXTS)] + f" (order {i})"})
        times.append((time.perf_counter() - started) * 1000)
    print(json.dumps(times))


def main() -> None:
    """Measure and print; the last line is one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="an initialised home to copy (default: build one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--warm-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warm_child:
        warm_child(args.warm_child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = prepare_home(Path(tmp) / "home", args.home)
        env = child_environment(SUPPORTGRAPH_HOME=str(home), LANGSMITH_TRACING="false",
                                PYTHONPATH=str(REPO))
        # One untimed run first: it builds the on-disk caches a fresh home does not have yet.
        _wall([sys.executable, "-m", "supportgraph", "run", "--quiet", "--text", TEXTS[0]], env)
        imports, colds = [], []
        for i in range(args.repeats):
            imports.append(_wall([sys.executable, "-c", IMPORTS], env))
            colds.append(_wall([sys.executable, "-m", "supportgraph", "run", "--quiet", "--text",
                                TEXTS[i % len(TEXTS)] + f" (#{uuid.uuid4().hex[:6]})"], env))
            print(f"  repeat {i + 1}: imports {imports[-1]:.2f} s, cold run {colds[-1]:.2f} s",
                  flush=True)
        child = subprocess.run([sys.executable, "-m", "benchmarks.cold_start",
                                "--warm-child", str(args.warm)], env=env, cwd=REPO,
                               capture_output=True, text=True, timeout=1800)
        if child.returncode != 0:
            raise SystemExit(f"warm run failed: {child.stderr[-2000:]}")
        warm = json.loads(child.stdout.strip().splitlines()[-1])[1:]
    result = {
        "imports_s": round(statistics.median(imports), 3),
        "cold_run_s": round(statistics.median(colds), 3),
        "cold_minus_imports_s": round(statistics.median(colds) - statistics.median(imports), 3),
        "warm_p50_ms": round(pct(warm, 0.5), 1), "warm_p95_ms": round(pct(warm, 0.95), 1),
        "repeats": args.repeats, "warm_tickets": len(warm), "load_average": load_average(),
    }
    result["cold_target_met"] = result["cold_minus_imports_s"] <= TARGET_COLD_EXTRA_S
    result["warm_target_met"] = result["warm_p50_ms"] <= TARGET_WARM_P50_MS
    print(f"imports alone {result['imports_s']:.2f} s | cold run {result['cold_run_s']:.2f} s "
          f"(+{result['cold_minus_imports_s']:.2f} s; target +{TARGET_COLD_EXTRA_S} s) | "
          f"warm p50 {result['warm_p50_ms']:.0f} ms, p95 {result['warm_p95_ms']:.0f} ms "
          f"(target p50 {TARGET_WARM_P50_MS:.0f} ms)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
