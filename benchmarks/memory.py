"""Does one long-lived worker process grow? RSS after 1,000 and after 10,000 tickets.

    python -m benchmarks.memory [--quick] [--counts 1000,10000] [--in-flight N] [--home DIR]
                                [--database-url URL]

Offline models, Postgres checkpoints (a throwaway server unless `--database-url`), demo ticket
texts with fresh ids, `Runner.run` on `--in-flight` threads (default 8) in one process. RSS
(from /proc, after a garbage collection) is taken after each count; growth is measured from the
first count to the last. Bounded caches are part of the picture and are printed alongside:
the embedder's LRU (at most 20,000 texts) and the resolved cases learned into local Qdrant
(one point per sent ticket, held in memory by local mode). Target: growth <= 10%.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.workload import (
    cpu_count,
    load_average,
    prepare_home,
    quiet_logs,
    rss_mb,
    tickets,
)
from tests.support.pg import throwaway_postgres

TARGET_GROWTH = 0.10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="counts 40,160")
    parser.add_argument("--counts", help="ascending ticket counts (default 1000,10000)")
    parser.add_argument("--in-flight", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--home", help="an initialised SUPPORTGRAPH_HOME to copy (faster)")
    parser.add_argument("--database-url", help="an empty Postgres database (default: start one)")
    args = parser.parse_args(argv)
    spec = args.counts or ("40,160" if args.quick else "1000,10000")
    try:
        counts = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        parser.error("--counts: comma-separated integers, e.g. 1000,10000")
    if len(counts) < 2 or counts != sorted(set(counts)) or counts[0] < 1:
        parser.error("--counts: at least two ascending positive counts")
    if not 1 <= args.in_flight <= 256:
        parser.error("--in-flight must be between 1 and 256")
    quiet_logs()

    from graph.context import Context
    from supportgraph.app.runner import Runner
    from supportgraph.app.services import close_services
    from supportgraph.app.settings import Settings

    figures: dict[str, Any] = {"benchmark": "memory", "quick": args.quick, "counts": counts,
                               "in_flight": args.in_flight, "cpus": cpu_count(),
                               "target_growth": TARGET_GROWTH}
    with tempfile.TemporaryDirectory() as tmp, throwaway_postgres(args.database_url) as url:
        home = prepare_home(Path(tmp) / "home", args.home)
        runner = Runner(Context().with_settings(Settings(home=str(home), database_url=url)))
        figures["load_before"] = load_average()
        started, done = time.perf_counter(), 0
        with ThreadPoolExecutor(max_workers=args.in_flight) as pool:
            for count in counts:
                batch = tickets(count, "mem")[done:]
                list(pool.map(runner.run, batch))
                done = count
                gc.collect()
                figures[f"rss_mb_{count}"] = round(rss_mb(), 1)
                figures[f"embedder_cache_{count}"] = len(runner.services.embedder._cache)
                figures[f"learned_cases_{count}"] = _learned(runner)
                figures[f"elapsed_s_{count}"] = round(time.perf_counter() - started, 1)
                print(f"  after {count} tickets: RSS {figures[f'rss_mb_{count}']:.1f} MB "
                      f"({figures[f'elapsed_s_{count}']:.0f} s)", flush=True)
        figures["load_after"] = load_average()
        close_services()
    first, last = counts[0], counts[-1]
    growth = figures[f"rss_mb_{last}"] / figures[f"rss_mb_{first}"] - 1
    figures["growth"] = round(growth, 4)
    figures["meets_target"] = growth <= TARGET_GROWTH

    print(f"memory of one worker process (offline models, Postgres, {args.in_flight} threads; "
          f"load {figures['load_before']} -> {figures['load_after']})")
    for count in counts:
        print(f"  {count:6d} tickets: RSS {figures[f'rss_mb_{count}']:.1f} MB, embedder cache "
              f"{figures[f'embedder_cache_{count}']} texts, learned cases "
              f"{figures[f'learned_cases_{count}']}")
    print(f"  growth {first} -> {last}: {growth:+.1%} (target <= {TARGET_GROWTH:.0%}: "
          f"{'met' if figures['meets_target'] else 'MISSED'})")
    print(json.dumps(figures, sort_keys=True))


def _learned(runner: Any) -> int:
    """Points in `resolved_cases` (each sent ticket teaches one)."""
    from retrieval.cases import COLLECTION

    return int(runner.res.store.count(COLLECTION))


if __name__ == "__main__":
    main()
