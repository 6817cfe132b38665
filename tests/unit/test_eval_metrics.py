"""Evaluators, gates, datasets, overrides and builders on hand-made inputs with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evals.builders import build_bitext, build_clinc150_oos, load_route_map, shared_data
from evals.builders import main as builders_main
from evals.config import ConfigError, eval_context, parse_overrides
from evals.dataset import DatasetError, load_dataset
from evals.evaluators import (
    AnswerSimilarity,
    bootstrap_ci,
    failures_by_reason,
    lcs_length,
    reliability,
    rouge_l,
    step_breakdown,
)
from evals.gates import GateConfigError, check_gates, load_gates
from evals.records import EvalRecord, effective_route, predicted_intent
from evals.report import HEADLINE, build_report, diff_rows, markdown

# (gold intent, gold route, gold outcome, intent, route, status, escalated, cost, ms)
TABLE = [
    ("refund", "billing", "sent", "refund", "billing", "sent", False, 0.010, 100.0),
    ("refund", "billing", "sent", "refund", "billing", "sent", True, 0.020, 200.0),
    ("refund", "billing", "human", "refund", "billing", "sent", False, 0.000, 300.0),
    ("webhooks", "technical", "sent", "api_errors", "technical", "sent", False, 0.030, 400.0),
    ("webhooks", "technical", "human", "webhooks", "technical", "rejected", True, 0.000, 500.0),
    ("out_of_scope", "human", "human", "out_of_scope", "human", "sent", True, 0.000, 600.0),
    ("security", "human", "human", "security", "human", "failed", False, 0.000, 700.0),
    ("invoice", "billing", "sent", "refund", "billing", "sent", False, 0.040, 800.0),
]


def table_records() -> list[EvalRecord]:
    return [EvalRecord(id=f"t{i}", gold_intent=gi, gold_route=gr, gold_outcome=go, intent=pi,
                       route=pr, status=st, escalated=esc, cost=cost, duration_ms=ms,
                       steps=[{"step": "classify", "duration_ms": ms / 2, "cost": cost,
                               "model_calls": 1}])
            for i, (gi, gr, go, pi, pr, st, esc, cost, ms) in enumerate(TABLE)]


def no_embed(texts: list[str]) -> np.ndarray:
    raise AssertionError("no answer pairs in this table, so nothing should be embedded")


def test_headline_metrics_match_hand_computation() -> None:
    report = build_report(table_records(), {"dataset_name": "table"}, embed=no_embed)
    m = report["metrics"]
    assert set(HEADLINE) <= set(m)
    assert m["n"] == 8
    # intent right on t0 t1 t2 t4 t5 t6 (t3: api_errors, t7: refund) -> 6/8
    assert m["intent_accuracy"] == pytest.approx(6 / 8)
    # every route matches in this table
    assert m["route_accuracy"] == pytest.approx(1.0)
    # escalated t1 t4 t5; of those gold human: t4 t5 -> 2/3
    assert m["escalation_precision"] == pytest.approx(2 / 3)
    # gold human t2 t4 t5 t6; escalated t4 t5 (t6 failed, t2 auto-sent) -> 2/4
    assert m["escalation_recall"] == pytest.approx(0.5)
    # auto-sent (sent, not escalated): t0 t2 t3 t7; gold sent: t0 t3 t7 -> 3/4
    assert m["auto_send_precision"] == pytest.approx(0.75)
    assert m["auto_send_rate"] == pytest.approx(4 / 8)
    # gold sent t0 t1 t3 t7; auto-sent t0 t3 t7 -> 3/4
    assert m["auto_send_recall"] == pytest.approx(0.75)
    assert m["cost_per_ticket"] == pytest.approx(0.1 / 8)
    assert m["cost_total"] == pytest.approx(0.1)
    # linear-interpolated percentiles of 100..800: p50 = 450, p95 = 700 + 0.65 * 100
    assert m["latency_p50_ms"] == pytest.approx(450.0)
    assert m["latency_p95_ms"] == pytest.approx(765.0)
    assert m["failures"] == 1 and m["failed_rate"] == pytest.approx(1 / 8)
    # no drafts, no citations: undefined, not 0 or 1
    assert m["answer_similarity"] is None and m["groundedness"] is None
    assert report["counts"]["escalation_precision"] == 3
    assert report["outcomes"] == {"human": {"failed": 1, "human": 2, "sent": 1},
                                  "sent": {"human": 1, "sent": 3}}
    by_route = report["by_route"]
    assert by_route["billing"]["n"] == 4
    assert by_route["billing"]["auto_send_precision"] == pytest.approx(2 / 3)
    assert by_route["technical"]["intent_accuracy"] == pytest.approx(0.5)
    assert report["by_intent"]["refund"]["escalation_recall"] == pytest.approx(0.0)
    for key in ("intent_accuracy", "escalation_precision", "auto_send_precision"):
        low, high = report["intervals"][key]
        assert 0 <= low <= m[key] <= high <= 1
    text = markdown(report, ["route_confusion.png"])
    assert "| auto_send_precision | 0.75 |" in text and "![route_confusion.png]" in text


def test_unknown_predictions_are_never_scored_as_right() -> None:
    record = EvalRecord(id="x", gold_route="billing", gold_outcome="sent", gold_intent="refund")
    report = build_report([record], {}, embed=no_embed)
    assert report["metrics"]["route_accuracy"] == 0.0
    assert report["metrics"]["intent_accuracy"] == 0.0
    assert report["metrics"]["auto_send_precision"] is None
    assert report["metrics"]["escalation_recall"] is None


def test_rouge_l_by_hand() -> None:
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    # candidate 4 tokens, reference 5, LCS "the cat sat" = 3: P 3/4, R 3/5, F1 = 2/3
    assert rouge_l("The cat sat down", "the cat really sat quietly") == pytest.approx(
        2 * 0.75 * 0.6 / 1.35)
    assert rouge_l("same words here", "Same, words here!") == pytest.approx(1.0)
    assert rouge_l("nothing shared", "at all") == 0.0
    assert rouge_l("", "reference") == 0.0


def test_answer_similarity_and_groundedness_by_hand() -> None:
    vectors = {"draft one": [1.0, 0.0], "ref one": [1.0, 0.0], "draft two": [1.0, 1.0],
               "ref two": [0.0, 1.0], "draft three": [-1.0, 0.0], "ref three": [1.0, 0.0]}

    def embed(texts: list[str]) -> np.ndarray:
        return np.array([vectors[t] for t in texts])

    rows = [("draft one", "ref one", "sent", ["a", "b"], ["a", "b", "c"]),
            ("draft two", "ref two", "sent", ["a", "[7]"], ["a"]),
            ("draft three", "ref three", "sent", [], ["z"]),
            ("draft four", "ref four", "human", ["q"], ["r"]),  # gold human: not scored
            ("", "ref five", "sent", [], [])]  # no draft: not scored
    records = [EvalRecord(id=str(i), gold_route="billing", gold_outcome=outcome, draft=draft,
                          reference_answer=ref, cited_doc_ids=cited, retrieved_doc_ids=got)
               for i, (draft, ref, outcome, cited, got) in enumerate(rows)]
    scores = AnswerSimilarity(embed).evaluate(records)
    # cosines 1, 1/sqrt(2), -1 clipped to 0
    assert scores["answer_similarity"].value == pytest.approx((1 + 2 ** -0.5) / 3, abs=1e-6)
    assert scores["answer_similarity"].n == 3
    assert scores["answer_rouge_l"].value == pytest.approx(1 / 3 * (0.5 + 0.5 + 0.5))
    report = build_report(records, {}, embed=embed)
    # citations: a b (both retrieved), a (yes), [7] (no passage 7), q (not retrieved) -> 3/5
    assert report["metrics"]["groundedness"] == pytest.approx(3 / 5)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = [1.0] * 7 + [0.0] * 3
    assert bootstrap_ci(values) == bootstrap_ci(values)
    low, high = bootstrap_ci(values)
    assert 0.3 < low < 0.7 < high <= 1.0
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)


def test_breakdowns_and_calibration() -> None:
    records = table_records()
    records[0].failures = ["draft: offline:extractive-1 timeout", "draft: no citations"]
    records[1].failures = ["draft: no citations"]
    records[6].error = "intake: TicketError: ticket body is empty"
    assert failures_by_reason(records) == {
        "draft: no citations": 2, "draft: offline timeout": 1,
        "status failed: intake: TicketError: ticket body is empty": 1}
    steps = step_breakdown(records)
    assert steps["classify"]["runs"] == 8 and steps["classify"]["model_calls"] == 8
    assert steps["classify"]["p50_ms"] == pytest.approx(225.0)
    for r, conf in zip(records, (0.95, 0.95, 0.85, 0.85, 0.55, 0.55, 0.15, 0.15), strict=True):
        r.intent_confidence = conf
    cal = reliability(records)
    # bins: 0.9 (2 right), 0.8 (1 right, 1 wrong), 0.5 (2 right), 0.1 (1 right, 1 wrong)
    assert [(b["low"], b["n"], b["accuracy"]) for b in cal["bins"]] == [
        (0.1, 2, 0.5), (0.5, 2, 1.0), (0.8, 2, 0.5), (0.9, 2, 1.0)]
    assert cal["ece"] == pytest.approx((2 * 0.35 + 2 * 0.45 + 2 * 0.35 + 2 * 0.05) / 8)


def test_route_and_intent_from_summary() -> None:
    assert effective_route({"route": "billing", "review_reason": "out_of_scope"}) == "human"
    assert effective_route({"route": "billing", "review_reason": "low_answer_confidence"}) \
        == "billing"
    assert predicted_intent({"intent": "refund", "out_of_scope": True}) == "out_of_scope"
    assert predicted_intent({"intent": "refund", "out_of_scope": False}) == "refund"


# ------------------------------------------------------------------------------ gates


def test_gates_fail_on_regression_and_pass_within_tolerance() -> None:
    gates = load_gates(None)
    base = {"auto_send_precision": 0.95, "route_accuracy": 0.90, "cost_per_ticket": 0.010,
            "latency_p95_ms": 400.0}
    same = check_gates(base, dict(base), gates)
    assert all(g.passed for g in same)
    worse = check_gates(base, {**base, "auto_send_precision": 0.92, "cost_per_ticket": 0.0112},
                        gates)
    failed = {g.metric for g in worse if not g.passed}
    assert failed == {"auto_send_precision", "cost_per_ticket"}
    within = check_gates(base, {**base, "auto_send_precision": 0.935,
                                "latency_p95_ms": 400 * 1.5 + 50}, gates)
    assert all(g.passed for g in within)
    undefined = check_gates(base, {**base, "auto_send_precision": None}, gates)
    assert [g.metric for g in undefined if not g.passed] == ["auto_send_precision"]
    rows = diff_rows(base, {**base, "auto_send_precision": 0.92}, worse)
    row = next(r for r in rows if r[0] == "auto_send_precision")
    assert row[3] == pytest.approx(-0.03) and row[4].startswith("FAIL")


def test_gates_file(tmp_path: Path) -> None:
    good = tmp_path / "gates.toml"
    good.write_text("[gates.latency_p95_ms]\nmax_increase_ratio = 3.0\n"
                    "[gates.cost_per_ticket]\nenabled = false\n"
                    "[gates.escalation_recall]\nmax_drop = 0.05\n")
    gates = load_gates(good)
    assert gates["latency_p95_ms"] == {"max_increase_ratio": 3.0}
    assert "cost_per_ticket" not in gates and gates["escalation_recall"] == {"max_drop": 0.05}
    for text, message in (("[gates.nope]\nmax_drop = 1\n", "no metric"),
                          ("[gates.route_accuracy]\nmax_increase = 1\n", "higher is better"),
                          ("[gates.route_accuracy]\nmax_drop = -1\n", ">= 0"),
                          ("[gates.route_accuracy]\nmax_dorp = 1\n", "takes only"),
                          ("gates = 3\n", "expected"), ("[gates\n", "not valid TOML")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(GateConfigError, match=message):
            load_gates(bad)
    with pytest.raises(GateConfigError, match="no such file"):
        load_gates(tmp_path / "missing.toml")


# ------------------------------------------------------------------------------ datasets

GOOD = {"id": "a1", "channel": "chat", "body": "Where is my invoice?",
        "expected_intent": "invoice_request", "expected_route": "billing",
        "expected_outcome": "sent", "reference_answer": "In Billing.", "tags": []}


def test_dataset_reports_every_bad_row_with_its_line(tmp_path: Path) -> None:
    lines = [json.dumps(GOOD),
             "{not json",
             json.dumps({**GOOD, "id": "a2", "expected_route": "sales"}),
             "",
             json.dumps({**GOOD, "id": "a3", "body": "", "expected_outcome": None}),
             json.dumps({**GOOD}),
             json.dumps([1, 2]),
             json.dumps({**GOOD, "id": "a4", "tags": "vip"})]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    problems = info.value.problems
    assert [p.split(":")[1] for p in problems] == ["2", "3", "5", "5", "6", "7", "8"]
    text = str(info.value)
    assert "invalid JSON" in text and "expected_route" in text and "empty" in text
    assert "duplicate ticket id 'a1' (first on line 1)" in text and "tags" in text


def test_dataset_edge_cases(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DatasetError, match="no tickets"):
        load_dataset(empty)
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "missing.jsonl")
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"latin1.jsonl:2: not UTF-8"):
        load_dataset(binary)
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps({**GOOD, "body": "x" * 300_000}) + "\n" + json.dumps(GOOD))
    with pytest.raises(DatasetError, match=r"huge.jsonl:1: line is longer"):
        load_dataset(huge)
    ok = tmp_path / "ok.jsonl"
    ok.write_text("\ufeff" + json.dumps(GOOD) + "\n" + json.dumps(
        {**GOOD, "id": "a1", "tenant": "acme", "expected_intent": None}) + "\n",
        encoding="utf-8")
    tickets = load_dataset(ok)
    assert [(t.id, t.line, t.expected_intent) for t in tickets] == [
        ("a1", 1, "invoice_request"), ("a1", 2, None)]
    assert "expected_route" not in tickets[0].ticket


def test_shipped_demo_dataset_is_valid() -> None:
    tickets = load_dataset(Path(__file__).resolve().parents[2] / "evals" / "datasets"
                           / "demo_tickets.jsonl")
    assert len(tickets) >= 150
    assert {t.expected_outcome for t in tickets} == {"sent", "human"}


# ------------------------------------------------------------------------------ overrides


def test_overrides_from_strings_and_toml(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[context]\nconfidence_threshold = 1\nplanner_enabled = false\n")
    overrides = parse_overrides([str(config), "max_rewrites=0", "intent_threshold=0.5"])
    assert overrides == {"confidence_threshold": 1.0, "planner_enabled": False,
                         "max_rewrites": 0, "intent_threshold": 0.5}
    for item, message in (("nosuch=1", "unknown setting"), ("max_rewrites=two", "valid int"),
                          ("home=/tmp/x", "cannot be overridden"),
                          ("database_url=postgresql://x", "cannot be overridden"),
                          ("intent_model_dir=/no/such/dir", "no such directory"),
                          (str(tmp_path / "none.toml"), "no such file")):
        with pytest.raises(ConfigError, match=message):
            parse_overrides([item])
    bad = tmp_path / "bad.toml"
    bad.write_text("confidence_threshold = 'high'\n")
    with pytest.raises(ConfigError, match="valid float"):
        parse_overrides([str(bad)])


def test_eval_context_is_isolated(tmp_path: Path) -> None:
    from graph.context import Context
    from supportgraph.app.settings import Settings

    team = (Context(confidence_threshold=0.9)
            .with_settings(Settings(home=str(tmp_path / "team"), database_url="postgresql://team/db",
                                    qdrant_url="http://qdrant:6333")))
    ctx = eval_context(team, tmp_path / "eval", {"max_rewrites": 0})
    assert (ctx.settings.home, ctx.settings.database_url, ctx.settings.qdrant_url) == (
        str(tmp_path / "eval"), "", "")
    assert ctx.confidence_threshold == 0.9 and ctx.max_rewrites == 0
    assert ctx.learn_enabled is False
    assert team.settings.database_url == "postgresql://team/db"


# ------------------------------------------------------------------------------ builders


def test_builders_on_small_limits(tmp_path: Path) -> None:
    data = shared_data()
    routes = load_route_map()
    rows = build_bitext(data, limit=40)
    assert len(rows) == 40 and rows == build_bitext(data, limit=40)
    assert {r["expected_route"] for r in rows} == {"billing", "technical", "human"}
    for row in rows:
        assert row["expected_route"] == routes.get(row["expected_intent"], "human")
        assert row["expected_outcome"] == ("human" if row["expected_route"] == "human"
                                           else "sent")
    oos = build_clinc150_oos(data, limit=5)
    assert len(oos) == 5
    assert all(r["expected_route"] == r["expected_outcome"] == "human" for r in oos)
    out = tmp_path / "oos.jsonl"
    assert builders_main(["clinc150", "--out", str(out), "--limit", "5"]) == 0
    assert [t.id for t in load_dataset(out)] == [r["id"] for r in oos]


def test_emanual_builders_give_gold_sources_that_are_ingestable_ids(tmp_path: Path) -> None:
    from evals.builders import build_emanual, build_emanual_kb

    rows = build_emanual(shared_data())
    assert len(rows) == 50  # every question has a section of the manual
    records = build_emanual_kb(shared_data())
    ids = {r["id"] for r in records}
    for row in rows:
        assert row["expected_doc_ids"] and set(row["expected_doc_ids"]) <= ids
        assert row["expected_route"] == "technical" and row["reference_answer"]
    # the camera question's gold is the section titled like its path's last part
    camera = next(r for r in rows if r["id"] == "s10-266")
    titles = {r["id"]: r["title"] for r in records}
    assert any(titles[d] == "Camera settings" for d in camera["expected_doc_ids"])
    out = tmp_path / "s10.jsonl"
    assert builders_main(["emanual", "--out", str(out), "--limit", "7"]) == 0
    assert [t.expected_doc_ids for t in load_dataset(out)] == [
        tuple(r["expected_doc_ids"]) for r in build_emanual(shared_data(), limit=7)]


def test_emanual_builder_bad_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "emanual_s10"
    folder.mkdir()
    monkeypatch.setenv("SUPPORTGRAPH_SHARED_DATA", str(tmp_path))
    for corpus in ("[1, 2]", "{not json", '{"s": {"text": "not a list"}}'):
        (folder / "s10_manual_corpus.json").write_text(corpus)
        assert builders_main(["emanual", "--out", str(tmp_path / "x.jsonl")]) == 2
        assert "not the E-Manual corpus layout" in capsys.readouterr().err
    (folder / "s10_manual_corpus.json").write_text('{"s1": {"title": "Wi-Fi", "text": ["x"]}}')
    assert builders_main(["emanual", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "s10_50_questions.csv: not found" in capsys.readouterr().err
    (folder / "s10_50_questions.csv").write_text("question,answer\nq,a\n")
    assert builders_main(["emanual", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "missing columns question_id, section_path" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_builders_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert builders_main(["bitext", "--out", str(tmp_path / "x.jsonl"), "--limit", "0"]) == 2
    monkeypatch.setenv("SUPPORTGRAPH_SHARED_DATA", str(tmp_path / "nowhere"))
    assert builders_main(["bitext", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not found" in err[1]
    assert not (tmp_path / "x.jsonl").exists()


def test_one_eval_at_a_time_per_output_folder(tmp_path: Path) -> None:
    from evals.run import EvalSetupError, exclusive, make_home

    with exclusive(tmp_path / "out"):
        with pytest.raises(EvalSetupError, match="another eval"):
            with exclusive(tmp_path / "out"):
                pass
        first = make_home(tmp_path / "out")
        second = make_home(tmp_path / "out")
    assert not first.exists() and second.is_dir()
    (tmp_path / "out" / "sg-eval-not-ours").mkdir()
    make_home(tmp_path / "out")
    assert (tmp_path / "out" / "sg-eval-not-ours").is_dir()  # no marker: never deleted


# ------------------------------------------------------- gold sources, curve, ECE, worst list

def cited(rid: str, outcome: str, *, auto: bool, gold: list[str], docs: list[str],
          confidence: float | None = 0.9, reason: str | None = None,
          tenant: str | None = "acme") -> EvalRecord:
    return EvalRecord(id=rid, gold_route="billing", gold_outcome=outcome, status="sent",
                      escalated=not auto, gold_doc_ids=gold, cited_doc_ids=docs,
                      confidence=confidence, review_reason=reason, tenant=tenant)


def test_gold_citation_precision_by_hand() -> None:
    records = [
        # auto-sent, cites the gold section exactly -> hit
        cited("g1", "sent", auto=True, gold=["billing/a.md#pdf"], docs=["billing/a.md#pdf"]),
        # auto-sent, gold is a whole article, a section of it is cited -> hit
        cited("g2", "sent", auto=True, gold=["billing/a.md"], docs=["billing/a.md#other"]),
        # auto-sent, cites another section of the gold section's article -> miss
        cited("g3", "sent", auto=True, gold=["billing/a.md#pdf"], docs=["billing/a.md#vat"]),
        # auto-sent, no gold ids -> not counted
        cited("g4", "sent", auto=True, gold=[], docs=["billing/b.md"]),
        # escalated -> not counted, whatever it cites
        cited("g5", "sent", auto=False, gold=["billing/a.md"], docs=[]),
    ]
    report = build_report(records, {"dataset_name": "gold"}, embed=lambda t: np.ones((len(t), 3)))
    assert report["metrics"]["gold_citation_precision"] == pytest.approx(2 / 3)
    assert report["counts"]["gold_citation_precision"] == 3
    assert [r.cites_gold for r in records] == [True, True, False, None, False]


def test_gold_citation_precision_is_null_without_gold_ids() -> None:
    records = [cited("n1", "sent", auto=True, gold=[], docs=["billing/a.md"]),
               cited("n2", "sent", auto=False, gold=["billing/a.md"], docs=["billing/a.md"])]
    report = build_report(records, {"dataset_name": "none"}, embed=lambda t: np.ones((len(t), 3)))
    assert report["metrics"]["gold_citation_precision"] is None
    assert "| gold_citation_precision | n/a |" in markdown(report, [])


def test_threshold_curve_by_hand() -> None:
    from evals.evaluators import threshold_curve

    records = [
        cited("c1", "sent", auto=True, gold=[], docs=[], confidence=0.95),
        cited("c2", "human", auto=True, gold=[], docs=[], confidence=0.85),
        cited("c3", "sent", auto=False, gold=[], docs=[], confidence=0.7,
              reason="low_answer_confidence"),
        cited("c4", "human", auto=False, gold=[], docs=[], confidence=0.6,
              reason="low_answer_confidence"),
        # escalated for another reason: never counts as sent, whatever the threshold
        cited("c5", "human", auto=False, gold=[], docs=[], confidence=0.99,
              reason="possible_injection"),
        cited("c6", "human", auto=False, gold=[], docs=[], confidence=None, reason="out_of_scope"),
    ]
    rows = {r["threshold"]: r for r in threshold_curve(records, (0.5, 0.65, 0.8, 0.9, 1.0))}
    assert rows[0.5]["auto_sent"] == 4 and rows[0.5]["auto_send_precision"] == 0.5
    assert rows[0.65]["auto_sent"] == 3 and rows[0.65]["auto_send_precision"] == pytest.approx(
        2 / 3, abs=1e-4)
    assert rows[0.8]["auto_send_precision"] == 0.5 and rows[0.8]["auto_send_rate"] == 0.3333
    assert rows[0.9]["auto_send_precision"] == 1.0 and rows[0.9]["auto_send_recall"] == 0.5
    assert rows[1.0]["auto_sent"] == 0 and rows[1.0]["auto_send_precision"] is None
    assert threshold_curve([], (0.5,)) == [{"threshold": 0.5, "auto_sent": 0,
                                           "auto_send_rate": None, "auto_send_precision": None,
                                           "auto_send_recall": None}]


def test_confidence_ece_by_hand_and_its_label() -> None:
    records = [
        cited("e1", "sent", auto=True, gold=[], docs=[], confidence=0.95),       # right
        cited("e2", "sent", auto=True, gold=["a.md"], docs=["b.md"], confidence=0.95),  # wrong
        cited("e3", "human", auto=False, gold=[], docs=[], confidence=0.15,
              reason="low_answer_confidence"),                                   # not to send
        cited("e4", "sent", auto=False, gold=[], docs=[], confidence=0.15,
              reason="low_answer_confidence"),                                   # right
        cited("e5", "sent", auto=False, gold=[], docs=[], confidence=None),      # not counted
    ]
    report = build_report(records, {"dataset_name": "ece"}, embed=lambda t: np.ones((len(t), 3)))
    cal = report["confidence_calibration"]
    assert [(b["low"], b["n"], b["accuracy"]) for b in cal["bins"]] == [(0.1, 2, 0.5),
                                                                        (0.9, 2, 0.5)]
    assert report["metrics"]["confidence_ece"] == pytest.approx((2 * 0.35 + 2 * 0.45) / 4)
    assert report["counts"]["confidence_ece"] == 4
    md = markdown(report, [])
    assert "## Answer confidence calibration" in md and "gold outcome is `sent`" in md
    empty = build_report([cited("x", "sent", auto=True, gold=[], docs=[], confidence=None)],
                         {"dataset_name": "none"}, embed=lambda t: np.ones((len(t), 3)))
    assert empty["metrics"]["confidence_ece"] is None


def test_worst_tickets_order_and_show_commands() -> None:
    records = [
        cited("ok", "sent", auto=True, gold=[], docs=[], confidence=0.99),
        cited("w-low", "human", auto=True, gold=[], docs=[], confidence=0.81),
        cited("w-high", "human", auto=True, gold=[], docs=[], confidence=0.97, tenant=None),
        cited("esc", "sent", auto=False, gold=[], docs=[], confidence=0.7,
              reason="low_answer_confidence", tenant="globex; rm -rf /"),
        cited("esc-none", "sent", auto=False, gold=[], docs=[], confidence=None,
              reason="out_of_scope"),
    ] + [cited(f"more{i}", "sent", auto=False, gold=[], docs=[], confidence=0.1)
         for i in range(10)]
    report = build_report(records, {"dataset_name": "w", "home": "/tmp/eval home/sg-eval-1"},
                          embed=lambda t: np.ones((len(t), 3)))
    worst = report["worst_tickets"]
    assert len(worst) == 10
    assert [w["id"] for w in worst[:4]] == ["w-high", "w-low", "esc", "more0"]
    assert worst[0]["kind"] == "wrongly_auto_sent" and worst[2]["kind"] == "wrongly_escalated"
    assert "esc-none" not in [w["id"] for w in worst]  # no confidence: ranked last, cut at 10
    md = markdown(report, [])
    assert "## Worst tickets" in md
    assert "`SUPPORTGRAPH_HOME='/tmp/eval home/sg-eval-1' supportgraph show w-low --tenant acme`" \
        in md
    assert "supportgraph show w-high`" in md  # no tenant on the ticket: no --tenant
    assert "--tenant 'globex; rm -rf /'" in md  # quoted, never a second command
    none = build_report(records[:1], {"dataset_name": "w"}, embed=lambda t: np.ones((len(t), 3)))
    assert none["worst_tickets"] == []
    assert "None: no ticket was wrongly" in markdown(none, [])


@pytest.mark.parametrize("value, message", [
    ("billing/a.md", "must be a list of source ids, got str"),
    ({"id": "x"}, "must be a list of source ids, got dict"),
    (7, "must be a list of source ids, got int"),
    ([], "expected_doc_ids is empty"),
    (["ok", 3], "non-empty strings"),
    (["ok", "  "], "non-empty strings"),
    ([None], "non-empty strings"),
    (["x" * 501], "non-empty strings of at most 500"),
    ([f"doc{i}" for i in range(51)], "51 ids (at most 50)"),
    (["d"] * 10_000, "10,000 ids (at most 50)"),
    # a huge list is refused by the line limit before it is ever decoded
    ([f"doc{i}" for i in range(100_000)], "line is longer than"),
])
def test_dataset_rejects_malformed_expected_doc_ids(tmp_path: Path, value, message) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(
        {**GOOD, "id": "a2", "expected_doc_ids": value}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert info.value.problems == [f"{path}:2: " + info.value.problems[0].split(":2: ", 1)[1]]
    assert message in str(info.value)


def test_dataset_reads_expected_doc_ids(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (
        {**GOOD, "expected_doc_ids": ["billing/a.md#pdf", " billing/a.md#pdf ", "billing/b.md"]},
        {**GOOD, "id": "a2", "expected_doc_ids": None},
        {**GOOD, "id": "a3"})) + "\n", encoding="utf-8")
    tickets = load_dataset(path)
    assert [t.expected_doc_ids for t in tickets] == [("billing/a.md#pdf", "billing/b.md"), (), ()]
    from evals.dataset import unknown_fields

    assert unknown_fields(path) == []
    from evals.records import build_record

    record = build_record(tickets[0], {"status": "sent", "cited_doc_ids": ["billing/b.md#x"]},
                          escalated=False, draft="d")
    assert record.gold_doc_ids == ["billing/a.md#pdf", "billing/b.md"] and record.cites_gold
    # an older records.jsonl row (no gold ids, no tenant) still reads back
    old = record.to_json()
    del old["gold_doc_ids"], old["tenant"]
    assert EvalRecord.from_json(old).cites_gold is None


def test_plots_without_cost_say_so_and_draw_the_curve(tmp_path: Path) -> None:
    from evals.plots import write_plots

    records = [cited("p1", "sent", auto=True, gold=[], docs=[], confidence=0.9),
               cited("p2", "human", auto=False, gold=[], docs=[], confidence=0.5,
                     reason="low_answer_confidence")]
    report = build_report(records, {"dataset_name": "p", "settings": {
        "confidence_threshold": 0.8}}, embed=lambda t: np.ones((len(t), 3)))
    names = write_plots(report, records, tmp_path)
    assert "threshold_curve.png" in names and "cost_distribution.png" in names
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = markdown(report, names)
    assert "| **0.80** |" in md and "![threshold_curve.png](threshold_curve.png)" in md
    # The cost plot: with no cost at all it is a message, not a histogram on a made-up axis.
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    from evals import plots

    drawn: list = []
    real_hist = plt.Axes.hist

    def spy(self, *args, **kwargs):
        drawn.append(self)  # titled after the histogram is drawn
        return real_hist(self, *args, **kwargs)

    plt.Axes.hist = spy
    try:
        plots.write_plots(report, records, tmp_path)
        assert "Cost per ticket" not in [ax.get_title() for ax in drawn]
        records[0].cost = 0.002
        plots.write_plots(build_report(records, {"dataset_name": "p"},
                                       embed=lambda t: np.ones((len(t), 3))), records, tmp_path)
        assert "Cost per ticket" in [ax.get_title() for ax in drawn]
    finally:
        plt.Axes.hist = real_hist
