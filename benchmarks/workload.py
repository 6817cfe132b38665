"""What the workflow benchmarks share: a prepared home, demo tickets with fresh ids, figures.

Tickets reuse the texts of the recorded demo tickets (`evals/datasets/demo_tickets.jsonl`) with
fresh ids, so every run is a new thread. A home is the demo intent model plus the ingested demo
knowledge base: pass `--home` to copy a prepared one (fast), else one is made in a temp dir
with `supportgraph init` (about a minute).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from retrieval.files import copy_tree
from supportgraph.app.settings import child_environment

REPO = Path(__file__).resolve().parents[1]
DEMO_TICKETS = REPO / "evals" / "datasets" / "demo_tickets.jsonl"
_TICKET_FIELDS = ("channel", "subject", "body", "customer_id")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared; say how busy it was)."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank; 0.5 is the median."""
    if not values:
        return float("nan")
    if q == 0.5:
        return float(statistics.median(values))
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def demo_texts(expected_outcome: str | None = None) -> list[dict[str, Any]]:
    """The recorded demo tickets without gold fields (optionally only one expected outcome)."""
    out = []
    for line in DEMO_TICKETS.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if expected_outcome and record.get("expected_outcome") != expected_outcome:
            continue
        out.append({k: record[k] for k in _TICKET_FIELDS if record.get(k) is not None})
    return out


def tickets(n: int, prefix: str, *, tenant: str | None = None,
            expected_outcome: str | None = None, start: int = 0) -> list[dict[str, Any]]:
    """`n` tickets cycling through the demo texts from text `start`, ids `{prefix}-{i}`.

    A text seen before is classified from the model caches: give each measured wave texts
    the warm-up did not use (`start`) when the model's work should count.
    """
    texts = demo_texts(expected_outcome)
    out = []
    for i in range(n):
        ticket = {**texts[(start + i) % len(texts)], "id": f"{prefix}-{i}"}
        if tenant:
            ticket["tenant"] = tenant
        out.append(ticket)
    return out


def prepare_home(target: Path, template: str | None) -> Path:
    """Copy `template` (an initialised home) to `target`, or initialise `target` from scratch."""
    if template:
        source = Path(template)
        if not (source / "models").is_dir() or not (source / "qdrant_edge").is_dir():
            raise SystemExit(f"--home {template}: not an initialised home (run supportgraph init)")
        copy_tree(source, target)
        for stale in ("state.db", "state.db-wal", "state.db-shm"):
            (target / stale).unlink(missing_ok=True)
        return target
    target.mkdir(parents=True, exist_ok=True)
    env = child_environment(SUPPORTGRAPH_HOME=str(target), LANGSMITH_TRACING="false")
    print("preparing a home with `supportgraph init` (about a minute)...", flush=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "supportgraph", "init"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"supportgraph init failed: {result.stderr[-2000:]}")
    print(f"  home ready in {time.monotonic() - started:.0f} s", flush=True)
    return target


def forget_seen_texts(encoders: Any) -> None:
    """Clear the classifier's and embedder's caches, so a wave of new tickets is new to them.

    The demo set has 170 texts; without this, a wave reusing texts an earlier wave classified
    would skip the model and look faster than fresh traffic. Pinned knowledge-base sentence
    vectors (computed at ingest) stay: that is how the workflow always runs.
    """
    encoders.clear_cache()


def quiet_logs() -> None:
    """Step logs are INFO; benchmarks print their own figures."""
    import logging

    from supportgraph.app.settings import apply_library_defaults

    apply_library_defaults(quiet=True)  # as the CLI does, before any model loads
    logging.basicConfig(level=logging.WARNING)


def rss_mb() -> float:
    """Resident set size of this process, in MB (from /proc)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
