"""Each workflow benchmark runs on tiny counts and ends with one JSON line of its figures."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

CASES = {
    "overhead": (["--tickets", "2"],
                 {"plain_p50_ms", "graph_p50_ms", "ratio_p50", "ratio_p95",
                  "graph_outside_nodes_p50_ms", "same_path"}),
    "throughput": (["--levels", "1,3", "--tickets", "3"],
                   {"c1_tickets_per_s", "c3_tickets_per_s", "ceiling_tickets_per_s",
                    "c3_share_of_ceiling", "model_texts_per_ticket",
                    "c3_empty_graph_tickets_per_s"}),
    "latency": (["--in-flight", "3", "--latency", "router=10,answer=300,planner=50"],
                {"p95_ms", "extra_p95_ms", "critical_model_p50_ms", "c1_p50_ms",
                 "local_model_p95_ms", "beyond_all_models_p95_ms", "local_model_busy_s",
                 "empty_graph_extra_p95_ms", "empty_graph_c1_extra_p95_ms"}),
    "storage": (["--tickets", "3"],
                {"postgres_kb_per_ticket_before", "postgres_kb_per_ticket_after",
                 "sqlite_kb_per_ticket_before", "sqlite_kb_per_ticket_after",
                 "postgres_waiting_untouched", "sqlite_rows_per_ticket_after"}),
    "memory": (["--counts", "2,4", "--in-flight", "2"], {"rss_mb_2", "rss_mb_4", "growth"}),
}


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_quick_run_ends_with_its_figures(
        name: str, template_home: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv, keys = CASES[name]
    module = importlib.import_module(f"benchmarks.{name}")
    module.main(["--quick", "--home", str(template_home), "--database-url", pg_url, *argv])
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["benchmark"] == name and figures["quick"] is True
    assert keys | {"meets_target", "load_before", "load_after"} <= set(figures)
    assert len(lines) >= 3  # figures for people come first
    if name == "latency":  # the injected 300 ms answer latency is really waited for
        assert figures["c1_p50_ms"] >= figures["c1_critical_model_p50_ms"] >= 300
        # the local router really ran for every ticket, and is counted apart from the rest
        assert figures["local_model_p50_ms"] > 0 and figures["local_model_busy_s"] > 0
        assert figures["beyond_all_models_p95_ms"] < figures["extra_p95_ms"]
        # the empty-node floor really waits for the answer delay, and adds less than ours
        assert figures["empty_graph_c1_p50_ms"] >= 300
        assert 0 < figures["empty_graph_c1_extra_p50_ms"] < figures["c1_extra_p50_ms"]


@pytest.mark.slow
@pytest.mark.postgres
def test_storage_benchmark_starts_its_own_postgres(template_home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import storage

    storage.main(["--quick", "--home", str(template_home), "--tickets", "2"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["postgres_closed"] + figures["postgres_waiting"] == 2
    assert figures["postgres_rows_per_ticket_after"] < figures["postgres_rows_per_ticket_before"]


@pytest.mark.parametrize("module,argv", [
    ("throughput", ["--levels", "0"]), ("throughput", ["--levels", "a,b"]),
    ("latency", ["--latency", "answer=soon"]), ("latency", ["--in-flight", "0"]),
    ("memory", ["--counts", "10,5"]), ("overhead", ["--tickets", "0"]),
    ("storage", ["--tickets", "-1"]),
])
def test_benchmark_rejects_bad_arguments_with_exit_2(
        module: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(f"benchmarks.{module}").main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_offline_latency_spec_is_parsed_and_validated() -> None:
    from supportgraph.models.factory import offline_latencies

    assert offline_latencies("router=200, answer=1500,planner=500") == {
        "router": 0.2, "answer": 1.5, "planner": 0.5}
    assert offline_latencies("answer=10") == {"router": 0.0, "answer": 0.01, "planner": 0.0}
    for bad in ("answer", "writer=10", "answer=fast", "answer=-1", "answer=1e9", ""):
        with pytest.raises(ValueError, match="offline_latency_ms"):
            offline_latencies(bad)
