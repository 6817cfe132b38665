"""The `supportgraph` CLI as a subprocess, fed bad, odd and hostile input.

Contract (README, Quick start): bad input exits 2 with a one-line reason on stderr, never a
traceback; input that is odd but usable (broken charsets, HTML-only mail, hostile text) is
answered and ends in a terminal status; a batch reports its bad lines and runs the others.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
EMAILS = REPO_ROOT / "evals" / "datasets" / "emails"
ROUTES = REPO_ROOT / "tests" / "data" / "intent_small_routes.toml"
TERMINAL = {"sent", "awaiting_review", "rejected", "stalled", "failed"}
SUMMARY_KEYS = {"workflow_id", "thread_id", "ticket_id", "status", "intent", "route",
                "confidence", "total_duration_ms", "model_calls", "cache_hits", "retries",
                "cost_total", "step_breakdown", "failures"}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `supportgraph ARGS` with its own home, from the folder that holds the home."""
    env = {**os.environ, "SUPPORTGRAPH_HOME": str(home), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "supportgraph", *args], env=env, cwd=home.parent,
                          capture_output=True, text=True, encoding="utf-8", timeout=600)


def rows(home: Path, sql: str) -> list[tuple]:
    """Query the home's SQLite database (after the CLI process has exited)."""
    with closing(sqlite3.connect(home / "state.db")) as conn:
        return conn.execute(sql).fetchall()


def write_jsonl(path: Path, *records: dict | str) -> Path:
    """One line per record: dicts as JSON, strings written as they are (for broken lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def summaries(stdout: str) -> list[dict]:
    """Every stdout line of `run --json`, parsed and checked for the section 8 fields."""
    parsed = []
    for line in stdout.splitlines():
        summary = json.loads(line)
        assert SUMMARY_KEYS <= set(summary), SUMMARY_KEYS - set(summary)
        assert summary["status"] in TERMINAL
        assert isinstance(summary["total_duration_ms"], int | float)
        assert summary["total_duration_ms"] > 0
        assert isinstance(summary["cost_total"], int | float)
        for key in ("model_calls", "cache_hits", "retries"):
            assert isinstance(summary[key], int) and summary[key] >= 0
        assert isinstance(summary["failures"], list)
        assert summary["step_breakdown"], "no steps recorded"
        for step in summary["step_breakdown"]:
            assert {"step", "duration_ms", "cost"} <= set(step)
        assert summary["step_breakdown"][0]["step"] == "intake"
        parsed.append(summary)
    return parsed


def assert_clean_stderr(result: subprocess.CompletedProcess[str]) -> list[str]:
    """No traceback and no noise: every stderr line is a report; returns the lines."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.strip() for line in lines), result.stderr
    return lines


def assert_bad_input(result: subprocess.CompletedProcess[str], *names: str) -> None:
    """Exit 2 with exactly one stderr line that names the problem, and nothing on stdout."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = assert_clean_stderr(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("supportgraph: ")
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert result.stdout == ""


# --------------------------------------------------------------------------- bad input: exit 2


@pytest.mark.parametrize(
    ("args", "names"),
    [
        pytest.param(["run", "--text", ""], ["body is empty"], id="empty-text"),
        pytest.param(["run", "--text", "   \n  "], ["body is empty"], id="blank-text"),
        pytest.param(["run", "--channel", "fax", "--text", "hi"], ["channel", "'fax'"],
                     id="unknown-channel"),
        pytest.param(["run", "--eml", "missing.eml"], ["no such file", "missing.eml"],
                     id="missing-eml"),
        pytest.param(["run", "--input", "missing.jsonl"], ["no such file", "missing.jsonl"],
                     id="missing-jsonl"),
        pytest.param(["run", "--text", "hi", "--input", "good.jsonl"],
                     ["exactly one of", "--text", "--input"], id="text-and-input"),
        pytest.param(["retrieve", "--collection", "kb_billing", "--input", "good.jsonl",
                      "--output", "hits.jsonl", "--k", "0"], ["--k"], id="retrieve-k-0"),
        pytest.param(["retrieve", "--collection", "../../etc", "--input", "good.jsonl",
                      "--output", "hits.jsonl"], ["invalid collection name", "../../etc"],
                     id="retrieve-hostile-collection"),
        pytest.param(["ingest", "--collection", "a/b", "good.jsonl"],
                     ["invalid collection name", "a/b"], id="ingest-hostile-collection"),
        pytest.param(["train-intents", "--data", "missing.jsonl", "--routes", str(ROUTES),
                      "--out", "model"], ["no such file", "missing.jsonl"],
                     id="train-missing-data"),
    ],
)
def test_bad_input_exits_2_with_one_line(e2e_home: Path, args: list[str],
                                         names: list[str]) -> None:
    workdir = e2e_home.parent
    # An existing, valid file wherever one is named, so the named problem is the only one.
    write_jsonl(workdir / "good.jsonl", {"id": "g-1", "query": "invoice PDF",
                                         "channel": "chat", "body": "Where is my invoice?"})

    result = cli(e2e_home, *args)

    assert_bad_input(result, *names)
    assert not (workdir / "hits.jsonl").exists()
    assert not (workdir / "model").exists()
    # Nothing was run: no ticket reached the workflow.
    assert rows(e2e_home, "SELECT count(*) FROM sg_runs") == [(0,)]
    assert rows(e2e_home, "SELECT count(*) FROM sg_audit") == [(0,)]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param("Where is my invoice? " + "x" * 1024 * 1024, "line is 1,048,", id="1MB-line"),
        pytest.param("Where is my invoice? " + "é" * 75_000, "ticket body is 150,0",
                     id="150KB-body"),
    ],
)
def test_oversized_ticket_is_reported_by_line_and_not_run(e2e_home: Path, body: str,
                                                          problem: str) -> None:
    # Through a file: one argv string is capped at 128 KiB by Linux, a JSONL line is not.
    tickets = e2e_home.parent / "big.jsonl"
    tickets.write_text(json.dumps({"id": "big-1", "channel": "chat", "body": body},
                                  ensure_ascii=False) + "\n", encoding="utf-8")

    result = cli(e2e_home, "run", "--input", str(tickets), "--json")

    assert result.returncode == 2, result.stderr[-2000:]
    lines = assert_clean_stderr(result)
    named = [line for line in lines if line.startswith(f"{tickets}:1: ")]
    assert len(named) == 1, result.stderr
    assert problem in named[0] and "the limit is" in named[0], named[0]
    assert len(named[0]) < 300  # the reason, not the ticket echoed back
    assert result.stdout == ""
    assert rows(e2e_home, "SELECT count(*) FROM sg_runs") == [(0,)]


def test_batch_with_a_malformed_line_runs_the_others_and_exits_2(e2e_home: Path) -> None:
    tickets = write_jsonl(
        e2e_home.parent / "mixed.jsonl",
        {"id": "m-1", "channel": "chat", "body": "How do I rotate my API key?"},
        {"id": "m-2", "channel": "chat", "body": "What does a 429 error mean?"},
        '{"id": "m-bad", "channel": "chat", "body": "this line never ends',
        {"id": "m-3", "channel": "email", "subject": "VAT",
         "body": "Do you charge VAT for customers in Germany?"},
    )

    result = cli(e2e_home, "run", "--input", str(tickets), "--json")

    assert result.returncode == 2, result.stderr[-2000:]
    lines = assert_clean_stderr(result)
    named = [line for line in lines if line.startswith(f"{tickets}:3: ")]
    assert len(named) == 1 and "invalid JSON" in named[0], result.stderr
    assert not any(f"{tickets}:{n}:" in result.stderr for n in (1, 2, 4))
    assert [s["ticket_id"] for s in summaries(result.stdout)] == ["m-1", "m-2", "m-3"]


# --------------------------------------------------------------------------- odd but usable


def test_eml_with_invalid_utf8_in_a_utf8_body_is_answered(e2e_home: Path) -> None:
    eml = e2e_home.parent / "broken-charset.eml"
    eml.write_bytes(
        b"From: Jo <jo@example.com>\r\nTo: support@relaypoint.example\r\n"
        b"Subject: Invoice question\r\nMessage-ID: <bad-utf8-1@example.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Hello caf\xe9 team \xff\xfe,\r\n\r\n"
        b"Where can I download my invoice PDF for last month? \xc3\x28 Thanks\r\n")

    result = cli(e2e_home, "run", "--eml", str(eml), "--json")

    assert result.returncode == 0, result.stderr[-2000:]
    assert_clean_stderr(result)
    [summary] = summaries(result.stdout)
    assert summary["ticket_id"] == "bad-utf8-1_example.com"  # from the Message-ID
    # The undecodable bytes did not drown the question.
    assert (summary["intent"], summary["route"]) == ("invoice_request", "billing")


def test_html_only_eml_is_answered(e2e_home: Path) -> None:
    result = cli(e2e_home, "run", "--eml", str(EMAILS / "02_html_only.eml"), "--json")

    assert result.returncode == 0, result.stderr[-2000:]
    assert_clean_stderr(result)
    [summary] = summaries(result.stdout)
    expected = json.loads((EMAILS / "expected.json").read_text())["02_html_only.eml"]
    assert (summary["intent"], summary["route"]) == (expected["expected_intent"],
                                                     expected["expected_route"])


def test_hostile_ticket_body_ends_in_a_terminal_status(e2e_home: Path) -> None:
    body = ("Robert'); DROP TABLE sg_runs; DROP TABLE checkpoints;-- ' OR '1'='1\n"
            "\x00\x01\x07\x1b[31m where is my invoice \u202eFDP eciovni\u202c \u200f\u2066x\u2069\n"
            + "\U0001f600" * 10_000)
    tickets = write_jsonl(e2e_home.parent / "hostile.jsonl",
                          {"id": "h-1", "channel": "chat", "body": body})

    result = cli(e2e_home, "run", "--input", str(tickets), "--json")

    assert result.returncode == 0, result.stderr[-2000:]
    assert_clean_stderr(result)
    [summary] = summaries(result.stdout)
    assert summary["ticket_id"] == "h-1"
    # The database is intact and the run is on record.
    audit = cli(e2e_home, "audit", "show", "h-1", "--json")
    assert audit.returncode == 0, audit.stderr[-2000:]
    story = json.loads(audit.stdout)
    assert [run["status"] for run in story["runs"]] == [summary["status"]]
    assert "intake" in [event["step"] for event in story["events"]]
