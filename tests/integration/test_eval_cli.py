"""`supportgraph eval` end to end on a few real demo tickets, in-process, in an isolated home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.report import HEADLINE
from supportgraph.app.cli import main

DEMO = Path(__file__).resolve().parents[2] / "evals" / "datasets" / "demo_tickets.jsonl"
# Gold sent & auto-sent (008); gold sent but low answer confidence (007); gold human with low
# answer confidence (167, 170); out of scope (135).
PICK = ("demo-007", "demo-008", "demo-135", "demo-167", "demo-170")
FRACTIONS = ("intent_accuracy", "route_accuracy", "escalation_precision", "escalation_recall",
             "auto_send_precision", "answer_similarity", "groundedness")


def write_subset(path: Path, ids: tuple[str, ...]) -> Path:
    rows = [line for line in DEMO.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["id"] in ids]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in home.rglob("*") if p.is_file()}


def public_tables(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_schema = 'public'").fetchone()[0]


@pytest.mark.slow
@pytest.mark.postgres
def test_eval_reports_gates_and_leaves_team_data_alone(
        demo_home: Path, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The team's own settings point at a Postgres database: the eval must not touch it.
    monkeypatch.setenv("DATABASE_URL", pg_url)
    before = snapshot(demo_home)
    dataset = write_subset(tmp_path / "five.jsonl", PICK)
    base = tmp_path / "base"
    assert main(["eval", "--dataset", str(dataset), "--out", str(base), "--no-progress"]) == 0
    report = json.loads((base / "report.json").read_text())
    m = report["metrics"]
    assert set(HEADLINE) <= set(m) and m["n"] == 5
    for key in FRACTIONS:
        assert m[key] is not None and 0.0 <= m[key] <= 1.0, key
    # 008 auto-sends; 007, 167 and 170 wait for review; 135 is out of scope.
    assert m["auto_send_precision"] == 1.0 and m["auto_send_rate"] == pytest.approx(1 / 5)
    assert m["escalation_recall"] == 1.0 and m["escalation_precision"] == pytest.approx(3 / 4)
    assert report["route_confusion"]["human"] == {"human": 1}
    records = [json.loads(line) for line in (base / "records.jsonl").open()]
    assert [r["id"] for r in records] == list(PICK)
    by_id = {r["id"]: r for r in records}
    # Reviews were answered from the gold outcome: accept for gold sent, the reference for human.
    assert by_id["demo-007"]["review_decision"] == "accept"
    assert by_id["demo-167"]["review_decision"] == "edit"
    assert by_id["demo-135"]["status"] == "sent" and by_id["demo-135"]["escalated"]
    assert all(r["cited_doc_ids"] for r in records if r["draft"])
    for name in ("route_confusion", "cost_distribution", "latency_distribution", "reliability"):
        assert (base / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (base / "report.md").read_text()
    assert "| auto_send_precision | 1.0 |" in md and "## By gold intent" in md
    # The eval ran in its own home under --out; the team's home and database are untouched.
    home = Path(report["meta"]["home"])
    assert home.parent == base.resolve() and (home / "state.db").is_file()
    # the team's KB sentence vectors came along with its KB (not embedded again)
    assert (home / "cache" / "kb-sentences.npz").read_bytes() == (
        demo_home / "cache" / "kb-sentences.npz").read_bytes()
    assert snapshot(demo_home) == before
    assert public_tables(pg_url) == 0
    capsys.readouterr()

    # A worse configuration: every draft auto-sends, so gold-human tickets go out unreviewed.
    worse = tmp_path / "worse"
    code = main(["eval", "--dataset", str(dataset), "--out", str(worse), "--no-progress",
                 "--baseline", str(base / "report.json"), "--config", "confidence_threshold=0"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "gate failed: auto_send_precision" in err
    worse_report = json.loads((worse / "report.json").read_text())
    # 008, 007, 167 and 170 now auto-send; 167 and 170 should have gone to a human.
    assert worse_report["metrics"]["auto_send_precision"] == pytest.approx(2 / 4)
    assert "FAIL" in (worse / "report.md").read_text()

    # The same configuration again passes (latency loosened: this machine is shared).
    gates = tmp_path / "gates.toml"
    gates.write_text("[gates.latency_p95_ms]\nmax_increase_ratio = 4.0\nmax_increase = 500\n")
    again = tmp_path / "again"
    code = main(["eval", "--dataset", str(dataset), "--out", str(again), "--no-progress",
                 "--baseline", str(base / "report.json"), "--gates", str(gates)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "auto_send_precision" in out and "pass" in out
    assert snapshot(demo_home) == before


def test_eval_review_wait_leaves_tickets_waiting(
        demo_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_subset(tmp_path / "two.jsonl", ("demo-135", "demo-008"))
    out = tmp_path / "wait"
    assert main(["eval", "--dataset", str(dataset), "--out", str(out), "--no-progress",
                 "--review", "wait", "--concurrency", "2"]) == 0
    records = {json.loads(line)["id"]: json.loads(line) for line in (out / "records.jsonl").open()}
    assert records["demo-135"]["status"] == "awaiting_review"
    assert records["demo-135"]["review_decision"] is None
    assert records["demo-008"]["status"] == "sent"
    # A second eval into the same folder replaces the earlier isolated home.
    first_home = json.loads((out / "report.json").read_text())["meta"]["home"]
    assert main(["eval", "--dataset", str(dataset), "--out", str(out), "--no-progress",
                 "--review", "wait"]) == 0
    assert not Path(first_home).exists()
    assert len(list(out.glob("sg-eval-*"))) == 1


def test_eval_gold_sources_curve_calibration_and_worst_tickets(
        demo_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = {json.loads(line)["id"]: json.loads(line)
            for line in DEMO.read_text(encoding="utf-8").splitlines()}
    # 008 auto-sends the SMS allowance section (gold: the SMS pricing article); 007 is gold sent
    # but waits for low answer confidence (wrongly escalated); 135 is out of scope.
    rows["demo-008"]["expected_doc_ids"] = ["billing/sms-pricing.md"]
    rows["demo-007"]["expected_doc_ids"] = ["billing/plan-comparison-and-quotas.md"]
    dataset = tmp_path / "gold.jsonl"
    dataset.write_text("\n".join(json.dumps(rows[i]) for i in ("demo-008", "demo-007",
                                                               "demo-135")) + "\n")
    out = tmp_path / "gold"
    assert main(["eval", "--dataset", str(dataset), "--out", str(out), "--concurrency", "2"]) == 0
    err = capsys.readouterr().err
    # Setup says what it is doing (concise, on stderr), before the tickets run.
    setup = [line for line in err.splitlines() if line.startswith("eval: [")]
    assert any("loading the intent model" in line for line in setup), err
    assert setup[-1].endswith("running 3 tickets, 2 at a time")
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert m["gold_citation_precision"] == 1.0 and report["counts"][
        "gold_citation_precision"] == 1
    assert m["confidence_ece"] is not None and report["confidence_calibration"]["n"] == 2
    curve = {row["threshold"]: row for row in report["threshold_curve"]}
    assert curve[0.5]["auto_sent"] == 2 and curve[0.5]["auto_send_precision"] == 1.0
    assert [(w["id"], w["kind"]) for w in report["worst_tickets"]] == [
        ("demo-007", "wrongly_escalated")]
    md = (out / "report.md").read_text()
    home = report["meta"]["home"]
    assert f"`SUPPORTGRAPH_HOME={home} supportgraph show demo-007 --tenant " in md
    assert "## Auto-send precision against the confidence threshold" in md
    assert (out / "threshold_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gold_doc_ids" in (out / "records.jsonl").read_text()


BAD_ROWS = [
    '{"id": "a", "channel": "chat", "body": "hi", "expected_route": "billing"}',
    'not json at all',
    '{"id": "b", "channel": "fax", "body": "hi", "expected_route": "billing", '
    '"expected_outcome": "sent"}',
]


@pytest.mark.parametrize("extra, message", [
    ([], "3 bad row(s)"),
    (["--config", "confidence_threshold=high"], "valid float"),
    (["--config", "home=/tmp/elsewhere"], "cannot be overridden"),
    (["--concurrency", "0"], "--concurrency"),
])
def test_eval_bad_input_exits_2_before_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        message: str) -> None:
    dataset = tmp_path / "d.jsonl"
    if message == "3 bad row(s)":
        dataset.write_text("\n".join(BAD_ROWS) + "\n")
    else:
        write_subset(dataset, ("demo-008",))
    out = tmp_path / "out"
    assert main(["eval", "--dataset", str(dataset), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    if message == "3 bad row(s)":
        assert "d.jsonl:1: expected_outcome" in err and "d.jsonl:2: invalid JSON" in err
        assert "d.jsonl:3: ticket channel" in err
    assert not out.exists()


def test_eval_malformed_gold_sources_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    row = json.loads(DEMO.read_text(encoding="utf-8").splitlines()[0])
    dataset = tmp_path / "d.jsonl"
    dataset.write_text("\n".join(json.dumps({**row, "id": f"x{i}", "expected_doc_ids": value})
                                 for i, value in enumerate(("a.md", [], [1], ["d"] * 51)))
                       + "\n")
    assert main(["eval", "--dataset", str(dataset), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    # One line (the CLI never prints a block): the first bad rows, then how many more.
    assert err.count("\n") == 1 and "4 bad row(s)" in err and "(+1 more)" in err
    assert "d.jsonl:1: expected_doc_ids" in err
    assert not (tmp_path / "o").exists()


def test_eval_bad_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_subset(tmp_path / "d.jsonl", ("demo-008",))
    not_report = tmp_path / "baseline.json"
    not_report.write_text('{"n": 3}')
    bad_gates = tmp_path / "gates.toml"
    bad_gates.write_text("[gates.speed]\nmax_drop = 1\n")
    for extra, message in ((["--baseline", str(not_report)], "not an eval report"),
                           (["--baseline", str(tmp_path / "none.json")], "no such file"),
                           (["--gates", str(bad_gates)], "no metric 'speed'")):
        assert main(["eval", "--dataset", str(dataset), "--out", str(tmp_path / "o"),
                     *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["eval", "--dataset", str(tmp_path / "missing.jsonl"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_eval_reads_an_audit_export(demo_home: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Recorded runs exported by `supportgraph audit export` replay to the same outcomes."""
    from evals.dataset import load_dataset
    from graph.context import Context
    from supportgraph.app.runner import Runner

    ids = ("demo-008", "demo-002", "demo-007")  # two auto-sent, one reviewed and accepted
    runner = Runner(Context())
    outcomes = {t.id: runner.run(t.ticket)
                for t in load_dataset(write_subset(tmp_path / "three.jsonl", ids))}
    waiting = [o for o in outcomes.values() if o.summary["status"] == "awaiting_review"]
    assert [o.summary["ticket_id"] for o in waiting] == ["demo-007"]
    runner.decide(waiting[0].thread_id, {"type": "accept", "reviewer": "maria"})
    exported = tmp_path / "recorded.jsonl"
    assert main(["audit", "export", "--since", "2000-01-01", "--out", str(exported)]) == 0
    assert len(load_dataset(exported)) == 3
    out = tmp_path / "replay"
    assert main(["eval", "--dataset", str(exported), "--out", str(out), "--no-progress"]) == 0
    assert "ignoring dataset fields recorded" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    # Same model, same settings: the replay agrees with what happened.
    assert m["n"] == 3 and m["intent_accuracy"] == 1.0 and m["route_accuracy"] == 1.0
    assert m["auto_send_precision"] == 1.0 and m["auto_send_rate"] == pytest.approx(2 / 3)
    records = {json.loads(line)["id"]: json.loads(line) for line in (out / "records.jsonl").open()}
    assert records["demo-007"]["escalated"] and records["demo-007"]["review_decision"] == "accept"
    # The recorded replies are the references, and the replayed drafts are the same answers.
    assert m["answer_similarity"] >= 0.95
